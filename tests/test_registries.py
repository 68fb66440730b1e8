"""Every registered component, parametrised over the registries: a new entry is tested without editing a list."""

from __future__ import annotations

import math

import pytest
import torch

from lossensemble.config import WeightingConfig
from lossensemble.data import DATASETS
from lossensemble.losses import WEIGHTINGS, build_weighting
from lossensemble.models import BACKBONES, build_backbone
from lossensemble.registry import Registry

NAMES = ["classification", "triplet", "binomial"]


@pytest.mark.parametrize("scheme", WEIGHTINGS.names())
def test_every_weighting_gives_a_finite_objective_and_a_gradient(scheme):
    cfg = WeightingConfig(scheme=scheme, weights=[1.0, 2.0, 1.0] if scheme == "fixed" else None)
    weighting = build_weighting(cfg, NAMES).train()
    shared = torch.randn(6, 4, requires_grad=True)
    raw = torch.stack([(shared * (k + 1)).pow(2).mean() for k in range(len(NAMES))])
    total, info = weighting(raw, shared=shared)
    assert total.dim() == 0 and math.isfinite(float(total.detach()))
    total.backward()
    assert shared.grad is not None and torch.isfinite(shared.grad).all() and shared.grad.abs().sum() > 0
    w = weighting.weights().detach()
    assert w.shape == (len(NAMES),) and (w >= 0).all() and float(w.sum()) > 0


@pytest.mark.parametrize("name", [n for n in BACKBONES.names() if n in ("small_cnn", "resnet18", "mobilenet_v3_small")
                                  or n.startswith("plugin")])
def test_backbones_give_their_feature_dim(name):
    net = build_backbone(name).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, net.feature_dim)


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_is_described(name):
    cls = DATASETS[name]
    assert cls.name == name and cls.title and cls.kind in ("photo", "glyph") and cls.how_to_get


def test_registry_rejects_duplicates_and_suggests_names():
    reg: Registry[int] = Registry("thing", key="things")
    reg.register("alpha", 1)
    reg.register("alpha", 1)  # the same object again is fine (re-import)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha", 2)
    with pytest.raises(ValueError):
        reg.register("", 3)
    assert list(reg) == ["alpha"] and reg["alpha"] == 1 and "alpha" in reg
    with pytest.raises(Exception, match=r"things: unknown thing 'alpah'; did you mean 'alpha'\? available things: alpha"):
        reg.get_or_raise("alpah")
