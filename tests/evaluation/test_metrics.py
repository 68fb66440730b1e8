"""compute_metrics against brute force, hand-made cases with known answers, and validation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lossensemble.errors import UserError
from lossensemble.evaluation import EvaluationWarning, compute_metrics, knn_vote, nmi_score
from lossensemble.evaluation.metrics import (
    _average_precision_at_r,
    _make_plan,
    _query_chunks,
    per_query_metrics,
)
from lossensemble.evaluation.neighbors import NeighborSearcher, prepare_vectors

KEYS = ["recall@1", "recall@2", "recall@4", "recall@8", "knn_acc", "map@r", "r_precision"]


def assert_same(got, want, keys=KEYS, tol=1e-9):
    for key in keys:
        assert got[key] == pytest.approx(want[key], abs=tol, nan_ok=True), key


# ----------------------------------------------------------------------- brute force


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_on_random_clusters(distance, seed, brute, make_clusters):
    x, y = make_clusters(n=150, n_classes=12, dim=8, spread=1.0, seed=seed)
    got = compute_metrics(x, y, distance=distance, nmi=False)
    assert_same(got, brute(x, y, distance=distance))
    assert set(got) == set(KEYS)


def test_matches_brute_force_with_single_item_classes(brute):
    rng = np.random.default_rng(5)
    y = np.array([0] * 10 + [1] * 6 + [2, 3, 4])  # classes 2, 3, 4 have one item each
    x = rng.normal(size=(len(y), 6)).astype(np.float32)
    with pytest.warns(EvaluationWarning, match=r"3 queries \(in 3 classes\)"):
        got = compute_metrics(x, y, k=(1, 3, 30), nmi=False)
    assert_same(got, brute(x, y, ks=(1, 3, 30)), keys=["recall@1", "recall@3", "recall@30", "knn_acc", "map@r", "r_precision"])
    # K beyond the gallery: "among all others" -> every non-singleton query is a hit
    assert got["recall@30"] == pytest.approx(100 * 16 / 19)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_query_gallery_mode_matches_brute_force(distance, brute, make_clusters):
    x, y = make_clusters(n=120, n_classes=10, dim=6, spread=0.8, seed=3)
    rng = np.random.default_rng(3)
    is_query = rng.random(120) < 0.5
    is_gallery = ~is_query
    is_gallery[:10] = True  # ten items are both: they must not retrieve themselves
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EvaluationWarning)
        got = compute_metrics(x, y, distance=distance, nmi=False, is_query=is_query, is_gallery=is_gallery)
    want = brute(x, y, distance=distance, is_query=is_query, is_gallery=is_gallery)
    assert_same(got, want)


def test_chunked_equals_unchunked(make_clusters):
    x, y = make_clusters(n=200, n_classes=15, dim=8, spread=1.0, seed=4)
    whole = compute_metrics(x, y, nmi=False)
    for chunk_size in (1, 7, 64):
        assert compute_metrics(x, y, nmi=False, chunk_size=chunk_size) == whole


def test_entry_budget_splits_big_classes_without_changing_results(make_clusters):
    x, y = make_clusters(n=300, n_classes=4, dim=5, spread=1.5, seed=6)  # R ~ 75
    y[:150] = 0  # one big class, R = 149
    plan = _make_plan(y, None, None)
    prepared = prepare_vectors(x, "cosine")
    searcher = NeighborSearcher(prepared, "cosine")
    ks = (1, 2, 4, 8)
    big = per_query_metrics(prepared, plan, ks, searcher, chunk_size=4096)
    small = per_query_metrics(prepared, plan, ks, searcher, chunk_size=4096, max_entries=200)
    for field in ("hits", "knn_correct", "map_r", "r_precision"):
        np.testing.assert_array_equal(getattr(big, field), getattr(small, field))


def test_query_chunks_respect_both_budgets():
    widths = np.array([8] * 50 + [500] * 5 + [3000])
    seen = []
    for sel in _query_chunks(widths, chunk_size=16, max_entries=1000):
        assert len(sel) <= 16
        assert len(sel) == 1 or len(sel) * widths[sel].max() <= 1000
        seen.extend(sel.tolist())
    assert sorted(seen) == list(range(len(widths)))


# ----------------------------------------------------------------------- hand-made cases


def test_perfectly_separated_clusters_score_100_everywhere():
    y = np.repeat(np.arange(5), 6)
    x = np.eye(5, 8)[y] * 10 + np.random.default_rng(0).normal(scale=0.01, size=(30, 8))
    for distance in ("cosine", "euclidean"):
        got = compute_metrics(x, y, distance=distance)
        for key, value in got.items():
            assert value == pytest.approx(100.0), (distance, key)


def test_line_with_r_precision_50_percent():
    # positions 0 (A), 1 (A), 1.9 (B), 5 (B): nearest others A, B, A, B -> two of four right
    x = np.array([[0.0], [1.0], [1.9], [5.0]])
    y = np.array([0, 0, 1, 1])
    got = compute_metrics(x, y, distance="euclidean", k=(1, 2, 4), nmi=False)
    assert got["r_precision"] == pytest.approx(50.0)
    assert got["map@r"] == pytest.approx(50.0)  # R = 1: MAP@R = precision at 1
    assert got["recall@1"] == pytest.approx(50.0)
    assert got["recall@2"] == pytest.approx(75.0)  # item at 1.9 sees A, A first
    assert got["recall@4"] == pytest.approx(100.0)
    assert got["knn_acc"] == pytest.approx(0.0)  # each majority of three is the other class


def test_map_at_r_by_hand():
    # items: 0:A@0, 1:B@1, 2:A@2.2, 3:A@3.5, 4:B@5.9 (class A: R = 2, class B: R = 1)
    #   item 0 ranks B A A B -> AP@R = (0 + 1/2)/2 = 0.25, R-prec 1/2
    #   item 1 ranks A A A B -> 0, 0
    #   item 2 ranks B A A B -> 0.25, 1/2
    #   item 3 ranks A B B A -> (1/1)/2 = 0.5, 1/2
    #   item 4 ranks A A B A -> 0, 0
    x = np.array([[0.0], [1.0], [2.2], [3.5], [5.9]])
    y = np.array([0, 1, 0, 0, 1])
    got = compute_metrics(x, y, distance="euclidean", k=(1, 2, 4), nmi=False)
    assert got["map@r"] == pytest.approx(100 * (0.25 + 0 + 0.25 + 0.5 + 0) / 5)
    assert got["r_precision"] == pytest.approx(100 * 1.5 / 5)
    assert got["recall@1"] == pytest.approx(20.0)
    assert got["recall@2"] == pytest.approx(60.0)
    assert got["recall@4"] == pytest.approx(100.0)
    assert got["knn_acc"] == pytest.approx(40.0)  # items 0 and 2 are voted right


def test_average_precision_at_r_from_relevance_rows():
    relevant = np.array(
        [
            [1, 0, 1, 0],  # R = 2: (1 + 0)/2 = 0.5 ; R-prec 1/2
            [0, 1, 1, 1],  # R = 3: (1/2 + 2/3)/3 ; R-prec 2/3
            [1, 1, 1, 1],  # R = 0: undefined
        ],
        dtype=bool,
    )
    map_r, r_prec = _average_precision_at_r(relevant, np.array([2, 3, 0]))
    np.testing.assert_allclose(map_r[:2], [0.5, (1 / 2 + 2 / 3) / 3])
    np.testing.assert_allclose(r_prec[:2], [0.5, 2 / 3])
    assert np.isnan(map_r[2]) and np.isnan(r_prec[2])


def test_knn_vote_ties_go_to_the_nearest_neighbours_class():
    labels = np.array([[5, 7, 7], [5, 7, 9], [9, 5, 7], [4, -1, -1], [-1, -1, -1], [3, 3, 8]])
    np.testing.assert_array_equal(knn_vote(labels), [7, 5, 9, 4, -1, 3])


def test_knn_tie_of_three_classes_uses_the_nearest():
    # query A@0 has neighbours A@1, B@2, C@3: a 1-1-1 tie, the nearest (A) wins
    x = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
    y = np.array([0, 0, 1, 2, 2])
    from lossensemble.evaluation.metrics import KNN_VOTERS

    assert KNN_VOTERS == 3
    plan = _make_plan(y, None, None)
    prepared = prepare_vectors(x, "euclidean")
    pq = per_query_metrics(prepared, plan, (1,), NeighborSearcher(prepared, "euclidean"), 10)
    assert pq.knn_correct[0]


def test_exact_ties_are_ordered_by_gallery_index():
    # item 0's others are all at the same distance: ranking must be 1, 2, 3, 4
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    y = np.array([0, 1, 1, 1, 0])
    got = compute_metrics(x, y, distance="euclidean", k=(1, 2, 3, 4), nmi=False)
    # item 0 (class 0, R = 1) ranks 1, 2, 3, 4 -> first same-class at rank 4
    first = per_query_metrics(
        prepare_vectors(x, "euclidean"), _make_plan(y, None, None), (1, 2, 3, 4),
        NeighborSearcher(prepare_vectors(x, "euclidean"), "euclidean"), 10,
    )
    np.testing.assert_array_equal(first.hits[0], [False, False, False, True])
    assert 0 <= got["recall@1"] <= 100


def test_cosine_ignores_scale_euclidean_does_not():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(6), 5)
    x = rng.normal(size=(30, 4))
    scaled = x * rng.uniform(0.1, 10, size=(30, 1))
    assert compute_metrics(x, y, nmi=False) == compute_metrics(scaled, y, nmi=False)
    assert compute_metrics(x, y, distance="euclidean", nmi=False) != compute_metrics(
        scaled, y, distance="euclidean", nmi=False
    )
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert_same(compute_metrics(unit, y, nmi=False), compute_metrics(unit, y, distance="euclidean", nmi=False))


def test_accepts_torch_tensors_and_string_labels(make_clusters):
    import torch
    x, y = make_clusters(n=60, n_classes=6, dim=4, spread=1.0, seed=9)
    base = compute_metrics(x, y, nmi=False)
    assert compute_metrics(torch.from_numpy(x), torch.from_numpy(y), nmi=False) == base
    assert compute_metrics(x, np.array([f"class-{v}" for v in y]), nmi=False) == base


# ----------------------------------------------------------------------- NMI


def test_nmi_is_seeded_and_bounded(make_clusters):
    x, y = make_clusters(n=200, n_classes=8, dim=6, spread=1.0, seed=2)
    a = compute_metrics(x, y)["nmi"]
    assert a == compute_metrics(x, y)["nmi"]
    assert 0 <= a <= 100


def test_nmi_single_class_is_100():
    x = np.random.default_rng(0).normal(size=(10, 3))
    assert nmi_score(x.astype(np.float32), np.zeros(10, int)) == 1.0


def test_nmi_in_query_gallery_mode_uses_all_evaluated_items(make_clusters):
    x, y = make_clusters(n=80, n_classes=4, dim=6, spread=0.05, seed=1)
    is_query = np.arange(80) % 2 == 0
    got = compute_metrics(x, y, is_query=is_query, is_gallery=~is_query)
    assert got["nmi"] == pytest.approx(100.0)


# ----------------------------------------------------------------------- validation


def test_length_mismatch():
    with pytest.raises(UserError, match="10 embeddings but 9 labels"):
        compute_metrics(np.zeros((10, 3)), np.zeros(9))


def test_nan_rows_are_counted_and_located():
    x = np.random.default_rng(0).normal(size=(20, 3))
    x[[3, 7, 8, 9, 11, 15], 1] = np.nan
    x[2, 0] = np.inf
    with pytest.raises(UserError, match=r"7 embedding rows contain NaN or inf \(rows 2, 3, 7, 8, 9, \.\.\.\)"):
        compute_metrics(x, np.arange(20) % 2)


@pytest.mark.parametrize(
    ("embeddings", "labels", "message"),
    [
        (np.zeros((1, 3)), np.zeros(1), "at least 2 embeddings"),
        (np.zeros(5), np.zeros(5), "2-D array"),
        (np.zeros((5, 2, 2)), np.zeros(5), "2-D array"),
        (np.zeros((4, 2)), np.zeros((2, 2)), "1-D array"),
        (np.array([["a", "b"], ["c", "d"]]), np.zeros(2), "numeric"),
    ],
)
def test_bad_shapes(embeddings, labels, message):
    with pytest.raises(UserError, match=message):
        compute_metrics(embeddings, labels)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"distance": "manhattan"}, "unknown distance"),
        ({"k": (1, 0)}, "positive integer"),
        ({"k": ()}, "at least one K"),
        ({"is_query": np.ones(6, bool)}, "both is_query and is_gallery"),
        ({"is_query": np.ones(5, bool), "is_gallery": np.ones(6, bool)}, "length 6"),
        ({"is_query": np.zeros(6, bool), "is_gallery": np.ones(6, bool)}, "is_query selects no item"),
        ({"is_query": np.full(6, 2), "is_gallery": np.ones(6, bool)}, "boolean"),
        ({"device": "tpu"}, "unknown device"),
    ],
)
def test_bad_arguments(kwargs, message):
    x = np.random.default_rng(0).normal(size=(6, 3))
    with pytest.raises(UserError, match=message):
        compute_metrics(x, np.array([0, 0, 1, 1, 2, 2]), nmi=False, **kwargs)


def test_all_single_item_classes_give_nan_map_with_warning():
    x = np.random.default_rng(0).normal(size=(4, 3))
    with pytest.warns(EvaluationWarning, match="4 queries"):
        got = compute_metrics(x, np.arange(4), nmi=False)
    assert np.isnan(got["map@r"]) and np.isnan(got["r_precision"])
    assert got["recall@1"] == 0.0


def test_threads_are_restored_and_do_not_change_results(make_clusters):
    import faiss

    x, y = make_clusters(n=100, n_classes=10, dim=4, spread=1.0, seed=8)
    before = faiss.omp_get_max_threads()
    assert compute_metrics(x, y, nmi=False, threads=1) == compute_metrics(x, y, nmi=False)
    assert faiss.omp_get_max_threads() == before
    with pytest.raises(UserError, match="threads must be at least 1"):
        compute_metrics(x, y, threads=0)
    with pytest.raises(UserError, match="chunk_size must be at least 1"):
        compute_metrics(x, y, chunk_size=0)
