"""Degenerate evaluations: each case gives the documented values, a warning naming it, and the flag."""

from __future__ import annotations

import json
import math
import pickle
import warnings

import numpy as np
import pytest

from lossensemble.errors import UserError
from lossensemble.evaluation import EvaluationWarning, MetricResults, compute_metrics, metrics_to_json

NEIGHBOUR_KEYS = ["recall@1", "recall@2", "recall@4", "recall@8", "knn_acc", "map@r", "r_precision"]


def evaluate(x, y, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = compute_metrics(x, y, **kwargs)
    messages = [str(w.message) for w in caught if issubclass(w.category, EvaluationWarning)]
    assert messages == got.warnings  # every warning is also in the result, once
    return got, messages


def test_one_class_is_trivially_100_and_nmi_undefined():
    x = np.random.default_rng(0).normal(size=(10, 4))
    got, messages = evaluate(x, np.zeros(10, int))
    assert all(got[k] == 100.0 for k in NEIGHBOUR_KEYS)
    assert math.isnan(got["nmi"])
    assert len(messages) == 1 and messages[0].startswith("only one class among the 10 items")
    assert "trivially 100" in messages[0]


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_identical_embeddings_make_every_metric_undefined(distance):
    x = np.tile([[0.5, -1.0, 2.0]], (12, 1))
    got, messages = evaluate(x, np.arange(12) % 3, distance=distance)
    assert set(got) == set(NEIGHBOUR_KEYS) | {"nmi"}
    assert all(math.isnan(v) for v in got.values())
    assert len(messages) == 1 and messages[0].startswith("all 12 embeddings are identical")


def test_parallel_embeddings_are_identical_for_cosine_only():
    x = np.outer(np.arange(1, 9), [1.0, 2.0, 3.0])  # one direction, different lengths
    y = np.arange(8) % 2
    got, messages = evaluate(x, y, nmi=False)
    assert math.isnan(got["recall@1"]) and "same direction" in messages[0]
    got, messages = evaluate(x, y, nmi=False, distance="euclidean")
    assert not any(math.isnan(v) for v in got.values())
    assert not any("identical" in m for m in messages)


def test_all_zero_embeddings_make_every_metric_undefined():
    got, messages = evaluate(np.zeros((10, 4)), np.arange(10) % 2)
    assert all(math.isnan(v) for v in got.values())
    assert messages == [
        "all 10 embeddings are zero: every distance ties, so the neighbour order is only the item order; "
        "every metric is undefined (NaN)"
    ]


def test_some_zero_rows_are_flagged_under_cosine_only():
    rng = np.random.default_rng(1)
    x = np.vstack([np.zeros((2, 4)), rng.normal(size=(18, 4))])
    y = np.arange(20) % 2
    got, messages = evaluate(x, y, nmi=False)
    assert messages == ["2 of 20 embeddings are all-zero: they have no direction for cosine "
                        "(similarity 0 to everything, ties broken by item order)"]
    assert not any(math.isnan(v) for v in got.values())  # kept, flagged
    _, messages = evaluate(x, y, nmi=False, distance="euclidean")
    assert messages == []


def test_nan_and_inf_embeddings_are_a_user_error_not_a_number():
    x = np.random.default_rng(2).normal(size=(6, 3))
    x[4, 1] = np.inf
    with pytest.raises(UserError, match=r"1 embedding rows contain NaN or inf \(rows 4\)"):
        compute_metrics(x, np.arange(6) % 2)


def test_one_item_per_class_has_no_positive_map_undefined_nmi_trivial():
    x = np.random.default_rng(3).normal(size=(6, 4))
    got, messages = evaluate(x, np.arange(6), k=(1, 2))
    assert got["recall@1"] == got["recall@2"] == got["knn_acc"] == 0.0  # misses, not undefined
    assert math.isnan(got["map@r"]) and math.isnan(got["r_precision"])
    assert got["nmi"] == pytest.approx(100.0)
    assert messages[0].startswith("every one of the 6 items is its own class: nmi is trivially 100")
    assert messages[1].startswith("all 6 queries (in 6 classes) have no other item of their class")
    assert messages[1].endswith("map@r and r_precision are undefined (NaN)")


def test_single_query_per_class_in_query_gallery_mode():
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(4), 3)
    is_query = np.zeros(12, bool)
    is_query[::3] = True  # one query per class, not in the gallery
    is_gallery = ~is_query
    is_gallery[[1, 4]] = False  # classes 0 and 1 keep one gallery item, ...
    is_gallery[[7, 8]] = False  # ... class 2 none: its query has no positive
    x = rng.normal(size=(12, 5))
    got, messages = evaluate(x, y, k=(1,), nmi=False, is_query=is_query, is_gallery=is_gallery)
    assert any(m.startswith("1 queries (in 1 classes) have no other item") for m in messages)
    assert not math.isnan(got["map@r"])


def test_k_beyond_the_gallery_is_flagged_but_kept():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 4))
    y = np.array([0, 0, 0, 1, 1, 1])
    got, messages = evaluate(x, y, k=(1, 4, 5, 8), nmi=False)
    assert got["recall@5"] == got["recall@8"] == 100.0  # every query's class has other items
    assert messages == ["recall@5, recall@8: K is at least the 5 other gallery items of a query, so a query "
                        "scores a hit whenever its class has any other item (trivially)"]


def test_healthy_data_has_no_warnings_and_a_json_ready_form(make_clusters):
    x, y = make_clusters(n=60, n_classes=6, dim=4, spread=0.5, seed=0)
    got, messages = evaluate(x, y, k=(1, 2))
    assert messages == [] and isinstance(got, MetricResults) and isinstance(got, dict)
    data = metrics_to_json(got)
    assert data["warnings"] == [] and data["recall@1"] == got["recall@1"]


def test_json_form_has_null_for_nan_and_the_reasons():
    got, _ = evaluate(np.zeros((4, 2)), [0, 0, 1, 1], nmi=False)
    text = json.dumps(metrics_to_json(got), allow_nan=False)  # strict JSON: no NaN literal
    data = json.loads(text)
    assert data["map@r"] is None and data["warnings"][0].startswith("all 4 embeddings are zero")


def test_warnings_survive_pickling_across_ranks():
    got = MetricResults({"recall@1": 50.0}, ["a reason"])
    back = pickle.loads(pickle.dumps(got))
    assert back == {"recall@1": 50.0} and back.warnings == ["a reason"]


def test_k_past_int64_means_among_all_items():
    x = np.random.default_rng(6).normal(size=(6, 4))
    y = np.array([0, 0, 0, 1, 1, 1])
    got, messages = evaluate(x, y, k=(1, 10**20), nmi=False)
    assert got[f"recall@{10**20}"] == 100.0 and f"recall@{10**20}: K is at least the 5 other" in messages[0]
