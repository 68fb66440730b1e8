"""MPerClassBatchSampler: class balance, no reuse within a pass, determinism, ranks."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lossensemble.data import MPerClassBatchSampler
from lossensemble.errors import UserError


def _labels(counts: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


def _check_balance(batches: list[list[int]], labels: np.ndarray, classes: int, m: int) -> None:
    for batch in batches:
        per_class = Counter(labels[batch].tolist())
        assert len(per_class) == classes, "wrong number of distinct classes"
        assert set(per_class.values()) == {m}, "a class without exactly m images"


def test_every_batch_has_k_classes_of_m():
    labels = _labels([5, 8, 4, 12, 6, 9, 4, 7, 30, 4])
    sampler = MPerClassBatchSampler(labels, m=4, batch_size=12, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    _check_balance(batches, labels, 3, 4)
    # one pass never reuses an image (every class here has >= m images)
    used = [i for b in batches for i in b]
    assert len(used) == len(set(used))
    # about one pass over the data
    assert len(sampler) in range(len(labels) // 12 - 3, len(labels) // 12 + 1)


def test_small_classes_sampled_with_replacement_only():
    labels = _labels([2, 6, 1, 8])
    batches = list(MPerClassBatchSampler(labels, m=4, batch_size=8, seed=0))
    _check_balance(batches, labels, 2, 4)
    for batch in batches:
        for cls, idx in _by_class(batch, labels).items():
            if np.sum(labels == cls) >= 4:
                assert len(set(idx)) == 4
            else:
                assert set(idx) == set(np.flatnonzero(labels == cls).tolist())


def _by_class(batch, labels):
    out: dict[int, list[int]] = {}
    for i in batch:
        out.setdefault(int(labels[i]), []).append(i)
    return out


def test_deterministic_per_seed_and_epoch():
    labels = _labels([6] * 20)
    a = MPerClassBatchSampler(labels, m=3, batch_size=12, seed=7)
    b = MPerClassBatchSampler(labels, m=3, batch_size=12, seed=7)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) != first
    a.set_epoch(0)
    assert list(a) == first
    assert list(MPerClassBatchSampler(labels, m=3, batch_size=12, seed=8)) != first


def test_ranks_get_different_classes_and_union_is_the_big_batch():
    labels = _labels([4, 9, 5, 13, 8, 6, 4, 7, 11, 5, 4, 6])
    world = 3
    ranks = [MPerClassBatchSampler(labels, m=2, batch_size=4, seed=5, rank=r, world_size=world) for r in range(world)]
    single = MPerClassBatchSampler(labels, m=2, batch_size=4 * world, seed=5)
    for s in ranks + [single]:
        s.set_epoch(2)
    per_rank = [list(s) for s in ranks]
    assert len({len(p) for p in per_rank}) == 1 and len(per_rank[0]) == len(single)
    for step, big in enumerate(single):
        parts = [per_rank[r][step] for r in range(world)]
        classes = [set(labels[p].tolist()) for p in parts]
        assert all(len(c) == 2 for c in classes)
        assert not (classes[0] & classes[1] or classes[0] & classes[2] or classes[1] & classes[2])
        assert sorted(sum(parts, [])) == sorted(big)


def test_num_batches_chains_passes():
    labels = _labels([4] * 6)
    sampler = MPerClassBatchSampler(labels, m=4, batch_size=8, num_batches=10, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 10
    _check_balance(batches, labels, 2, 4)


def test_invalid_arguments():
    labels = _labels([4, 4, 4])
    with pytest.raises(UserError, match="multiple of m"):
        MPerClassBatchSampler(labels, m=4, batch_size=6)
    with pytest.raises(UserError, match="3 classes cannot fill batches of 4 classes"):
        MPerClassBatchSampler(labels, m=2, batch_size=8)
    with pytest.raises(UserError, match="on 2 ranks"):
        MPerClassBatchSampler(labels, m=2, batch_size=4, world_size=2, rank=1)
    with pytest.raises(UserError, match="rank"):
        MPerClassBatchSampler(labels, m=2, batch_size=4, world_size=2, rank=2)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 15), min_size=2, max_size=25),
    m=st.integers(1, 4),
    classes_per_batch=st.integers(1, 4),
    world=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_property_balance_and_no_reuse_within_a_pass(counts, m, classes_per_batch, world, seed):
    labels = _labels(counts)
    if len(counts) < classes_per_batch * world:
        with pytest.raises(UserError):
            MPerClassBatchSampler(labels, m=m, batch_size=m * classes_per_batch, world_size=world)
        return
    used: list[int] = []
    for rank in range(world):
        sampler = MPerClassBatchSampler(labels, m=m, batch_size=m * classes_per_batch, seed=seed,
                                        rank=rank, world_size=world)
        batches = list(sampler)
        assert len(batches) == len(sampler) >= 1
        _check_balance(batches, labels, classes_per_batch, m)
        used += [i for b in batches for i in b if counts[labels[i]] >= m]
    assert len(used) == len(set(used)), "an image was used twice in one pass"


def test_batches_of_one_class_are_warned_about_once(monkeypatch, caplog):
    from lossensemble.data import sampler as sampler_module

    monkeypatch.setattr(sampler_module, "_WARNED", set())
    labels = _labels([8, 8, 8])
    with caplog.at_level(logging.WARNING, logger="lossensemble.data"):
        MPerClassBatchSampler(labels, m=4, batch_size=8)
        assert caplog.text == ""
        for epoch in range(3):  # a sampler per epoch (as the compressor's loop makes) still warns once
            sampler = MPerClassBatchSampler(labels, m=4, batch_size=4, seed=epoch)
    assert all(len(set(labels[b].tolist())) == 1 for b in sampler)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "sampler: batch_size (4) = m (4): every batch holds a single class, so pair and triplet losses find no "
        "negatives and train nothing (zero loss); use batch_size = k * m with k >= 2"
    ]
