"""Evaluation on unseen classes: exact kNN search (faiss) and retrieval metrics.

``compute_metrics`` gives Recall@K, kNN accuracy, MAP@R, R-precision and NMI as
percentages; ``knn_search`` is the chunked exact search underneath, reusable
for retrieval.

Submodules are imported on first use (:mod:`lossensemble.lazy`), so importing the package is cheap.
"""

from __future__ import annotations

from lossensemble.lazy import lazy_exports

_EXPORTS = {
    "evaluate_model": "evaluate",
    "evaluate_model_sharded": "evaluate",
    "score_embeddings": "evaluate",
    "extract_embeddings": "extract",
    "MetricResults": "degenerate",
    "metric_warnings": "degenerate",
    "metrics_to_json": "degenerate",
    "EvaluationWarning": "metrics",
    "compute_metrics": "metrics",
    "knn_vote": "metrics",
    "nmi_score": "metrics",
    "DISTANCES": "neighbors",
    "NeighborSearcher": "neighbors",
    "knn_search": "neighbors",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
