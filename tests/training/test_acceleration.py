"""``train.channels_last`` and ``train.compile``: same training, same checkpoints, other memory format / compiled."""

from __future__ import annotations

import json

import pytest
import torch

from lossensemble.training import Trainer


def metrics(run) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_channels_last_trains_like_the_default(tiny_config, tmp_path):
    Trainer(tiny_config("train.channels_last=false"), tmp_path / "plain").fit()
    fast = Trainer(tiny_config("train.channels_last=true"), tmp_path / "cl")
    conv = next(m for m in fast.model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 8, 8)
    assert fast.prepare_batch(x).is_contiguous(memory_format=torch.channels_last)
    assert fast.prepare_batch(torch.randn(4, 16)).shape == (4, 16)  # features pass through
    fast.fit()
    a, b = metrics(tmp_path / "plain"), metrics(tmp_path / "cl")
    # another memory format changes float rounding, not the result: within a few test queries
    assert abs(a["ensemble"]["map@r"] - b["ensemble"]["map@r"]) < 3.0
    assert abs(a["ensemble"]["recall@1"] - b["ensemble"]["recall@1"]) < 5.0


@pytest.mark.slow
def test_compiled_backbone_trains_and_keeps_checkpoint_keys(tiny_config, tmp_path):
    plain = Trainer(tiny_config("train.channels_last=false"), tmp_path / "plain")
    compiled = Trainer(tiny_config("train.compile=true"), tmp_path / "compiled")
    assert list(compiled.model.state_dict()) == list(plain.model.state_dict())
    compiled.fit()
    plain.fit()
    a, b = metrics(tmp_path / "plain"), metrics(tmp_path / "compiled")
    assert abs(a["ensemble"]["map@r"] - b["ensemble"]["map@r"]) < 3.0
    resumed = Trainer(None, tmp_path / "compiled", resume=True)  # the checkpoint of a compiled run resumes
    assert resumed.epoch == 1


def test_channels_last_auto_follows_the_measurements(tiny_config, tmp_path):
    from lossensemble.config import ConfigError
    from lossensemble.training.acceleration import channels_last_wanted

    assert channels_last_wanted("auto", "small_cnn") and not channels_last_wanted("auto", "resnet18")
    assert channels_last_wanted(True, "resnet18") and not channels_last_wanted(False, "small_cnn")
    default = Trainer(tiny_config(), tmp_path / "auto")  # small_cnn: channels_last by default
    assert default.prepare_batch(torch.randn(2, 3, 8, 8)).is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ConfigError, match="train.channels_last"):
        tiny_config("train.channels_last=sometimes")
