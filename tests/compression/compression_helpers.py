"""Shared helpers of the compression tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lossensemble.config import load_config

# A run small enough to train in seconds on one CPU thread.
TINY_RUN = [
    "data.image_size=32",
    "data.options.num_train_classes=20",
    "data.options.num_test_classes=20",
    "data.options.images_per_class=16",
    "data.options.progress=false",
    "data.batch_size=16",
    "data.m_per_class=4",
    "model.backbone=small_cnn",
    "model.embedding_dim=16",
    "losses=[triplet,proxy_nca]",
    "train.steps_per_epoch=3",
    "train.epochs=1",
    "train.device=cpu",
    "train.threads=1",
    "train.progress=false",
    "eval.batch_size=128",
    "eval.nmi=false",
]


def tiny_config(*extra: str):
    return load_config(overrides=TINY_RUN + list(extra))


def glyph_like_images(n_classes: int, per_class: int, seed: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random class prototypes + pixel noise: (n*per, 3, size, size) images and their labels."""
    g = torch.Generator().manual_seed(seed)
    protos = F.interpolate(torch.rand(n_classes, 1, 8, 8, generator=g), size=size, mode="bilinear")
    x = protos.repeat_interleave(per_class, 0) + 0.3 * torch.randn(n_classes * per_class, 1, size, size, generator=g)
    return x.repeat(1, 3, 1, 1), torch.arange(n_classes).repeat_interleave(per_class)


def glyphs_available() -> bool:
    try:
        from lossensemble.data import DATASETS
    except ImportError:
        return False
    return "glyphs" in DATASETS


needs_glyphs = pytest.mark.skipif(not glyphs_available(), reason="the glyphs dataset is not available yet")
