"""Embedding a dataset with a model: the bridge between models and the metrics."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

__all__ = ["evaluation_indices", "extract_embeddings"]


def evaluation_indices(n: int, max_items: int | None, seed: int) -> np.ndarray:
    """The dataset items evaluated: all ``n``, or a seeded sorted subset of ``max_items``."""
    if max_items is None or max_items >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_items, replace=False))


@torch.no_grad()
def extract_embeddings(
    embed_fn: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    dataset: Dataset,
    *,
    batch_size: int = 256,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
    max_items: int | None = None,
    seed: int = 0,
    indices: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Embed every readable item of ``dataset``.

    ``embed_fn`` maps an image batch (already on ``device``) to named embeddings
    (e.g. ``EnsembleModel.embed``). Returns ``(embeddings by name, labels,
    kept_indices)``: unreadable images are left out, and ``kept_indices`` says
    which dataset items the rows are. ``max_items`` evaluates a seeded random
    subset (for quick runs).
    """
    from lossensemble.data import collate_batch

    if indices is None:
        indices = evaluation_indices(len(dataset), max_items, seed)
    subset = torch.utils.data.Subset(dataset, indices.tolist())

    kept: list[int] = []

    def collate(items):
        images, labels, _ = collate_batch(items)
        return images, labels, [i for i, it in enumerate(items) if it is not None]

    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate)
    chunks: dict[str, list[np.ndarray]] = {}
    labels_out: list[np.ndarray] = []
    offset = 0
    for images, labels, ok in tqdm(loader, desc="embedding", disable=None if progress else True, leave=False):
        kept.extend(int(indices[offset + i]) for i in ok)
        offset += batch_size
        if len(ok) == 0:
            continue
        out = embed_fn(images.to(device, non_blocking=True))
        for name, emb in out.items():
            chunks.setdefault(name, []).append(emb.float().cpu().numpy())
        labels_out.append(labels.numpy())
    embeddings = {k: np.concatenate(v) for k, v in chunks.items()}
    labels_arr = np.concatenate(labels_out) if labels_out else np.zeros(0, dtype=np.int64)
    return embeddings, labels_arr.astype(np.int64), np.asarray(kept, dtype=np.int64)
