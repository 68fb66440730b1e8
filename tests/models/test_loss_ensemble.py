"""LossEnsemble: the ensemble objective as one module (values, gradients, shared heads, errors)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lossensemble
from lossensemble.errors import UserError
from lossensemble.losses import build_loss, diversity_penalty
from lossensemble.models import LossEnsemble


def _batch(seed: int = 0, feature_dim: int = 10, classes: int = 4, per_class: int = 4):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return torch.randn(len(labels), feature_dim, generator=g), labels


def test_exported_from_the_package_and_models():
    assert lossensemble.LossEnsemble is LossEnsemble and "LossEnsemble" in lossensemble.__all__


def test_forward_is_the_weighted_sum_of_the_losses_on_their_heads():
    torch.manual_seed(0)
    ens = LossEnsemble.build(10, ["binomial", "classification"], num_classes=4, embedding_dim=6,
                             weighting={"scheme": "fixed", "weights": [1.0, 3.0]})
    features, labels = _batch()
    total, logs = ens(features, labels)
    # by hand: binomial reads the normalised head, classification the raw one
    binomial = ens.losses[0](F.normalize(ens.heads["binomial"](features), dim=1), labels)
    classification = ens.losses[1](ens.heads["classification"](features), labels)
    expected = 0.25 * binomial + 0.75 * classification
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert logs["loss_binomial"] == pytest.approx(binomial.item(), rel=1e-6)
    assert logs["loss_classification"] == pytest.approx(classification.item(), rel=1e-6)
    assert logs["weight_binomial"] == pytest.approx(0.25) and logs["weight_classification"] == pytest.approx(0.75)
    assert logs["loss_total"] == pytest.approx(total.item())
    assert all(isinstance(v, float) for v in logs.values())


def test_losses_match_the_registry_losses_built_alone():
    torch.manual_seed(1)
    ens = LossEnsemble.build(10, [{"name": "triplet", "options": {"margin": 0.3}}], num_classes=4,
                                 embedding_dim=6, weighting="equal")
    alone = build_loss("triplet", num_classes=4, embedding_dim=6, margin=0.3)
    features, labels = _batch(1)
    total, _ = ens(features, labels)
    assert total.item() == pytest.approx(alone(F.normalize(ens.heads["triplet"](features), dim=1), labels).item())


def test_gradients_reach_heads_loss_parameters_and_weights():
    torch.manual_seed(2)
    ens = LossEnsemble.build(10, ["triplet", "proxy_nca", "pml:ArcFaceLoss"], num_classes=4, embedding_dim=6,
                             weighting="uncertainty")
    features, labels = _batch(2)
    features.requires_grad_()
    total, _ = ens(features, labels)
    total.backward()
    for name in ens.names:
        assert ens.heads[name].weight.grad.abs().sum() > 0, name
    assert ens.losses[1].proxies.grad.abs().sum() > 0
    assert ens.losses[2].loss.W.grad.abs().sum() > 0
    assert ens.weighting.log_vars.grad.abs().sum() > 0
    assert features.grad.abs().sum() > 0  # and on into the backbone


def test_diversity_term_is_added_on_the_distinct_heads():
    torch.manual_seed(3)
    kwargs = dict(num_classes=4, embedding_dim=6, weighting="equal")
    plain = LossEnsemble.build(10, ["binomial", "contrastive"], **kwargs)
    diverse = LossEnsemble.build(10, ["binomial", "contrastive"], diversity=0.5, **kwargs)
    diverse.load_state_dict(plain.state_dict())
    features, labels = _batch(3)
    base, _ = plain(features, labels)
    total, logs = diverse(features, labels)
    div = diversity_penalty([F.normalize(h, dim=1) for h in plain.head_outputs(features)], 2.0)
    assert div.item() > 0
    assert total.item() == pytest.approx(base.item() + 0.5 * div.item(), rel=1e-6)
    assert logs["diversity"] == pytest.approx(div.item(), rel=1e-6)


def test_losses_can_share_one_head(tmp_path):
    torch.manual_seed(4)
    ens = LossEnsemble.build(10, ["contrastive", {"name": "pml:ArcFaceLoss", "head": "contrastive"}, "binomial"],
                             num_classes=4, embedding_dim=6, weighting="equal", diversity=0.1)
    assert ens.heads["pml:ArcFaceLoss"] is ens.heads["contrastive"]
    assert ens.heads["binomial"] is not ens.heads["contrastive"]
    assert sum(p.numel() for p in ens.heads.parameters()) == 2 * (10 * 6 + 6)
    features, labels = _batch(4)
    total, logs = ens(features, labels)
    total.backward()
    assert set(logs) >= {"loss_contrastive", "loss_pml:ArcFaceLoss", "loss_binomial", "diversity"}
    assert ens.heads["contrastive"].weight.grad.abs().sum() > 0
    assert ens.embed(features).shape == (16, 18)
    # a shared head is one module, but saves under both names as separate tensors (safetensors refuses shared memory)
    from safetensors.torch import load_file, save_file

    save_file(ens.state_dict(), str(tmp_path / "ens.safetensors"))
    copy = LossEnsemble.build(10, ["contrastive", {"name": "pml:ArcFaceLoss", "head": "contrastive"}, "binomial"],
                              num_classes=4, embedding_dim=6, weighting="equal", diversity=0.1)
    copy.load_state_dict(load_file(str(tmp_path / "ens.safetensors")))
    assert torch.equal(copy.heads["pml:ArcFaceLoss"].weight, ens.heads["contrastive"].weight)
    assert copy.heads["pml:ArcFaceLoss"] is copy.heads["contrastive"]


@pytest.mark.parametrize("losses, kwargs, fragment", [
    (["triplet"], {"num_classes": 0}, "num_classes must be a positive integer"),
    ("triplet", {"num_classes": 4}, "losses must be a non-empty list"),
    (["triplet", {"name": "binomial", "head": "tripet"}], {"num_classes": 4}, "head must name another loss"),
    (["triplet", "triplet"], {"num_classes": 4}, "each loss may appear once"),
    (["triplet"], {"num_classes": 4, "weighting": "uncertainly"}, "did you mean 'uncertainty'"),
    (["triplet"], {"num_classes": 4, "weighting": {"schem": "equal"}}, "weighting"),
])
def test_bad_arguments_are_user_errors(losses, kwargs, fragment):
    with pytest.raises(UserError, match=fragment):
        LossEnsemble.build(10, losses, **kwargs)


def test_trainer_with_a_shared_head_trains_exports_and_embeds(tiny_config, tmp_path):
    from lossensemble.inference import export_run
    from lossensemble.training import Trainer

    cfg = tiny_config('losses=[triplet, {name: proxy_nca, head: triplet}]')
    metrics = Trainer(cfg, tmp_path / "run").fit()
    assert set(metrics) >= {"ensemble", "heads.triplet", "heads.proxy_nca"}
    assert metrics["heads.triplet"] == metrics["heads.proxy_nca"]  # one head under two names
    export_run(tmp_path / "run", tmp_path / "model", embedding="ensemble")
    model = lossensemble.load_model(tmp_path / "model")
    from PIL import Image

    vectors = model.embed_images([Image.new("RGB", (32, 32), "white")])
    assert vectors.shape == (1, 2 * 16)
