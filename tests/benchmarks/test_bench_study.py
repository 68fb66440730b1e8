"""``benchmarks/bench_study.py`` end to end on a tiny glyph study: the table, both references, the verdict."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
TINY = ("data.val_fraction=0.25", "train.steps_per_epoch=2", "train.epochs=2", "compression.epochs=1",
        "eval.nmi=false")


def _load():
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    spec = importlib.util.spec_from_file_location("_bench_study", BENCH_DIR / "bench_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_study_section_on_a_tiny_study(tmp_path, tiny_config, capsys, monkeypatch):
    bench = _load()
    out = tmp_path / "study"
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n")
    monkeypatch.setattr(bench.benchutil, "BENCHMARKS_MD", md)
    monkeypatch.setattr(bench.benchutil, "write_section",
                        lambda name, body, path=md, title=None: md.write_text(
                            bench.benchutil.replace_section(md.read_text(), name, body, title)))
    argv = ["--out", str(out), "--seeds", "0", "--write", *tiny_config.overrides(*TINY)]
    assert bench.main(argv) == 0
    text = md.read_text()
    assert "<!-- bench:study -->" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    for name in ("single-long", "learned-long", "learned-long-compressed", "learned-branch2-best-head",
                 "distilled-shared"):
        assert name in rows
    # the references: single-long has no gain over itself; the best single loss none over itself
    best = next(n for n in rows if n.endswith(" *"))
    assert [c.strip() for c in rows["single-long"].split("|")][-3:-1] == ["", ""]
    assert [c.strip() for c in rows[best].split("|")][-5:-3] == ["", ""]
    assert re.search(r"\| learned-branch3 \| 1\.94x \| 1\.94x \| 32 \|", text)
    assert re.search(r"\| learned-branch3-best-head \| 1\.94x \| 1x \| 16 \|", text)
    assert "Plateau check" in text and re.search(r"Goal .* the best such row on MAP@R is `[a-z-0-9]+`", text)
    # gains are paired by seed: recompute one from the per-seed metrics the comparison wrote
    import json

    def map_r(method, seed):  # a single-loss run's ensemble is its one head
        folder = out / method if method != "single-long" else next(out.glob("single-long-*"))
        return json.loads((folder / f"seed{seed}" / "metrics.json").read_text())["ensemble"]["map@r"]

    per_seed = {s: map_r("learned-long", s) - map_r("single-long", s) for s in (0,)}
    import numpy as np

    cells = [c.strip() for c in rows["learned-long"].split("|")]
    assert cells[-2].startswith(f"{np.mean(list(per_seed.values())):+.2f}")
