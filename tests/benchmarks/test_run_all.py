"""Smoke tests of the benchmark runner's BENCHMARKS.md rewriting (no timing, no benchmarks run)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


benchutil = _load("benchutil")

DOC = """# Benchmarks

## Index

<!-- bench:index -->
old index
<!-- /bench:index -->

## Evaluation

<!-- evaluation:begin -->
someone else's table
<!-- evaluation:end -->

## Training step overhead

<!-- bench:train_step -->
| old | table |
<!-- /bench:train_step -->

## Distributed

<!-- distributed:begin -->
keep me
<!-- distributed:end -->
"""


def test_replace_only_between_markers():
    new = benchutil.replace_section(DOC, "train_step", "| new | table |\n")
    assert "| new | table |" in new and "| old | table |" not in new
    # Everything outside the markers is unchanged, byte for byte.
    before, after = DOC.split("<!-- bench:train_step -->")
    assert new.startswith(before)
    assert new.endswith(after.split("<!-- /bench:train_step -->")[1])
    assert "someone else's table" in new and "keep me" in new and "old index" in new
    # Idempotent.
    assert benchutil.replace_section(new, "train_step", "| new | table |") == new


def test_missing_section_is_appended_with_title():
    new = benchutil.replace_section(DOC, "demo", "demo body")
    assert new.startswith(DOC.rstrip("\n"))
    assert new.rstrip().endswith("## Demo wall time\n\n<!-- bench:demo -->\ndemo body\n<!-- /bench:demo -->")


@pytest.mark.parametrize("bad", [
    DOC + "<!-- bench:train_step -->\n",  # duplicated begin marker
    DOC.replace("<!-- bench:train_step -->", "XX").replace("<!-- /bench:train_step -->",
                                                            "<!-- /bench:train_step -->\n<!-- bench:train_step -->"),
])
def test_broken_markers_raise(bad):
    with pytest.raises(ValueError):
        benchutil.replace_section(bad, "train_step", "x")


def test_write_section_roundtrip(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(DOC, encoding="utf-8")
    benchutil.write_section("train_step", "body one", path=path)
    benchutil.write_section("gpu", "not run", path=path)
    text = path.read_text(encoding="utf-8")
    assert "body one" in text and "<!-- bench:gpu -->\nnot run\n<!-- /bench:gpu -->" in text
    assert benchutil.owned_sections(text) == ["index", "train_step", "gpu"]


def test_run_all_plan_reduced_and_full():
    run_all = _load("run_all")

    class Args:
        only = None
        skip = None
        full = False

    reduced = [n for n, _ in run_all.plan(Args)]
    assert "eval" not in reduced and {"train_step", "input_pipeline", "demo"} <= set(reduced)
    Args.full = True
    full = run_all.plan(Args)
    assert [n for n, _ in full] == list(run_all.BENCHES)
    assert all(cmd[-1] == "--write" for _, cmd in full)
    Args.only, Args.full = "demo", False
    assert [n for n, _ in run_all.plan(Args)] == ["demo"]
