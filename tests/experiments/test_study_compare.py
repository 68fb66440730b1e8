"""``compare --methods study`` end to end on a tiny glyph config: long runs, best heads, distilled students,
train cost, curves.

One comparison (one seed, two losses, two epochs of two steps, --long-factor 2) runs once per module.
"""

from __future__ import annotations

import json
import re

import pytest

from lossensemble.cli.main import main
from lossensemble.training.run import read_history

EXTRA = ("data.val_fraction=0.25", "train.steps_per_epoch=2", "train.epochs=2", "compression.epochs=1")
DIM = 16
EXPECTED = ["single-triplet", "single-proxy_nca", "equal", "learned", "learned-compressed",
            "single-long", "learned-long", "learned-long-compressed", "independent",
            "independent-compressed", "equal-head-triplet", "equal-head-proxy_nca", "distilled-independent",
            "distilled-shared", "learned-branch1", "learned-branch2", "learned-branch3", "equal-best-head",
            "learned-best-head", "learned-long-best-head", "learned-branch1-best-head", "learned-branch2-best-head",
            "learned-branch3-best-head"]
COSTS = {"single-triplet": 1, "single-proxy_nca": 1, "equal": 1, "learned": 1, "learned-compressed": 1,
         "learned-long-compressed": 2, "single-long": 2, "learned-long": 2,
         "independent": 2, "independent-compressed": 2, "equal-head-triplet": 1, "equal-head-proxy_nca": 1,
         "distilled-independent": 2 + 1 * (1 + 2), "distilled-shared": 1 + 1 * (1 + 1),
         "equal-best-head": 1, "learned-best-head": 1, "learned-long-best-head": 2}
BRANCH_COSTS = {1: 1.3137, 2: 1.6275, 3: 1.9412}  # two losses: the last k of small_cnn's 4 convs run twice (32 px)


def argv(tiny_config, out, *extra):
    return ["compare", "-c", "glyphs-compare", "-o", str(out), "--seeds", "0", "--no-progress", "--map", "pca",
            *extra, *tiny_config.overrides(*EXTRA)]


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_config):
    out = tmp_path_factory.mktemp("study")
    capture = pytest.MonkeyPatch()
    printed: list[str] = []
    capture.setattr("builtins.print", lambda *a, **k: printed.append(" ".join(map(str, a))))
    try:
        assert main(argv(tiny_config, out, "--methods", "study", "--long-factor", "2")) == 0
    finally:
        capture.undo()
    return out, "\n".join(printed)


def last_val(run, embedding, metric="map@r"):
    rows = [r for r in read_history(run / "history.csv") if f"val/{embedding}/{metric}" in r]
    return rows[-1][f"val/{embedding}/{metric}"]


@pytest.mark.slow
def test_rows_costs_and_terminal_table(study):
    out, printed = study
    rows = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in rows] == EXPECTED
    costs = {r["method"]: r["train_cost"] for r in rows}
    for k, cost in BRANCH_COSTS.items():
        assert costs.pop(f"learned-branch{k}") == pytest.approx(cost, abs=1e-4)
        assert costs.pop(f"learned-branch{k}-best-head") == pytest.approx(cost, abs=1e-4)
    assert costs == COSTS
    queries = {r["method"]: r["query_cost"] for r in rows}
    assert queries["learned-branch3"] == pytest.approx(BRANCH_COSTS[3], abs=1e-4)
    assert queries["learned-branch3-best-head"] == 1 and queries["independent"] == 2 and queries["learned"] == 1
    md = (out / "results.md").read_text()
    assert "| train cost |" in md
    assert re.search(r"\| learned-long \|.*\| 2x \|", md)
    table = printed[printed.index("method"):printed.index("(the full table")]
    assert max(len(line) for line in table.splitlines()) <= 100
    assert all(name in table for name in EXPECTED)


@pytest.mark.slow
def test_long_runs_train_factor_times_the_steps_on_the_validation_choice(study):
    out, _ = study
    meta = json.loads((out / "comparison.json").read_text())
    long_run = out / f"single-long-{meta['best_single'].removeprefix('single-')}"  # one folder per chosen loss
    steps = {name: read_history(out / name / "seed0" / "history.csv")[-1]["step"]
             for name in ("single-triplet", "learned", long_run.name, "learned-long")}
    assert steps == {"single-triplet": 4, "learned": 4, long_run.name: 8, "learned-long": 8}
    # the same two evaluations (one per epoch), at twice the steps: the schedule's shape is kept
    assert [r["epoch"] for r in read_history(out / "learned-long" / "seed0" / "history.csv")] == [1, 2]
    val = {loss: last_val(out / f"single-{loss}" / "seed0", f"heads.{loss}") for loss in ("triplet", "proxy_nca")}
    chosen = max(val, key=val.get)
    meta = json.loads((out / "comparison.json").read_text())
    assert meta["best_single"] == f"single-{chosen}" and meta["selection"] == "validation"
    summary = json.loads((long_run / "seed0" / "summary.json").read_text())
    assert [loss["name"] for loss in summary["config"]["losses"]] == [chosen]
    metrics = json.loads((long_run / "seed0" / "metrics.json").read_text())
    row = next(r for r in json.loads((out / "results.json").read_text()) if r["method"] == "single-long")
    assert row["map@r"]["mean"] == pytest.approx(metrics[f"heads.{chosen}"]["map@r"])


@pytest.mark.slow
def test_best_head_rows_are_the_validation_best_heads_at_one_heads_size(study):
    out, _ = study
    rows = {r["method"]: r for r in json.loads((out / "results.json").read_text())}
    for ensemble in ("equal", "learned", "learned-long"):
        run = out / ensemble / "seed0"
        val = {h: last_val(run, f"heads.{h}") for h in ("triplet", "proxy_nca")}
        best = max(val, key=val.get)
        metrics = json.loads((run / "metrics.json").read_text())[f"heads.{best}"]
        row = rows[f"{ensemble}-best-head"]
        assert row["map@r"]["mean"] == pytest.approx(metrics["map@r"])
        assert row["recall@1"]["mean"] == pytest.approx(metrics["recall@1"])
        assert row["embedding_size"] == DIM and rows[ensemble]["embedding_size"] == 2 * DIM


@pytest.mark.slow
def test_learning_curves_png_in_folder_and_report(study):
    from PIL import Image

    out, _ = study
    path = out / "learning_curves.png"
    with Image.open(path) as img:
        img.verify()
    page = (out / "report.html").read_text()
    assert "Validation and test MAP@R and Recall@1 against training steps" in page
    assert "against training cost" in page
    with Image.open(out / "plots" / "cost_accuracy.png") as img:
        img.verify()
    assert page.count('src="data:image/png;base64,') == 8


def test_study_without_validation_classes_is_a_one_line_error(tmp_path, tiny_config, capsys):
    rc = main(["compare", "-c", "glyphs-compare", "-o", str(tmp_path / "o"), "--methods", "study",
               *tiny_config.overrides("data.val_fraction=0")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "val_fraction" in line]
    assert len(errors) == 1 and "set data.val_fraction" in errors[0]
    assert err[-1] == errors[0]  # the error is one line (the line before says which config was read)
    assert not (tmp_path / "o").exists()  # refused before anything was trained


# Runs last: it rewrites the report without plots.
@pytest.mark.slow
def test_second_invocation_reuses_the_long_runs(study, tiny_config, monkeypatch):
    import lossensemble.experiments.runs as runs

    out, _ = study

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runs, "Trainer", refuse)
    before = json.loads((out / "results.json").read_text())
    assert main(argv(tiny_config, out, "--methods", "study", "--long-factor", "2", "--no-plots")) == 0
    after = json.loads((out / "results.json").read_text())
    assert [(r["method"], r["map@r"], r["train_cost"]) for r in after] == [
        (r["method"], r["map@r"], r["train_cost"]) for r in before]
