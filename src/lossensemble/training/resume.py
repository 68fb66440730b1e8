"""Mid-epoch resume: the batches of an epoch after the ones already trained."""

from __future__ import annotations

from typing import Iterator

import torch

__all__ = ["SkipFirstBatches"]


class SkipFirstBatches(torch.utils.data.Sampler):
    """A batch sampler that skips the first ``skip`` batches of another (mid-epoch resume)."""

    def __init__(self, batch_sampler, skip: int) -> None:
        self.batch_sampler = batch_sampler
        self.skip = skip

    def __iter__(self) -> Iterator[list[int]]:
        for i, batch in enumerate(self.batch_sampler):
            if i >= self.skip:
                yield batch

    def __len__(self) -> int:
        return max(0, len(self.batch_sampler) - self.skip)
