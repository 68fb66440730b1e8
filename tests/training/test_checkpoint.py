"""Atomic safetensors checkpoints and optimiser state flattening."""

from __future__ import annotations

import os

import pytest
import torch

from lossensemble.errors import UserError
from lossensemble.training.checkpoint import (
    atomic_write_bytes,
    flatten_optimizer_state,
    load_checkpoint,
    save_checkpoint,
    unflatten_optimizer_state,
)


def test_round_trip_tensors_and_state(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"a": torch.arange(5.0), "b.c": torch.ones(2, 2)}, {"epoch": 3, "history": [{"x": 1.5}]})
    tensors, state = load_checkpoint(path)
    assert torch.equal(tensors["a"], torch.arange(5.0))
    assert state == {"epoch": 3, "history": [{"x": 1.5}]}


def test_optimizer_state_survives_flattening():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = flatten_optimizer_state(opt)
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=0.5)
    opt2.load_state_dict(unflatten_optimizer_state(tensors, meta))
    for s1, s2 in zip(opt.state.values(), opt2.state.values()):
        assert torch.equal(s1["exp_avg"], s2["exp_avg"])
        assert torch.equal(torch.as_tensor(s1["step"]), torch.as_tensor(s2["step"]))
    assert opt2.param_groups[0]["lr"] == 0.1


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "c.bin"
    atomic_write_bytes(path, b"old")

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["c.bin"]


def test_truncated_or_foreign_file_is_a_clear_error(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"a": torch.randn(100)}, {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="damaged"):
        load_checkpoint(path)
    path.write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(UserError, match="damaged"):
        load_checkpoint(path)
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
