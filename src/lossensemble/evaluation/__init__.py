"""Evaluation on unseen classes: exact kNN search (faiss) and retrieval metrics.

``compute_metrics`` gives Recall@K, kNN accuracy, MAP@R, R-precision and NMI as
percentages; ``knn_search`` is the chunked exact search underneath, reusable
for retrieval.
"""

from lossensemble.evaluation.evaluate import evaluate_model, evaluate_model_sharded, score_embeddings
from lossensemble.evaluation.extract import extract_embeddings
from lossensemble.evaluation.metrics import EvaluationWarning, compute_metrics, knn_vote, nmi_score
from lossensemble.evaluation.neighbors import DISTANCES, NeighborSearcher, knn_search

__all__ = [
    "DISTANCES",
    "EvaluationWarning",
    "NeighborSearcher",
    "compute_metrics",
    "evaluate_model",
    "evaluate_model_sharded",
    "extract_embeddings",
    "score_embeddings",
    "knn_search",
    "knn_vote",
    "nmi_score",
]
