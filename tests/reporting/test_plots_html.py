"""Plots (valid PNGs from synthetic data) and the self-contained HTML page."""

from __future__ import annotations

import numpy as np
from PIL import Image

from lossensemble.reporting.html import Figure, ReportContent, html_table, render_report
from lossensemble.reporting.plots import (
    plot_curves,
    plot_embedding_map,
    plot_loss_curves,
    plot_retrieval_grid,
    project_2d,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _valid_png(path) -> bool:
    with Image.open(path) as img:
        img.verify()
    return path.read_bytes()[:8] == PNG


def test_curves_and_losses(tmp_path):
    assert _valid_png(plot_curves({"a": [(1, 50.0), (2, 60.0)], "b": [(1, 40.0)]}, tmp_path / "c.png", "R@1"))
    assert plot_curves({"a": []}, tmp_path / "none.png", "R@1") is None
    hist = {"ens": [{"epoch": 1, "loss_x": 2.0, "loss_y": 0.1, "loss_total": 1.0},
                    {"epoch": 2, "loss_x": 1.5, "loss_y": 0.08}],
            "single-x": [{"epoch": 1, "loss_x": 2.1}, {"epoch": 2, "loss_x": 1.7}]}
    assert _valid_png(plot_loss_curves(hist, tmp_path / "l.png"))
    assert plot_loss_curves({"a": [{"epoch": 1}]}, tmp_path / "none2.png") is None


def test_projection_and_map(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(12), 4)
    emb = rng.normal(size=(48, 8)) + labels[:, None]
    assert project_2d(emb[:30], "tsne").shape == (30, 2)
    path = plot_embedding_map({"a": (emb, labels), "b": (emb * 2, labels)}, tmp_path / "m.png", method="pca")
    assert _valid_png(path)


def test_retrieval_grid_marks_wrong_neighbours(tmp_path):
    images = [Image.new("RGB", (16, 16), (i * 20, 0, 0)) for i in range(10)]
    nbrs = np.array([[1, 2, 3], [0, 2, -1]])
    correct = np.array([[True, False, True], [False, False, False]])
    path = plot_retrieval_grid({"a": (nbrs, correct), "b": (nbrs[:, ::-1], correct[:, ::-1])}, [0, 1],
                               lambda i: images[i], tmp_path / "g.png")
    assert _valid_png(path)
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB")).reshape(-1, 3)
    red = ((pixels[:, 0] > 200) & (pixels[:, 1] < 60) & (pixels[:, 2] < 60)).sum()
    assert red > 100  # red frames drawn


def test_html_is_self_contained_and_escaped(tmp_path):
    png = plot_curves({"a": [(1, 1.0)]}, tmp_path / "p.png", "y")
    page = render_report(ReportContent(
        title="T <x>", subtitle="s", header=["method", "Δ R@1"], body=[["a<b", "+1.00"], ["c", "-2.00"]],
        notes=["n & m"], methods={"a": "desc"}, figures=[Figure(png, "cap")], config_yaml="seed: 0",
        environment={"python": "3"}))
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert 'src="data:image/png;base64,' in page
    assert "a&lt;b" in page and "T &lt;x&gt;" in page and "n &amp; m" in page
    assert '<td class="pos">+1.00</td>' in page and '<td class="neg">-2.00</td>' in page
    assert html_table(["h"], [["1"]], ["best-single"]).count('class="best-single"') == 1
