"""Compressors: shapes, training reduces the loss, distances correlate with the ensemble's on held-out classes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from compression_helpers import glyph_like_images
from lossensemble.models import build_compressor
from lossensemble.training.joint import CompressorTrainer
from lossensemble.losses.distance_matching import squared_distances
from lossensemble.errors import UserError
from lossensemble.models import EnsembleModel, build_backbone

HEADS = ["a", "b", "c", "d"]


def test_build_compressor_shapes_and_errors():
    mlp = build_compressor("mlp", 64, 16, hidden=32)
    assert [m.__class__.__name__ for m in mlp] == ["Linear", "Tanh", "Linear"]
    assert mlp(torch.randn(3, 64)).shape == (3, 16) and mlp[0].out_features == 32
    assert build_compressor("mlp", 64, 8)[0].out_features == 16  # hidden defaults to 2 * dim
    direct = build_compressor("direct", 256, 12)
    assert isinstance(direct, torch.nn.Linear) and direct(torch.randn(2, 256)).shape == (2, 12)
    with pytest.raises(UserError, match="variant"):
        build_compressor("pca", 4, 2)
    with pytest.raises(UserError, match="dim"):
        build_compressor("direct", 4, 0)


def _embed(model: EnsembleModel, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        feats = model.forward_features(x)
        return feats, model.embed(x, w)["ensemble"]


def _train_and_correlate(variant, objective, ftr, etr, fte, ete, steps=300, lr=1e-2, dim=16) -> tuple[float, list]:
    torch.manual_seed(0)
    in_dim = ftr.shape[1] if variant == "direct" else etr.shape[1]
    comp = build_compressor(variant, in_dim, dim, hidden=32 if variant == "mlp" else None)
    trainer = CompressorTrainer(comp, variant, objective, lr)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        idx = torch.randperm(len(etr), generator=gen)[:64]
        losses.append(trainer.step(ftr[idx], etr[idx]))
    with torch.no_grad():
        student = F.normalize(comp(fte if variant == "direct" else ete), dim=1)
    iu = torch.triu_indices(len(ete), len(ete), 1)
    ds, dt = squared_distances(student)[iu[0], iu[1]], squared_distances(ete)[iu[0], iu[1]]
    return spearmanr(ds.numpy(), dt.numpy()).correlation, losses


@pytest.fixture(scope="module")
def synthetic_embeddings():
    """Features and 4x16-d ensemble embeddings of a random small CNN on glyph-like images; test classes unseen."""
    torch.manual_seed(0)
    model = EnsembleModel(build_backbone("small_cnn"), HEADS, 16).eval()
    w = torch.full((4,), 0.25)
    xtr, _ = glyph_like_images(20, 12, seed=1)
    xte, _ = glyph_like_images(15, 6, seed=2)
    return (*_embed(model, xtr, w), *_embed(model, xte, w))


@pytest.mark.parametrize("objective", ["frobenius", "softmax"])
def test_mlp_distances_correlate_with_the_ensemble_on_held_out_classes(synthetic_embeddings, objective):
    rho, losses = _train_and_correlate("mlp", objective, *synthetic_embeddings)
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:5]) / 5, "training should reduce the objective"
    assert rho > 0.9


def test_direct_head_distances_correlate_with_the_ensemble(synthetic_embeddings):
    rho, losses = _train_and_correlate("direct", "softmax", *synthetic_embeddings)
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:5]) / 5
    assert rho > 0.9


def test_spearman_on_real_glyphs():
    from lossensemble.data import build_dataset

    torch.manual_seed(0)
    opts = dict(num_train_classes=20, num_test_classes=20, images_per_class=16, progress=False)
    train = build_dataset("glyphs", "train", image_size=32, transform=None, **opts)
    test = build_dataset("glyphs", "test", image_size=32, **opts)
    from lossensemble.data import build_transforms

    train.transform = build_transforms("glyph", 32, train=False)
    xtr = torch.stack([train[i][0] for i in range(0, len(train), 2)])
    xte = torch.stack([test[i][0] for i in range(0, len(test), 3)])
    model = EnsembleModel(build_backbone("small_cnn"), HEADS, 16).eval()
    w = torch.full((4,), 0.25)
    rho, _ = _train_and_correlate("mlp", "frobenius", *_embed(model, xtr, w), *_embed(model, xte, w))
    assert rho > 0.9
