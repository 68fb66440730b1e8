"""Hypothesis property tests: permutation invariance, bounds, perfect embeddings."""

from __future__ import annotations

import math
import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lossensemble.evaluation import EvaluationWarning, compute_metrics

SETTINGS = settings(max_examples=40, deadline=None)
NEIGHBOUR_KEYS = ("recall@1", "recall@2", "recall@4", "recall@8", "knn_acc", "map@r", "r_precision")

labels_strategy = st.lists(st.integers(0, 5), min_size=2, max_size=30).map(np.array)


def quiet_metrics(x, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EvaluationWarning)
        return compute_metrics(x, y, **kwargs)


@SETTINGS
@given(y=labels_strategy, seed=st.integers(0, 2**31 - 1), distance=st.sampled_from(["cosine", "euclidean"]))
def test_permutation_invariance(y, seed, distance):
    # Gaussian embeddings: distances have no exact ties, so the order of items cannot matter.
    # (NMI is left out: k-means is seeded by item order, so it is invariant only in distribution.)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(y), 5))
    perm = rng.permutation(len(y))
    a = quiet_metrics(x, y, distance=distance, nmi=False)
    b = quiet_metrics(x[perm], y[perm], distance=distance, nmi=False)
    for key in NEIGHBOUR_KEYS:
        assert math.isclose(a[key], b[key], abs_tol=1e-9) or (math.isnan(a[key]) and math.isnan(b[key])), key


@SETTINGS
@given(
    data=st.integers(2, 25).flatmap(
        lambda n: st.tuples(
            arrays(np.float32, (n, 3), elements=st.floats(-100, 100, width=32)),
            arrays(np.int64, (n,), elements=st.integers(0, 4)),
        )
    ),
    distance=st.sampled_from(["cosine", "euclidean"]),
)
def test_metrics_are_percentages(data, distance):
    x, y = data  # duplicates, zero vectors and ties included
    got = quiet_metrics(x, y, distance=distance)
    assert set(got) == {*NEIGHBOUR_KEYS, "nmi"}
    for key, value in got.items():
        if math.isnan(value):
            # NaN only for a documented degenerate case, named in the result's warnings
            assert any("undefined (NaN)" in w for w in got.warnings), (key, got.warnings)
            if key in ("map@r", "r_precision") and not any("embeddings are" in w for w in got.warnings):
                assert np.bincount(y).max() == 1  # no query has another item of its class
            continue
        assert 0.0 <= value <= 100.0 + 1e-9, key
    assert got["map@r"] <= got["r_precision"] + 1e-9 or math.isnan(got["map@r"])
    recalls = [got[f"recall@{k}"] for k in (1, 2, 4, 8)]
    assert all(math.isnan(r) for r in recalls) or recalls == sorted(recalls)


@SETTINGS
@given(
    sizes=st.lists(st.integers(3, 6), min_size=1, max_size=6),
    seed=st.integers(0, 2**31 - 1),
    distance=st.sampled_from(["cosine", "euclidean"]),
)
def test_perfect_embeddings_score_100(sizes, seed, distance):
    # each class is a tight cluster on its own axis; classes of >= 3 items so that
    # two same-class neighbours win the kNN vote
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(y)
    x = np.eye(len(sizes), 8)[y] * 10 + rng.normal(scale=1e-3, size=(len(y), 8))
    got = quiet_metrics(x, y, distance=distance, nmi=False)
    for key in NEIGHBOUR_KEYS:
        assert math.isclose(got[key], 100.0), key
