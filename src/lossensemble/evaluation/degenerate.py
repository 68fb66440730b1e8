"""Degenerate evaluations: data on which some metrics are trivial or undefined.

:func:`degenerate_findings` looks at what is evaluated before any search and returns
one message per problem together with the metrics it makes undefined:

* one class: every neighbour is of the query's class, so recall@K, knn_acc, map@r
  and r_precision are trivially 100 (kept, flagged); NMI is undefined (NaN);
* all embeddings identical (all zero included): every distance ties, the neighbour
  order is only the item order, so every metric is undefined (NaN);
* some all-zero embeddings under cosine: they have no direction (similarity 0 to
  everything); values kept, flagged;
* queries with no other item of their class in the gallery (e.g. one query per
  class): left out of map@r and r_precision (NaN when that is all of them);
* as many classes as items: NMI is trivially 100 (kept, flagged);
* K at least the number of other gallery items: recall@K is a hit whenever the
  class has any other item (kept, flagged).

:class:`MetricResults` is the dict of values that
:func:`~lossensemble.evaluation.compute_metrics` returns, with these messages in
its ``warnings`` attribute; :func:`metrics_to_json` writes both (NaN as null).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["MetricResults", "degenerate_findings", "metrics_to_json", "metric_warnings"]

#: The metrics that come from the neighbour search (recall@K is added per K).
_NEIGHBOUR_METRICS = ("knn_acc", "map@r", "r_precision")


class MetricResults(dict):
    """Metric values by name (percentages; NaN when undefined) and ``warnings``: why some are odd.

    A plain ``dict`` of floats for every existing consumer; the messages travel in the
    ``warnings`` attribute (pickled along, e.g. across ranks) and reach JSON through
    :func:`metrics_to_json`.
    """

    def __init__(self, values: Mapping[str, float] | Iterable = (), warnings: Iterable[str] = ()) -> None:
        super().__init__(values)
        self.warnings: list[str] = list(warnings)
        #: Images that could not be read when the embeddings were extracted (set by evaluate_model).
        self.skipped_images = 0


def metric_warnings(metrics: Any) -> list[str]:
    """The warnings carried by ``metrics`` (a :class:`MetricResults`, or ``[]`` for a plain dict)."""
    return list(getattr(metrics, "warnings", None) or [])


def metrics_to_json(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` as JSON-ready data: NaN/inf values as null, plus a ``warnings`` list (maybe empty)."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[key] = value
    out["warnings"] = list(out.get("warnings") or []) + metric_warnings(metrics)
    return out


def degenerate_findings(
    x: np.ndarray,
    y: np.ndarray,
    query_rows: np.ndarray,
    gallery_rows: np.ndarray,
    self_ids: np.ndarray,
    r: np.ndarray,
    ks: tuple[int, ...],
    distance: str,
    nmi: bool = True,
) -> tuple[list[str], set[str]]:
    """Messages about degenerate data, and the metric keys that are undefined because of it.

    ``x`` holds the raw embeddings (all items), ``y`` the encoded labels; the row arrays,
    ``self_ids`` (gallery position of each query or -1) and ``r`` (other same-class
    gallery items per query) describe who searches whom.
    """
    messages: list[str] = []
    undefined: set[str] = set()
    rows = np.union1d(query_rows, gallery_rows)
    n = len(rows)
    recall_keys = [f"recall@{kk}" for kk in ks]

    n_classes = len(np.unique(y[rows]))
    zero, identical = _scan_rows(x, rows, distance)
    if zero.all():
        messages.append(f"all {n} embeddings are zero: every distance ties, so the neighbour order is only "
                        "the item order; every metric is undefined (NaN)")
        undefined.update(recall_keys, _NEIGHBOUR_METRICS, ["nmi"])
    elif identical:
        how = " (same direction: cosine sees them as one)" if distance == "cosine" else ""
        messages.append(f"all {n} embeddings are identical{how}: every distance ties, so the neighbour order "
                        "is only the item order; every metric is undefined (NaN)")
        undefined.update(recall_keys, _NEIGHBOUR_METRICS, ["nmi"])
    elif distance == "cosine" and zero.any():
        messages.append(f"{int(zero.sum())} of {n} embeddings are all-zero: they have no direction for cosine "
                        "(similarity 0 to everything, ties broken by item order)")
    if n_classes == 1:
        messages.append(f"only one class among the {n} items: every neighbour is of the query's class, so "
                        "recall@K, knn_acc, map@r and r_precision are trivially 100; nmi is undefined (NaN)")
        undefined.add("nmi")
    elif nmi and n_classes == n and n > 1:
        messages.append(f"every one of the {n} items is its own class: nmi is trivially 100 (k-means with one "
                        "cluster per item)")

    lone = r == 0
    if lone.any() and n_classes > 1:
        lone_classes = len(np.unique(y[query_rows][lone]))
        scope = "all " if lone.all() else ""
        messages.append(
            f"{scope}{int(lone.sum())} queries (in {lone_classes} classes) have no other item of their class in "
            "the gallery: left out of map@r and r_precision (still gallery items, and misses for recall@K and "
            "knn_acc)" + ("; map@r and r_precision are undefined (NaN)" if lone.all() else "")
        )
    others = len(gallery_rows) - int((self_ids >= 0).any())  # fewest other gallery items of a query
    big = [kk for kk in ks if kk >= max(others, 1) and kk > 1]
    if big and n_classes > 1 and not undefined.issuperset(recall_keys):
        names = ", ".join(f"recall@{kk}" for kk in big)
        messages.append(f"{names}: K is at least the {others} other gallery items of a query, so a query "
                        "scores a hit whenever its class has any other item (trivially)")
    return messages, undefined


def _scan_rows(x: np.ndarray, rows: np.ndarray, distance: str, block: int = 8192) -> tuple[np.ndarray, bool]:
    """Which of the evaluated rows are all-zero, and whether all of them are identical (for cosine: point the
    same way), in blocks of rows so that memory stays O(block x d)."""
    zero = np.zeros(len(rows), bool)
    first = x[rows[0]].astype(np.float64)
    norm = np.linalg.norm(first)
    if distance == "cosine":
        first = first / norm if norm > 0 else first
    identical = distance != "cosine" or norm > 0
    whole = len(rows) == len(x)
    for start in range(0, len(rows), block):
        part = x[start:start + block] if whole else x[rows[start:start + block]]
        zero[start:start + len(part)] = ~part.any(axis=1)
        if not identical:
            continue
        v = part.astype(np.float64)
        if distance == "cosine":
            norms = np.linalg.norm(v, axis=1, keepdims=True)
            if (norms == 0).any():
                identical = False
                continue
            identical = bool(np.abs(v / norms - first).max() <= 1e-6)
        else:
            identical = bool((v == first).all())
    return zero, identical
