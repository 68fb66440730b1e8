"""Shared helpers of the compression tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Added to the shared ``tiny_config`` (tests/conftest.py): these tests never look at NMI, which costs a k-means.
NO_NMI = "eval.nmi=false"


def glyph_like_images(n_classes: int, per_class: int, seed: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random class prototypes + pixel noise: (n*per, 3, size, size) images and their labels."""
    g = torch.Generator().manual_seed(seed)
    protos = F.interpolate(torch.rand(n_classes, 1, 8, 8, generator=g), size=size, mode="bilinear")
    x = protos.repeat_interleave(per_class, 0) + 0.3 * torch.randn(n_classes * per_class, 1, size, size, generator=g)
    return x.repeat(1, 3, 1, 1), torch.arange(n_classes).repeat_interleave(per_class)
