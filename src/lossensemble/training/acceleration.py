"""Optional speed-ups of the training step: ``train.channels_last`` and ``train.compile``.

Both are PyTorch's own (``torch.channels_last`` memory format, ``nn.Module.compile``,
which compiles the backbone in place so that its state-dict keys, and so checkpoints
and exports, stay the same). Defaults follow the measurements on a 2-core CPU
(``BENCHMARKS.md``, "Compiled step"; the rule: on by default only where >= 1.2x faster
with equal accuracy over seeds): ``channels_last: auto`` is on for the backbones in
:data:`CHANNELS_LAST_BY_DEFAULT` (small_cnn: 1.35x per step, test R@1 / MAP@R equal within
the seed spread over 3 seeds) and off elsewhere (resnet18: 0.9x); ``compile`` is off
(small_cnn 1.22x per step but about 25 s of compilation per run, resnet18 0.84x).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

__all__ = ["CHANNELS_LAST_BY_DEFAULT", "accelerate", "channels_last_wanted", "evaluation_format"]

#: Backbones trained in channels_last memory format under ``train.channels_last: auto`` (measured faster).
CHANNELS_LAST_BY_DEFAULT = frozenset({"small_cnn"})


def channels_last_wanted(setting, backbone_name: str) -> bool:
    """``train.channels_last`` (true, false or "auto") resolved for the backbone ``backbone_name``."""
    return backbone_name in CHANNELS_LAST_BY_DEFAULT if setting == "auto" else bool(setting)


def accelerate(model: nn.Module, train_cfg, backbone_name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Apply ``train.channels_last`` / ``train.compile`` to ``model``'s backbone; returns the batch conversion.

    The returned function puts image batches (4-D) in the backbone's memory format and
    leaves anything else (cached features) as it is.
    """
    backbone = model.backbone
    channels_last = channels_last_wanted(train_cfg.channels_last, backbone_name)
    if channels_last:
        backbone.to(memory_format=torch.channels_last)
    if train_cfg.compile:
        backbone.compile()
    return _to_channels_last if channels_last else _identity


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _to_channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


@contextmanager
def evaluation_format(model: nn.Module) -> Iterator[None]:
    """Evaluate in the default memory format, as a loaded or exported model does (back to channels_last after).

    A backbone in channels_last runs other convolution kernels, whose float rounding differs
    slightly: evaluating in the default format keeps the metrics a run records equal to
    what ``lossensemble evaluate`` and an exported model compute from its checkpoint.
    """
    convs = [p for p in model.backbone.parameters() if p.dim() == 4]
    channels_last = any(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in convs)
    if channels_last:
        model.backbone.to(memory_format=torch.contiguous_format)
    try:
        yield
    finally:
        if channels_last:
            model.backbone.to(memory_format=torch.channels_last)
