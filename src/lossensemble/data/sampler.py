"""Class-balanced batches: ``batch_size // m`` classes with ``m`` images each."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence

import numpy as np

from lossensemble.errors import UserError

__all__ = ["MPerClassBatchSampler"]

log = logging.getLogger(__name__)

_WARNED: set[tuple[int, int]] = set()  # (batch_size, m) already warned about in this process
_WARN_LOCK = threading.Lock()


def _warn_single_class(batch_size: int, m: int) -> None:
    with _WARN_LOCK:
        first = (batch_size, m) not in _WARNED
        _WARNED.add((batch_size, m))
    if first:
        log.warning(
            "sampler: batch_size (%d) = m (%d): every batch holds a single class, so pair and triplet losses "
            "find no negatives and train nothing (zero loss); use batch_size = k * m with k >= 2",
            batch_size, m,
        )


class MPerClassBatchSampler:
    """A DataLoader ``batch_sampler`` whose every batch holds ``batch_size // m`` distinct classes x ``m`` images.

    Pair, triplet and proxy losses need several images of a class in each batch; this
    sampler guarantees it. Why not pytorch-metric-learning's ``MPerClassSampler``: it is
    a per-item sampler (the batch boundaries are implicit), knows no ranks, and loops in
    Python over classes; this one yields explicit batches, splits each global step
    between ranks, and builds an epoch with a few vectorised numpy operations.

    One epoch (one pass): each class's images are shuffled and cut into chunks of ``m``
    (a class with fewer than ``m`` images gives one chunk, padded by reusing its images:
    the only case of sampling with replacement). Chunks are dealt in rounds: round ``r``
    holds chunk ``r`` of every class that has one, in random order, cut into groups of
    ``batch_size // m * world_size`` classes (a remainder too small for a group is left
    out of that round). Each group is one global step and rank ``k`` takes its ``k``-th
    slice, so ranks see different classes in the same step, and the union over ranks is
    exactly what a one-process sampler with ``batch_size * world_size`` yields. Steps are
    shuffled across rounds. Within a pass no image is used twice (except the padding).

    A batch of one class (``batch_size == m``) has no negative pairs: it is allowed (proxy
    and classification losses still learn) but warned about once per process.

    ``len()`` is the number of batches per epoch for this rank: ``num_batches`` if given
    (passes are chained when more are needed), else one pass, about
    ``len(labels) // (batch_size * world_size)``. Call :meth:`set_epoch` before each
    epoch: batches depend only on ``seed`` and the epoch number.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        m: int,
        batch_size: int,
        num_batches: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) == 0:
            raise UserError("sampler: labels must be a non-empty 1-D sequence")
        if m < 1 or batch_size < m or batch_size % m:
            raise UserError(f"sampler: batch_size ({batch_size}) must be a positive multiple of m ({m})")
        if world_size < 1 or not 0 <= rank < world_size:
            raise UserError(f"sampler: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if num_batches is not None and num_batches < 1:
            raise UserError(f"sampler: num_batches must be >= 1, got {num_batches}")
        self.m = int(m)
        self.batch_size = int(batch_size)
        self.classes_per_batch = batch_size // m
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.seed = int(seed)
        self.epoch = 0
        _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        self._class_of = inverse.astype(np.int64)  # class index per item
        self._counts = counts.astype(np.int64)
        self._group = self.classes_per_batch * self.world_size  # classes per global step
        if len(counts) < self._group:
            raise UserError(
                f"sampler: {len(counts)} classes cannot fill batches of {self.classes_per_batch} classes"
                + (f" on {world_size} ranks" if world_size > 1 else "")
                + "; lower batch_size or raise m (batch_size // m = classes per batch)"
            )
        chunks = np.maximum(counts // self.m, 1)
        # Classes taking part in round r = those with more than r chunks.
        per_round = np.bincount(chunks - 1, minlength=chunks.max())[::-1].cumsum()[::-1]
        self._steps_per_pass = int((per_round // self._group).sum())
        self.num_batches = int(num_batches) if num_batches is not None else self._steps_per_pass
        if self.classes_per_batch == 1:
            _warn_single_class(self.batch_size, self.m)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose batches the next iteration yields (deterministic reshuffle)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        steps: list[np.ndarray] = []
        total = 0
        while total < self.num_batches:
            one_pass = self._one_pass(rng)
            steps.append(one_pass)
            total += len(one_pass)
        batches = np.concatenate(steps)[: self.num_batches]  # (steps, group classes, m)
        start = self.rank * self.classes_per_batch
        mine = batches[:, start : start + self.classes_per_batch].reshape(len(batches), -1)
        for row in mine:
            yield row.tolist()

    def _one_pass(self, rng: np.random.Generator) -> np.ndarray:
        """Item indices of one pass, shaped (global steps, classes per global step, m)."""
        counts, m, group = self._counts, self.m, self._group
        num_classes = len(counts)
        # Items grouped by class, in a fresh random order within each class.
        order = np.lexsort((rng.random(len(self._class_of)), self._class_of))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        chunks = np.maximum(counts // m, 1)
        # One row per (class, chunk): the chunk's round is its index within the class.
        chunk_class = np.repeat(np.arange(num_classes), chunks)
        chunk_round = np.arange(len(chunk_class)) - np.repeat(np.cumsum(chunks) - chunks, chunks)
        # Random order of classes within each round, then position within the round.
        by_round = np.lexsort((rng.random(len(chunk_class)), chunk_round))
        chunk_class, chunk_round = chunk_class[by_round], chunk_round[by_round]
        round_sizes = np.bincount(chunk_round)
        round_start = np.concatenate([[0], np.cumsum(round_sizes)[:-1]])
        position = np.arange(len(chunk_class)) - round_start[chunk_round]
        keep = position < (round_sizes // group * group)[chunk_round]
        chunk_class, chunk_round = chunk_class[keep], chunk_round[keep]
        # The m items of each chunk (cyclic within the class only when it has fewer than m).
        offsets = (chunk_round[:, None] * m + np.arange(m)[None, :]) % counts[chunk_class][:, None]
        items = order[starts[chunk_class][:, None] + offsets]
        steps = items.reshape(-1, group, m)
        return steps[rng.permutation(len(steps))]
