"""Weights are never unpickled: a crafted pickle must not run code."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from lossensemble.errors import UserError
from lossensemble.models import build_backbone, load_state_dict_file


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_weights_do_not_run_code(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "weights.pt"
    with open(bad, "wb") as fh:
        pickle.dump({"conv.weight": _Exploit(str(marker))}, fh)
    with pytest.raises(UserError, match="safely"):
        load_state_dict_file(bad)
    assert not marker.exists()
    # torch's own zip format with a payload is refused too
    bad_zip = tmp_path / "weights.pth"
    torch.save({"w": _Exploit(str(marker))}, bad_zip)
    with pytest.raises(UserError):
        build_backbone("small_cnn", weights=str(bad_zip))
    assert not marker.exists()


def test_plain_torch_state_dict_still_loads(tmp_path):
    src = build_backbone("small_cnn")
    torch.save(src.state_dict(), tmp_path / "w.pth")
    dst = build_backbone("small_cnn", weights=str(tmp_path / "w.pth"))
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))


def test_weights_of_another_architecture_are_a_clear_error(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(3)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(UserError, match="do not fit"):
        build_backbone("small_cnn", weights=str(tmp_path / "w.safetensors"))
