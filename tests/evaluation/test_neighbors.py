"""knn_search: exact results, self-exclusion by index, tie order, padding, backends."""

from __future__ import annotations

import numpy as np
import pytest

from lossensemble.errors import UserError
from lossensemble.evaluation import knn_search
from lossensemble.evaluation.neighbors import _FaissFlat, _TorchFlat, prepare_vectors


def brute_knn(q, g, k, distance, self_ids=None):
    """Full distance matrix in float64 and a stable sort (ties by index)."""
    q, g = np.asarray(q, np.float64), np.asarray(g, np.float64)
    if distance == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
        full = 1 - q @ g.T
    else:
        full = ((q[:, None] - g[None]) ** 2).sum(-1)
    if self_ids is not None:
        full[np.arange(len(q)), self_ids] = np.inf
    idx = np.argsort(full, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(full, idx, 1), idx


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_self_search_matches_brute_force(distance):
    x = np.random.default_rng(0).normal(size=(120, 10)).astype(np.float32)
    dist, idx = knn_search(x, x, 6, distance=distance, exclude_self=True, chunk_size=32)
    want_d, want_i = brute_knn(x, x, 6, distance, self_ids=np.arange(120))
    np.testing.assert_array_equal(idx, want_i)
    np.testing.assert_allclose(dist, want_d, rtol=1e-4, atol=1e-4)
    assert dist.dtype == np.float32 and idx.dtype == np.int64
    assert not (idx == np.arange(120)[:, None]).any()


def test_query_gallery_search_with_query_ids():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(50, 4)).astype(np.float32)
    q = np.concatenate([g[:5], rng.normal(size=(5, 4)).astype(np.float32)])
    ids = np.array([0, 1, 2, 3, 4, -1, -1, -1, -1, -1])
    _, idx = knn_search(q, g, 3, distance="euclidean", exclude_self=True, query_ids=ids)
    _, want = brute_knn(q, g, 3, "euclidean", self_ids=None)
    _, want_self = brute_knn(q[:5], g, 3, "euclidean", self_ids=np.arange(5))
    np.testing.assert_array_equal(idx[5:], want[5:])
    np.testing.assert_array_equal(idx[:5], want_self)


def test_duplicates_keep_index_order_and_only_self_is_removed():
    x = np.zeros((6, 3), np.float32)
    x[:, 0] = [1, 1, 1, 1, 5, 9]  # items 0-3 are identical
    for distance in ("cosine", "euclidean"):
        _, idx = knn_search(x, x, 3, distance=distance, exclude_self=True, chunk_size=1)
        np.testing.assert_array_equal(idx[0], [1, 2, 3])
        np.testing.assert_array_equal(idx[2], [0, 1, 3])
    # cosine: everything is the same direction -> all ties, pure index order
    _, idx = knn_search(x, x, 5, distance="cosine", exclude_self=True)
    np.testing.assert_array_equal(idx[4], [0, 1, 2, 3, 5])


def test_padding_past_the_gallery():
    x = np.random.default_rng(2).normal(size=(3, 2)).astype(np.float32)
    dist, idx = knn_search(x, x, 5, exclude_self=True)
    assert (idx[:, 2:] == -1).all() and np.isinf(dist[:, 2:]).all()
    assert (idx[:, :2] >= 0).all() and np.isfinite(dist[:, :2]).all()


def test_cosine_distance_is_one_minus_similarity():
    q = np.array([[1.0, 0.0]], np.float32)
    g = np.array([[0.0, 2.0], [3.0, 0.0], [-1.0, 0.0]], np.float32)
    dist, idx = knn_search(q, g, 3, distance="cosine")
    np.testing.assert_array_equal(idx, [[1, 0, 2]])
    np.testing.assert_allclose(dist, [[0.0, 1.0, 2.0]], atol=1e-6)


def test_torch_backend_agrees_with_faiss():
    x = prepare_vectors(np.random.default_rng(3).normal(size=(80, 8)), "euclidean")
    for ip in (True, False):
        s_f, i_f = _FaissFlat(x, ip, None).search(x[:20], 5)
        s_t, i_t = _TorchFlat(x, ip, "cpu").search(x[:20], 5)
        np.testing.assert_array_equal(i_f, i_t)
        np.testing.assert_allclose(s_f, s_t, rtol=1e-4, atol=1e-4)
    s_t, i_t = _TorchFlat(x[:3], True, "cpu").search(x[:2], 5)
    assert (i_t[:, 3:] == -1).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k must be at least 1"),
        ({"distance": "dot"}, "unknown distance"),
        ({"exclude_self": True, "query_ids": np.arange(3)}, "query_ids has 3 entries"),
    ],
)
def test_knn_search_validation(kwargs, message):
    x = np.zeros((5, 2), np.float32)
    args = {"k": 2, **kwargs}
    with pytest.raises(UserError, match=message):
        knn_search(x, x, **args)


def test_dimension_mismatch():
    with pytest.raises(UserError, match="dimension"):
        knn_search(np.zeros((2, 3)), np.zeros((4, 2)), 1)
    with pytest.raises(UserError, match="same length"):
        knn_search(np.zeros((2, 3)), np.zeros((4, 3)), 1, exclude_self=True)
