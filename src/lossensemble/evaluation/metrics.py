"""Retrieval metrics on unseen classes: Recall@K, kNN accuracy, MAP@R, R-precision, NMI.

Protocol (docs/method.md, "Evaluation"): every query is searched against all *other*
items (its own entry excluded), or, in query/gallery mode (In-Shop), against
the gallery only. Neighbours come from :mod:`lossensemble.evaluation.neighbors`
(faiss exact search, in chunks: memory O(chunk * k), never n x n); the metrics
are vectorised with numpy on each chunk's (queries, k) matrix of neighbour
labels; NMI clusters with faiss k-means and scores with scikit-learn.

Conventions:

* Neighbour order: by distance, exact ties by smaller gallery index.
* Recall@K: a query is a hit when a same-class item is among its K nearest
  others (K larger than the gallery means "among all of them").
* kNN accuracy: majority vote of the 3 nearest others; a tie between classes
  (three different labels) goes to the class of the nearest neighbour among
  the tied classes, i.e. the nearest neighbour.
* MAP@R and R-precision follow Musgrave et al. 2020, with R the number of other
  same-class gallery items of the query. Queries with R = 0 (a class with a
  single item) cannot be queries for them: they are left out of these two
  metrics with an :class:`EvaluationWarning` giving the count; they still serve
  as gallery items and count as misses for Recall@K and kNN accuracy.
* NMI: faiss k-means (k = number of classes, seeded) on the evaluated items (all
  of them, or query and gallery items together), scikit-learn's
  ``normalized_mutual_info_score`` (arithmetic mean normalisation).

All values are percentages (0-100).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
from sklearn.metrics import normalized_mutual_info_score
from tqdm.auto import tqdm

from lossensemble.errors import UserError

#: Display names of the metrics (tables, plots, reports).
METRIC_TITLES = {"knn_acc": "kNN acc", "map@r": "MAP@R", "r_precision": "R-prec", "nmi": "NMI"}


def metric_title(metric: str) -> str:
    """The display name of a metric key (``recall@1`` -> ``R@1``, ``map@r`` -> ``MAP@R``)."""
    return METRIC_TITLES.get(metric, metric.replace("recall@", "R@"))
from lossensemble.evaluation.degenerate import MetricResults, degenerate_findings
from lossensemble.evaluation.neighbors import (
    DEFAULT_MAX_ENTRIES,
    NeighborSearcher,
    as_float32_matrix,
    check_distance,
    faiss_threads,
    prepare_vectors,
    resolve_chunk_size,
)

__all__ = [
    "EvaluationWarning",
    "KNN_VOTERS",
    "PerQuery",
    "compute_metrics",
    "knn_vote",
    "nmi_score",
    "per_query_metrics",
]

#: Number of nearest others that vote in kNN accuracy.
KNN_VOTERS = 3


class EvaluationWarning(UserWarning):
    """Something about the evaluated data the user should know (e.g. single-item classes)."""


# --------------------------------------------------------------------------- validation


def _validate_embeddings(embeddings: Any) -> np.ndarray:
    x = as_float32_matrix(embeddings, "embeddings")
    if len(x) < 2:
        raise UserError(f"need at least 2 embeddings to evaluate, got {len(x)}")
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        first = ", ".join(str(i) for i in bad[:5])
        more = ", ..." if len(bad) > 5 else ""
        raise UserError(f"{len(bad)} embedding rows contain NaN or inf (rows {first}{more})")
    return x


def _encode_labels(labels: Any, n: int) -> np.ndarray:
    """Labels (any hashable dtype) as contiguous int64 class ids 0..C-1."""
    if hasattr(labels, "detach") and hasattr(labels, "cpu"):
        labels = labels.detach().cpu().numpy()
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise UserError(f"labels must be a 1-D array, got shape {tuple(y.shape)}")
    if len(y) != n:
        raise UserError(f"{n} embeddings but {len(y)} labels: lengths must match")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise UserError("labels contain NaN or inf")
    return np.unique(y, return_inverse=True)[1].astype(np.int64).reshape(-1)


def _validate_ks(k: int | Sequence[int]) -> tuple[int, ...]:
    ks = (k,) if isinstance(k, (int, np.integer)) else tuple(k)
    if not ks:
        raise UserError("give at least one K for recall@K")
    if any(int(v) != v or int(v) < 1 for v in ks):
        raise UserError(f"every K must be a positive integer, got {list(ks)}")
    return tuple(sorted({int(v) for v in ks}))


def _validate_mask(mask: Any, n: int, name: str) -> np.ndarray:
    if hasattr(mask, "detach") and hasattr(mask, "cpu"):
        mask = mask.detach().cpu().numpy()
    m = np.asarray(mask)
    if m.ndim != 1 or len(m) != n:
        raise UserError(f"{name} must be a 1-D mask of length {n}, got shape {tuple(m.shape)}")
    if m.dtype != np.bool_:
        if not np.isin(m, (0, 1)).all():
            raise UserError(f"{name} must be boolean (or 0/1)")
        m = m.astype(bool)
    if not m.any():
        raise UserError(f"{name} selects no item")
    return m


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class _Plan:
    """Who searches whom: query/gallery rows, their labels and same-class counts."""

    query_rows: np.ndarray  # indices into the embeddings
    gallery_rows: np.ndarray
    query_labels: np.ndarray
    gallery_labels: np.ndarray
    self_ids: np.ndarray | None  # gallery position of each query, -1 if not in the gallery
    r: np.ndarray  # number of other same-class gallery items per query


def _make_plan(y: np.ndarray, is_query: Any, is_gallery: Any) -> _Plan:
    n = len(y)
    if (is_query is None) != (is_gallery is None):
        raise UserError("give both is_query and is_gallery, or neither")
    if is_query is None:
        rows = np.arange(n, dtype=np.int64)
        q_rows, g_rows, self_ids = rows, rows, rows
    else:
        qm = _validate_mask(is_query, n, "is_query")
        gm = _validate_mask(is_gallery, n, "is_gallery")
        q_rows, g_rows = np.flatnonzero(qm), np.flatnonzero(gm)
        position = np.full(n, -1, dtype=np.int64)
        position[g_rows] = np.arange(len(g_rows))
        self_ids = position[q_rows]
    g_counts = np.bincount(y[g_rows], minlength=int(y.max()) + 1)
    r = g_counts[y[q_rows]] - (self_ids >= 0)
    return _Plan(q_rows, g_rows, y[q_rows], y[g_rows], self_ids, r.astype(np.int64))


def _query_chunks(
    widths: np.ndarray, chunk_size: int, max_entries: int
) -> Iterator[np.ndarray]:
    """Groups of query positions, sorted by needed width, each within both budgets.

    Sorting by width keeps queries of big classes (large R) together, so one big
    class never makes a whole chunk retrieve R_max neighbours.
    """
    order = np.argsort(widths, kind="stable")
    start, n = 0, len(order)
    while start < n:
        stop = min(start + chunk_size, n)
        while stop - start > 1 and (stop - start) * int(widths[order[stop - 1]]) > max_entries:
            stop = start + max(1, max_entries // int(widths[order[stop - 1]]))
        yield order[start:stop]
        start = stop


# --------------------------------------------------------------------------- per-query metrics


@dataclass
class PerQuery:
    """Per-query results in query order (NaN in ``map_r``/``r_precision`` for R = 0)."""

    hits: np.ndarray  # (nq, len(ks)) bool, recall@K hits
    knn_correct: np.ndarray  # (nq,) bool
    map_r: np.ndarray  # (nq,) float64 in [0, 1]
    r_precision: np.ndarray  # (nq,) float64 in [0, 1]


def knn_vote(neighbor_labels: np.ndarray) -> np.ndarray:
    """Majority label of each row of ``neighbor_labels`` (nearest first; -1 = no neighbour).

    A tie between labels goes to the one that occurs first, i.e. the class of the
    nearest neighbour among the tied classes. Rows with no neighbour give -1.
    """
    valid = neighbor_labels >= 0
    same = neighbor_labels[:, :, None] == neighbor_labels[:, None, :]
    votes = (same & valid[:, None, :]).sum(axis=2)
    votes[~valid] = 0
    best = votes.argmax(axis=1)
    return neighbor_labels[np.arange(len(neighbor_labels)), best]


def _average_precision_at_r(relevant: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MAP@R and R-precision per row from a (rows, >= max r) relevance matrix.

    MAP@R = (1/R) sum_{i<=R} P(i) rel(i), R-precision = (1/R) sum_{i<=R} rel(i)
    (Musgrave et al. 2020); rows with R = 0 give NaN.
    """
    width = relevant.shape[1]
    within_r = np.arange(width)[None, :] < r[:, None]
    rel = relevant & within_r
    cum = np.cumsum(rel, axis=1, dtype=np.int64)
    # a sequential sum (cumsum), so trailing columns of zeros never change the rounding
    terms = cum * rel / np.arange(1, width + 1)[None, :]
    precision_sum = np.cumsum(terms, axis=1)[:, -1] if width else np.zeros(len(r))
    with np.errstate(invalid="ignore", divide="ignore"):
        map_r = np.where(r > 0, precision_sum / r, np.nan)
        r_prec = np.where(r > 0, cum[:, -1] / r, np.nan) if width else np.full(len(r), np.nan)
    return map_r, r_prec


def _chunk_metrics(
    neighbor_labels: np.ndarray, query_labels: np.ndarray, r: np.ndarray, ks: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    relevant = neighbor_labels == query_labels[:, None]
    hits = np.stack([relevant[:, :kk].any(axis=1) for kk in ks], axis=1)
    knn_correct = knn_vote(neighbor_labels[:, :KNN_VOTERS]) == query_labels
    map_r, r_prec = _average_precision_at_r(relevant, r)
    return hits, knn_correct, map_r, r_prec


def per_query_metrics(
    x: np.ndarray,
    plan: _Plan,
    ks: tuple[int, ...],
    searcher: NeighborSearcher,
    chunk_size: int,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    progress: bool = False,
) -> PerQuery:
    """Search every query chunk once and compute all neighbour-based metrics per query.

    ``x`` holds prepared vectors (see :func:`prepare_vectors`) for all items.
    """
    nq, ng = len(plan.query_rows), searcher.ntotal
    widths = np.minimum(np.maximum(plan.r, min(max(max(ks), KNN_VOTERS), ng)), ng)  # K past int64 is fine
    out = PerQuery(
        hits=np.zeros((nq, len(ks)), bool),
        knn_correct=np.zeros(nq, bool),
        map_r=np.full(nq, np.nan),
        r_precision=np.full(nq, np.nan),
    )
    label_lookup = np.append(plan.gallery_labels, -1)  # index -1 (padding) -> label -1
    with tqdm(total=nq, unit="query", desc="evaluating", disable=None if progress else True) as bar:
        for sel in _query_chunks(widths, chunk_size, max_entries):
            ids = None if plan.self_ids is None else plan.self_ids[sel]
            _, idx = searcher.search(x[plan.query_rows[sel]], int(widths[sel].max()), ids)
            results = _chunk_metrics(label_lookup[idx], plan.query_labels[sel], plan.r[sel], ks)
            out.hits[sel], out.knn_correct[sel], out.map_r[sel], out.r_precision[sel] = results
            bar.update(len(sel))
    return out


# --------------------------------------------------------------------------- NMI


def nmi_score(x: np.ndarray, labels: np.ndarray, seed: int = 0, niter: int = 20) -> float:
    """NMI (0-1) between ``labels`` and faiss k-means clusters with k = number of classes."""
    n_classes = int(len(np.unique(labels)))
    if n_classes < 2:
        return 1.0  # one class and (with k = 1) one cluster: identical partitions
    kmeans = faiss.Kmeans(
        x.shape[1], n_classes, niter=niter, seed=seed, verbose=False, min_points_per_centroid=1
    )
    kmeans.train(x)
    _, assignment = kmeans.index.search(x, 1)
    return float(normalized_mutual_info_score(labels, assignment.ravel()))


# --------------------------------------------------------------------------- public entry


def _warn(messages: list[str]) -> None:
    for message in messages:
        warnings.warn(message, EvaluationWarning, stacklevel=3)


def _percent(values: np.ndarray) -> float:
    return float(100.0 * np.mean(values)) if len(values) else float("nan")


def compute_metrics(
    embeddings: Any,
    labels: Any,
    *,
    k: int | Sequence[int] = (1, 2, 4, 8),
    distance: str = "cosine",
    nmi: bool = True,
    is_query: Any = None,
    is_gallery: Any = None,
    progress: bool = False,
    chunk_size: int | None = None,
    device: Any = None,
    seed: int = 0,
    threads: int | None = None,
) -> MetricResults:
    """Retrieval metrics of ``embeddings`` (n, d) with class ``labels`` (n,), as percentages.

    Keys: ``recall@K`` for each K, ``knn_acc``, ``map@r``, ``r_precision`` and,
    when ``nmi``, ``nmi``. Each query is searched against all other items, or
    against the gallery only when ``is_query``/``is_gallery`` masks are given
    (an item in both never retrieves itself). See the module docstring for the
    exact conventions (ties, single-item classes). ``chunk_size`` bounds how
    many queries are searched at once; ``device`` "cuda[:N]" searches on a GPU;
    ``seed`` seeds k-means for NMI; ``threads`` sets faiss's thread count for
    this call only (default: faiss's own setting).

    Degenerate data (one class, identical or zero embeddings, queries without a
    same-class gallery item, K beyond the gallery; see
    :mod:`lossensemble.evaluation.degenerate`) gives an :class:`EvaluationWarning`
    per problem, the same messages in the result's ``warnings`` attribute, and NaN
    for the metrics it leaves undefined (trivial ones keep their value).
    """
    check_distance(distance)
    ks = _validate_ks(k)
    x = _validate_embeddings(embeddings)
    y = _encode_labels(labels, len(x))
    plan = _make_plan(y, is_query, is_gallery)
    notes, undefined = degenerate_findings(x, y, plan.query_rows, plan.gallery_rows, plan.self_ids, plan.r, ks,
                                           distance, nmi)
    _warn(notes)

    x = prepare_vectors(x, distance)
    with faiss_threads(threads):
        gallery = x if len(plan.gallery_rows) == len(x) else x[plan.gallery_rows]
        searcher = NeighborSearcher(gallery, distance, device)
        step = resolve_chunk_size(chunk_size)
        per_query = per_query_metrics(x, plan, ks, searcher, step, progress=progress)
        del searcher  # free the index before k-means

        results = {f"recall@{kk}": _percent(per_query.hits[:, i]) for i, kk in enumerate(ks)}
        results["knn_acc"] = _percent(per_query.knn_correct)
        valid = plan.r > 0
        results["map@r"] = _percent(per_query.map_r[valid])
        results["r_precision"] = _percent(per_query.r_precision[valid])
        if nmi and "nmi" not in undefined:
            rows = np.union1d(plan.query_rows, plan.gallery_rows)
            results["nmi"] = 100.0 * nmi_score(x[rows], y[rows], seed=seed)
        elif nmi:
            results["nmi"] = float("nan")
    for key in undefined & set(results):
        results[key] = float("nan")
    return MetricResults(results, notes)
