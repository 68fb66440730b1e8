"""Independent brute-force reference for the retrieval metrics (full distance matrix, argsort).

Written as plainly as possible, one query at a time in float64, so that it shares
no code (and no vectorisation tricks) with ``lossensemble.evaluation``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest


def brute_force_metrics(x, y, ks=(1, 2, 4, 8), distance="cosine", is_query=None, is_gallery=None):
    """Recall@K, kNN accuracy, MAP@R, R-precision in percent, from a full distance matrix."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    n = len(x)
    if distance == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms == 0, 1, norms)
        full = -(x @ x.T)  # smaller is nearer
    else:
        full = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    queries = range(n) if is_query is None else np.flatnonzero(is_query)
    gallery = np.arange(n) if is_gallery is None else np.flatnonzero(is_gallery)
    recall = {kk: [] for kk in ks}
    knn, maps, rps = [], [], []
    for i in queries:
        others = np.array([j for j in gallery if j != i])
        # sort by distance, ties by smaller index (np.lexsort: last key is primary)
        order = others[np.lexsort((others, full[i, others]))]
        ranked = y[order]
        for kk in ks:
            recall[kk].append(bool(np.any(ranked[:kk] == y[i])))
        top = list(ranked[:3])
        counts = Counter(top)
        best = max(counts.values())
        predicted = next(label for label in top if counts[label] == best)
        knn.append(predicted == y[i])
        r = int(np.sum(ranked == y[i]))
        if r == 0:
            continue
        rel = ranked[:r] == y[i]
        precisions = np.cumsum(rel) / np.arange(1, r + 1)
        maps.append(float(np.sum(precisions * rel) / r))
        rps.append(float(rel.mean()))
    out = {f"recall@{kk}": 100 * np.mean(recall[kk]) for kk in ks}
    out["knn_acc"] = 100 * np.mean(knn)
    out["map@r"] = 100 * np.mean(maps) if maps else float("nan")
    out["r_precision"] = 100 * np.mean(rps) if rps else float("nan")
    return out


@pytest.fixture
def brute():
    return brute_force_metrics


def clustered(n, n_classes, dim, spread, seed):
    """Gaussian clusters (seeded): labels in 0..n_classes-1, every class non-empty when n >= n_classes."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(n_classes), rng.integers(0, n_classes, n - n_classes)])
    rng.shuffle(y)
    centres = rng.normal(size=(n_classes, dim))
    x = centres[y] + spread * rng.normal(size=(n, dim))
    return x.astype(np.float32), y


@pytest.fixture
def make_clusters():
    return clustered


@pytest.fixture(autouse=True)
def _one_faiss_thread():
    """faiss on one thread in tests (CI has 2 shared cores; spinning OpenMP threads are slow)."""
    import faiss

    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)
