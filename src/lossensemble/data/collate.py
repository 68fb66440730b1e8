"""Batch assembly that tolerates unreadable images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["collate_batch"]


def collate_batch(items: Sequence[tuple[torch.Tensor, int] | None]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Stack ``(image, label)`` items into ``(images, labels, num_skipped)``, dropping ``None`` items.

    Use as a DataLoader ``collate_fn``. ``num_skipped`` counts the dropped (unreadable)
    images of this batch, so the total seen by a training loop is exact even with worker
    processes. A batch where every image failed gives empty tensors.
    """
    kept: list[Any] = [item for item in items if item is not None]
    skipped = len(items) - len(kept)
    if not kept:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    images = torch.stack([image for image, _ in kept])
    labels = torch.tensor([int(label) for _, label in kept], dtype=torch.long)
    return images, labels, skipped
