"""Optional speed-ups of the training step: ``train.channels_last`` and ``train.compile``.

Both are PyTorch's own (``torch.channels_last`` memory format, ``nn.Module.compile``,
which compiles the backbone in place so that its state-dict keys, and so checkpoints
and exports, stay the same). Neither is on by default: measured on a 2-core CPU
(``BENCHMARKS.md``, "Compiled step"), compiling costs 25-40 s before the first step
and made resnet18's step slower, and channels_last helped only the small CNN; see
there before switching them on.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["accelerate"]


def accelerate(model: nn.Module, train_cfg) -> Callable[[torch.Tensor], torch.Tensor]:
    """Apply ``train.channels_last`` / ``train.compile`` to ``model``'s backbone; returns the batch conversion.

    The returned function puts image batches (4-D) in the backbone's memory format and
    leaves anything else (cached features) as it is.
    """
    backbone = model.backbone
    if getattr(train_cfg, "channels_last", False):
        backbone.to(memory_format=torch.channels_last)
    if getattr(train_cfg, "compile", False):
        backbone.compile()
    if not getattr(train_cfg, "channels_last", False):
        return _identity
    return _to_channels_last


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _to_channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
