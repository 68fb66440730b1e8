"""Backbones and the ensemble model."""

from __future__ import annotations

import pytest
import torch

from lossensemble.errors import UserError
from lossensemble.models import EnsembleModel, build_backbone, ensemble_embedding


def test_ensemble_distance_is_the_weighted_sum_of_head_distances():
    torch.manual_seed(0)
    heads = [torch.randn(5, 8), torch.randn(5, 8), torch.randn(5, 8)]
    w = torch.tensor([0.5, 0.3, 0.2])
    e = ensemble_embedding(heads, w)
    assert e.shape == (5, 24)
    d_ens = torch.cdist(e, e).pow(2)
    normed = [torch.nn.functional.normalize(h, dim=1) for h in heads]
    d_sum = sum(w[i] * torch.cdist(n, n).pow(2) for i, n in enumerate(normed))
    assert torch.allclose(d_ens, d_sum, atol=1e-5)


def test_model_heads_and_embeddings():
    model = EnsembleModel(build_backbone("small_cnn"), ["a", "b"], 16)
    x = torch.randn(3, 3, 32, 32)
    outs = model(x)
    assert [o.shape for o in outs] == [(3, 16), (3, 16)]
    emb = model.eval().embed(x, torch.tensor([0.5, 0.5]))
    assert set(emb) == {"heads.a", "heads.b", "ensemble"}
    assert torch.allclose(emb["heads.a"].norm(dim=1), torch.ones(3), atol=1e-5)
    # equal weights summing to 1: the ensemble vector has unit norm too
    assert torch.allclose(emb["ensemble"].norm(dim=1), torch.ones(3), atol=1e-5)


def test_single_head_model_is_the_same_class():
    model = EnsembleModel(build_backbone("small_cnn"), ["triplet"], 8)
    assert len(model.heads) == 1


def test_torchvision_backbone_features():
    net = build_backbone("resnet18")
    assert net.feature_dim == 512
    assert net(torch.randn(2, 3, 64, 64)).shape == (2, 512)


def test_unknown_backbone_suggests_names():
    with pytest.raises(UserError, match="resnet18"):
        build_backbone("resnet81")


def test_pretrained_weights_missing_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(UserError, match="never downloads"):
        build_backbone("resnet18", pretrained=True)


def test_weights_file_loaded_with_safetensors(tmp_path):
    from safetensors.torch import save_file

    src = build_backbone("small_cnn")
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "w.safetensors"))
    dst = build_backbone("small_cnn", weights=str(tmp_path / "w.safetensors"))
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert torch.equal(a, b), k


def test_frozen_batchnorm_stays_in_eval_mode():
    model = EnsembleModel(build_backbone("small_cnn"), ["a"], 8, freeze_bn=True)
    model.train()
    bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    assert all(not p.requires_grad for m in bns for p in m.parameters())
