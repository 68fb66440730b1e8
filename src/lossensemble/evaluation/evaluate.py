"""Evaluating a model on a dataset: embed it, then score every named embedding.

The functions take arrays, datasets and explicit settings (no run config), so the
trainer, post-hoc compression, the CLI and users' own code share them.
:func:`evaluate_model_sharded` splits the embedding work across the processes of a
``torchrun`` launch; rank 0 scores and every rank receives the result.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch

from lossensemble import distributed
from lossensemble.errors import DataError
from lossensemble.evaluation.extract import evaluation_indices, extract_embeddings
from lossensemble.evaluation.degenerate import MetricResults
from lossensemble.evaluation.metrics import EvaluationWarning, compute_metrics

__all__ = ["query_gallery_masks", "score_embeddings", "evaluate_model", "evaluate_model_sharded"]

EmbedFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def query_gallery_masks(dataset: Any, kept: np.ndarray) -> dict[str, np.ndarray]:
    """``is_query``/``is_gallery`` of the kept items when ``dataset`` has them (In-Shop), else ``{}``."""
    is_query = getattr(dataset, "is_query", None)
    is_gallery = getattr(dataset, "is_gallery", None)
    if is_query is None or is_gallery is None:
        return {}
    return {"is_query": np.asarray(is_query)[kept], "is_gallery": np.asarray(is_gallery)[kept]}


def score_embeddings(embeddings: dict[str, np.ndarray], labels: np.ndarray, *, k: Sequence[int] = (1, 2, 4, 8),
                     distance: str = "cosine", nmi: bool = True, is_query: np.ndarray | None = None,
                     is_gallery: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """The metrics of every named embedding (rows aligned with ``labels``)."""
    masks = {} if is_query is None or is_gallery is None else {"is_query": is_query, "is_gallery": is_gallery}
    return {name: compute_metrics(emb, labels, k=tuple(k), distance=distance, nmi=nmi, **masks)
            for name, emb in embeddings.items()}


def evaluate_model(embed_fn: EmbedFn, dataset, *, k: Sequence[int] = (1, 2, 4, 8), distance: str = "cosine",
                   nmi: bool = True, batch_size: int = 256, num_workers: int = 0,
                   device: torch.device | str = "cpu", max_items: int | None = None, seed: int = 0,
                   progress: bool = False) -> dict[str, dict[str, float]]:
    """Embed ``dataset`` with ``embed_fn`` and compute the metrics of every embedding it returns."""
    indices = evaluation_indices(len(dataset), max_items, seed)
    embeddings, labels, kept = extract_embeddings(
        embed_fn, dataset, batch_size=batch_size, num_workers=num_workers, device=device, progress=progress,
        indices=indices,
    )
    note = _unreadable_note(len(indices), len(kept))
    return _with_unreadable(score_embeddings(embeddings, labels, k=k, distance=distance, nmi=nmi,
                                             **query_gallery_masks(dataset, kept)), len(indices) - len(kept), note)


def evaluate_model_sharded(embed_fn: EmbedFn, dataset, *, k: Sequence[int] = (1, 2, 4, 8), distance: str = "cosine",
                           nmi: bool = True, batch_size: int = 256, num_workers: int = 0,
                           device: torch.device | str = "cpu", max_items: int | None = None, seed: int = 0,
                           progress: bool = False) -> dict[str, dict[str, float]]:
    """:func:`evaluate_model` with the embedding split across ranks; every rank gets rank 0's metrics."""
    indices = evaluation_indices(len(dataset), max_items, seed)
    mine = indices[distributed.rank():: distributed.world_size()]
    shard = extract_embeddings(embed_fn, dataset, batch_size=batch_size, num_workers=num_workers, device=device,
                               progress=progress, indices=mine)
    shards = distributed.gather_object_to_main(shard)
    results: Any = None
    if shards is not None:
        embeddings, labels, kept = _merge_shards(shards)
        try:
            note = _unreadable_note(len(indices), len(kept))
            results = _with_unreadable(score_embeddings(embeddings, labels, k=k, distance=distance, nmi=nmi,
                                                        **query_gallery_masks(dataset, kept)),
                                       len(indices) - len(kept), note)
        except DataError as exc:  # every rank raises it, none waits for a broadcast that never comes
            results = exc
    results = distributed.broadcast_object(results)
    if isinstance(results, DataError):
        raise results
    return results


def _unreadable_note(evaluated: int, kept: int) -> str | None:
    """Warn (EvaluationWarning) about images that could not be read; the message, or None when all were.

    Fewer than two readable images leave nothing to evaluate: a :class:`DataError`.
    """
    if kept == evaluated:
        return None
    if kept < 2:
        raise DataError(f"evaluation: only {kept} of {evaluated} images could be read (at least 2 are needed; "
                        "see the warnings above for why, e.g. data.options.max_image_pixels)")
    message = (f"{evaluated - kept} of {evaluated} images could not be read: left out of the evaluation "
               "(the metrics are over the other items)")
    warnings.warn(message, EvaluationWarning, stacklevel=3)
    return message


def _with_unreadable(results: dict[str, Any], skipped: int, note: str | None) -> dict[str, MetricResults]:
    """Every embedding's metrics with ``skipped_images`` (unreadable at evaluation) and its warning."""
    out = {}
    for name, metrics in results.items():
        metrics = metrics if isinstance(metrics, MetricResults) else MetricResults(metrics)
        metrics.skipped_images = skipped
        if note is not None:
            metrics.warnings.insert(0, note)
        out[name] = metrics
    return out


def _merge_shards(shards: list[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]]):
    """Concatenate per-rank ``(embeddings, labels, kept)`` back into dataset order."""
    kept = np.concatenate([k for _, _, k in shards])
    order = np.argsort(kept, kind="stable")
    labels = np.concatenate([lab for _, lab, _ in shards])[order]
    names = next((list(e) for e, _, _ in shards if e), [])
    embeddings = {n: np.concatenate([e[n] for e, _, _ in shards if n in e])[order] for n in names}
    return embeddings, labels, kept[order]
