"""``lossensemble compare`` end to end on a tiny glyph config (one seed, two losses, two steps per run).

The comparison runs once per module (fixture ``compared``); the tests read what it wrote.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lossensemble.cli.compare import parse_seeds, split_overrides
from lossensemble.cli.main import main
from lossensemble.errors import UserError

REPO = Path(__file__).resolve().parents[2]
#: Added to the shared ``tiny_config`` (tests/conftest.py), itself on top of glyphs-compare.yaml.
EXTRA = ("data.val_fraction=0.25", "train.steps_per_epoch=2", "compression.epochs=1")
DIM = 16  # the tiny config's model.embedding_dim: one head, and the compressed size
EXPECTED = ["single-triplet", "single-proxy_nca", "equal", "learned", "uncertainty", "learned-compressed",
            "equal-scaled", "learned-noscale", "independent", "independent-compressed", "equal-head-triplet",
            "equal-head-proxy_nca"]
PLOTS = [*(f"plots/{name}.png" for name in ("recall_at_k", "weights", "losses", "recall1_over_epochs",
                                            "embedding_map", "retrieval_grid", "cost_accuracy")),
         "learning_curves.png"]
METRICS = ["recall@1", "recall@2", "recall@4", "recall@8", "nmi", "knn_acc", "map@r", "r_precision"]


@pytest.fixture(scope="module")
def compare_argv(tiny_config):
    def argv(out: Path, *extra: str) -> list[str]:
        return ["compare", "-c", "glyphs-compare", "-o", str(out), "--seeds", "0", "--no-progress", "--map", "pca",
                *extra, *tiny_config.overrides(*EXTRA)]

    return argv


@pytest.fixture(scope="module")
def compared(tmp_path_factory, compare_argv) -> Path:
    out = tmp_path_factory.mktemp("compare")
    assert main(compare_argv(out)) == 0
    return out


def cached_embedding(compared: Path, method: str):
    """The test embeddings and labels a row's metrics come from, by the layout the comparison promises:
    OUT/<run>/seed0/test-embeddings-<checkpoint>.npz, holding the row's embedding by name."""
    from lossensemble.experiments.embeddings import load_test_embeddings

    if method.startswith("equal-head-"):
        folder, checkpoint, name = "equal", "last", "heads." + method.removeprefix("equal-head-")
    elif method == "learned-compressed":
        folder, checkpoint, name = "learned", "compressed", "compressed"
    elif method.startswith("single-"):
        folder, checkpoint, name = method, "last", "heads." + method.removeprefix("single-")
    elif method.startswith("independent"):
        folder, checkpoint, name = method, "last", method
    else:
        folder, checkpoint, name = method, "last", "ensemble"
    cached = load_test_embeddings(compared / folder / "seed0" / f"test-embeddings-{checkpoint}.npz")
    return cached.embeddings[name], cached.labels


@pytest.mark.slow
def test_results_rows_and_keys(compared, retrieval_oracle, nmi_oracle):
    rows = json.loads((compared / "results.json").read_text())
    assert [r["method"] for r in rows] == EXPECTED
    for row in rows:
        for m in METRICS:
            assert set(row[m]) == {"mean", "std"}
            assert row[m]["std"] is None  # one seed: no spread
        # every metric, recomputed from the embeddings the row was measured on (NMI: with another k-means)
        emb, labels = cached_embedding(compared, row["method"])
        assert nmi_oracle.check(row["nmi"]["mean"], emb, labels), row["method"]
        assert emb.shape == (16 * 16, row["embedding_size"])
        for m, value in retrieval_oracle(emb, labels).items():
            # float32 search vs float64 here: at most one query's neighbour may flip on a near-tie
            assert row[m]["mean"] == pytest.approx(value, abs=100 / len(labels) + 1e-6), (row["method"], m)
        assert row["embedding_size"] in (DIM, 2 * DIM)
        assert row["query_ms"] > 0
        assert row["seconds_per_step"]["mean"] > 0
        assert set(row["gain"]) == {"recall@1", "knn_acc", "map@r"}
    by = {r["method"]: r for r in rows}
    assert by["equal"]["embedding_size"] == 2 * DIM and by["learned-compressed"]["embedding_size"] == DIM
    assert sum(r["best_single"] for r in rows) == 1
    best = next(r for r in rows if r["best_single"])
    meta = json.loads((compared / "comparison.json").read_text())
    assert meta["best_single"] == best["method"] and meta["selection"] == "validation"
    # the equal ensemble's heads come from its metrics.json
    metrics = json.loads((compared / "equal" / "seed0" / "metrics.json").read_text())
    assert by["equal-head-triplet"]["recall@1"]["mean"] == pytest.approx(metrics["heads.triplet"]["recall@1"])
    gain = by["equal"]["gain"]["map@r"]["mean"]
    assert gain == pytest.approx(by["equal"]["map@r"]["mean"] - best["map@r"]["mean"])


@pytest.mark.slow
def test_csv_and_markdown(compared):
    lines = (compared / "results.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:3] == ["method", "group", "seeds"]
    assert {"recall@1_mean", "map@r_std", "query_ms", "gain_recall@1_mean"} <= set(header)
    assert len(lines) == 1 + len(EXPECTED)
    md = (compared / "results.md").read_text()
    for name in EXPECTED:
        assert f"| {name}" in md
    assert "chosen by mean MAP@R on the validation classes" in md


@pytest.mark.slow
def test_run_folders_layout(compared):
    for name in ("single-triplet", "equal", "learned", "independent"):
        assert (compared / name / "seed0" / "metrics.json").is_file()
    assert (compared / "learned" / "seed0" / "checkpoints" / "compressed.safetensors").is_file()


@pytest.mark.slow
def test_independent_embedding_is_the_concatenation(compared, retrieval_oracle):
    from lossensemble.evaluation.extract import extract_embeddings
    from lossensemble.experiments.embeddings import load_test_embeddings, test_split
    from lossensemble.training.loading import load_run

    parts = []
    labels = None
    for loss in ("triplet", "proxy_nca"):
        loaded = load_run(compared / f"single-{loss}" / "seed0")
        emb, labels, _ = extract_embeddings(loaded.embed_fn(), test_split(loaded.cfg))
        v = emb[f"heads.{loss}"]
        parts.append(v / np.linalg.norm(v, axis=1, keepdims=True) * np.sqrt(0.5))
    by_hand = np.concatenate(parts, axis=1)
    cached = load_test_embeddings(compared / "independent" / "seed0" / "test-embeddings-last.npz")
    np.testing.assert_allclose(cached.embeddings["independent"], by_hand, atol=1e-5)
    np.testing.assert_array_equal(cached.labels, labels)
    metrics = retrieval_oracle(by_hand, labels)
    row = next(r for r in json.loads((compared / "results.json").read_text()) if r["method"] == "independent")
    assert row["map@r"]["mean"] == pytest.approx(metrics["map@r"], abs=100 / len(labels) + 1e-6)
    assert row["embedding_size"] == 2 * DIM


@pytest.mark.slow
def test_plots_are_png(compared):
    from PIL import Image

    for path in PLOTS:
        assert (compared / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
        with Image.open(compared / path) as img:
            img.verify()


@pytest.mark.slow
def test_report_is_self_contained(compared):
    page = (compared / "report.html").read_text()
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sum(s.startswith("data:image/png;base64,") for s in sources) == len(PLOTS)  # each plot, inlined
    for s in sources:
        assert s.startswith("data:") or (compared / s).is_file(), s
    for text in ("single-proxy_nca", "learned-compressed", "pytorch-metric-learning", "faiss", "embedding_dim"):
        assert text in page


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium is not installed (Debian package chromium): a browser outside this project")
def test_report_renders_in_headless_chromium(compared, tmp_path):
    shot = tmp_path / "report.png"
    proc = subprocess.run([str(REPO / "scripts" / "render_report.sh"), str(compared / "report.html"), str(shot),
                           "800x1200"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (800, 1200)
        assert len(img.convert("L").getcolors(1 << 16) or []) > 10  # not a blank page


def test_seeds_and_overrides_after_list_options():
    assert split_overrides(["0", "1", "train.epochs=3"]) == (["0", "1"], ["train.epochs=3"])
    assert parse_seeds(["2", "0", "2"]) == [2, 0]
    with pytest.raises(UserError, match="integers"):
        parse_seeds(["x"])


def test_unknown_method_is_a_user_error(tmp_path, capsys):
    rc = main(["compare", "-c", "glyphs-compare", "-o", str(tmp_path / "o"), "--methods", "bogus"])
    assert rc == 2
    assert "unknown bogus" in capsys.readouterr().err


# Runs last: it rewrites the report without plots.
@pytest.mark.slow
def test_second_invocation_reuses_everything(compared, compare_argv, monkeypatch, capsys):
    import lossensemble.experiments.derived as derived
    import lossensemble.experiments.runs as runs

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    # Patched where they are looked up, so the patches do fire if anything is retrained.
    monkeypatch.setattr(runs, "Trainer", refuse)
    monkeypatch.setattr(derived, "compress_run", refuse)
    monkeypatch.setattr(derived, "distill_independent", refuse)
    before = (compared / "results.json").read_text()
    assert main(compare_argv(compared, "--no-plots")) == 0
    after = json.loads((compared / "results.json").read_text())
    old = json.loads(before)
    assert [r["method"] for r in after] == [r["method"] for r in old]
    assert [r["map@r"] for r in after] == [r["map@r"] for r in old]


@pytest.mark.slow
def test_independent_ensemble_is_distilled_into_one_head_of_the_best_single_model(compared, retrieval_oracle):
    from lossensemble.experiments.selection import best_single

    folder = compared / "independent-compressed" / "seed0"
    summary = json.loads((folder / "summary.json").read_text())
    singles = [compared / "single-triplet" / "seed0", compared / "single-proxy_nca" / "seed0"]
    assert summary["sources"] == [str(p) for p in singles]
    assert summary["student"] == str(singles[best_single(singles, ["heads.triplet", "heads.proxy_nca"])])
    facts = summary["distillation"]
    assert facts["compressor"]["variant"] == "direct"
    assert facts["teacher_dim"] == 2 * facts["compressor"]["dim"]
    assert facts["epoch_losses"] and all(np.isfinite(facts["epoch_losses"]))
    rows = json.loads((compared / "results.json").read_text())
    row = next(r for r in rows if r["method"] == "independent-compressed")
    assert row["embedding_size"] == facts["compressor"]["dim"]
    # the row's MAP@R is that of the distilled embeddings (brute force here)
    emb, labels = cached_embedding(compared, "independent-compressed")
    assert emb.shape == (16 * 16, facts["compressor"]["dim"])
    expected = retrieval_oracle(emb, labels)
    assert row["map@r"]["mean"] == pytest.approx(expected["map@r"], abs=100 / len(labels) + 1e-6)
