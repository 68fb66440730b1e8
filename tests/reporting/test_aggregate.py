"""Aggregation over seeds, choice of the best single loss, paired gains, and the result tables."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from lossensemble.reporting.aggregate import aggregate_metrics, mean_std, paired_gain, select_best
from lossensemble.reporting.results import comparison_rows, format_mean_std, rows_to_csv, rows_to_markdown
from lossensemble.models import independent_embedding


def test_mean_std_known_numbers():
    s = mean_std([1.0, 2.0, 3.0, 4.0])
    assert s["mean"] == 2.5 and s["n"] == 4
    assert s["std"] == pytest.approx(math.sqrt(5.0 / 3.0))  # sample std (ddof=1)
    assert mean_std([7.0]) == {"mean": 7.0, "std": None, "n": 1}
    assert mean_std([]) == {"mean": None, "std": None, "n": 0}
    assert mean_std([1.0, float("nan"), 3.0])["mean"] == 2.0


def test_aggregate_metrics_over_seeds():
    agg = aggregate_metrics([{"recall@1": 90.0, "map@r": 50.0}, {"recall@1": 92.0, "map@r": 54.0}])
    assert agg["recall@1"]["mean"] == 91.0 and agg["recall@1"]["std"] == pytest.approx(math.sqrt(2.0))
    assert agg["map@r"]["mean"] == 52.0 and agg["map@r"]["std"] == pytest.approx(math.sqrt(8.0))


def test_best_single_uses_validation_when_every_run_has_it():
    test = {"a": [{"map@r": 60.0}], "b": [{"map@r": 50.0}]}
    val = {"a": [{"map@r": 30.0}], "b": [{"map@r": 40.0}]}
    sel = select_best(test, val)
    assert (sel.best, sel.split) == ("b", "validation")
    assert "validation classes" in sel.describe()
    sel = select_best(test, {"a": [None], "b": [{"map@r": 40.0}]})
    assert (sel.best, sel.split) == ("a", "test")
    assert "no validation split" in sel.describe()


def test_paired_gain_is_per_seed():
    method = {0: {"map@r": 52.0}, 1: {"map@r": 55.0}, 2: {"map@r": 99.0}}
    ref = {0: {"map@r": 50.0}, 1: {"map@r": 52.0}}  # seed 2 has no reference: left out
    g = paired_gain(method, ref, ["map@r"])["map@r"]
    assert g["mean"] == 2.5 and g["n"] == 2 and g["std"] == pytest.approx(math.sqrt(0.5))


def _rows():
    methods = [{"name": "single-a", "group": "single"}, {"name": "single-b", "group": "single"},
               {"name": "ens", "group": "ensemble", "description": "the ensemble"}]
    test = {"single-a": {0: {"recall@1": 80.0, "knn_acc": 70.0, "map@r": 40.0},
                         1: {"recall@1": 82.0, "knn_acc": 72.0, "map@r": 42.0}},
            "single-b": {0: {"recall@1": 70.0, "knn_acc": 60.0, "map@r": 30.0},
                         1: {"recall@1": 70.0, "knn_acc": 60.0, "map@r": 30.0}},
            "ens": {0: {"recall@1": 85.0, "knn_acc": 71.0, "map@r": 45.0},
                    1: {"recall@1": 85.0, "knn_acc": 71.0, "map@r": 45.0}}}
    sel = select_best({k: list(v.values()) for k, v in test.items() if k.startswith("single")}, {})
    return comparison_rows(methods, test, sel, {"ens": [0.2, 0.4]}, {"ens": 128}, {"ens": 0.01})


def test_comparison_rows():
    rows = _rows()
    assert [r["method"] for r in rows] == ["single-a", "single-b", "ens"]
    ens = rows[2]
    assert ens["recall@1"] == {"mean": 85.0, "std": 0.0}
    assert ens["gain"]["recall@1"]["mean"] == 4.0  # (85-80 + 85-82) / 2
    assert ens["seconds_per_step"]["mean"] == pytest.approx(0.3)
    assert rows[0]["best_single"] and not ens["best_single"]


def test_markdown_and_csv_tables():
    rows = _rows()
    md = rows_to_markdown(rows)
    assert "| single-a * | 81.00 ± 1.41 |" in md
    assert "+4.00 ± 1.41" in md
    parsed = list(csv.DictReader(io.StringIO(rows_to_csv(rows))))
    assert parsed[2]["method"] == "ens" and float(parsed[2]["recall@1_mean"]) == 85.0
    assert float(parsed[2]["gain_recall@1_mean"]) == 4.0 and parsed[2]["embedding_size"] == "128"
    assert format_mean_std({"mean": 1.234, "std": None}) == "1.23"
    assert format_mean_std(None) == "-"


def test_independent_embedding_normalises_and_scales():
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=(5, 4)) * 3 for _ in range(3))
    e = independent_embedding([a, b, c])
    assert e.shape == (5, 12)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(e[:, 4:8], b / np.linalg.norm(b, axis=1, keepdims=True) / np.sqrt(3), rtol=1e-5)
    # squared distances average those of the parts
    def sq(x, i, j):
        return float(((x[i] - x[j]) ** 2).sum())
    parts = [p / np.linalg.norm(p, axis=1, keepdims=True) for p in (a, b, c)]
    assert sq(e, 0, 1) == pytest.approx(np.mean([sq(p, 0, 1) for p in parts]), rel=1e-5)
