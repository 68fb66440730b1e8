"""Any pytorch-metric-learning loss and miner by name (``pml:<ClassName>``): build, forward, option errors."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from lossensemble.config import load_config
from lossensemble.errors import UserError
from lossensemble.losses import build_loss, build_loss_entry, pml_loss_names, validate_losses
from lossensemble.models import check_components


def _batch(seed: int = 0, classes: int = 4, per_class: int = 4, dim: int = 8):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return torch.randn(len(labels), dim, generator=g), labels


def test_named_loss_equals_pml_with_the_same_options():
    x, y = _batch()
    ours = build_loss("pml:MultiSimilarityLoss", num_classes=4, embedding_dim=8, alpha=3, beta=40.0, base=0.4)
    theirs = pml_losses.MultiSimilarityLoss(alpha=3, beta=40.0, base=0.4)
    assert ours.name == "pml:MultiSimilarityLoss"
    assert torch.allclose(ours(x, y), theirs(x, y))


def test_proxy_and_classification_losses_get_num_classes_and_embedding_size():
    x, y = _batch()
    for name, attr in [("pml:ProxyAnchorLoss", "proxies"), ("pml:ArcFaceLoss", "W")]:
        loss = build_loss(name, num_classes=5, embedding_dim=8)
        param = getattr(loss.loss, attr)
        assert sorted(param.shape) == [5, 8]
        assert any(p is param for p in loss.parameters())  # learnable through the wrapper
        value = loss(x.requires_grad_(), y)
        value.backward()
        assert torch.isfinite(value) and param.grad is not None and param.grad.abs().sum() > 0


def test_object_options_by_pml_class_name():
    loss = build_loss("pml:ContrastiveLoss", num_classes=2, embedding_dim=8, distance="CosineSimilarity",
                      pos_margin=1.0, neg_margin=0.0)
    assert type(loss.loss.distance).__name__ == "CosineSimilarity"
    lp = build_loss("pml:TripletMarginLoss", num_classes=2, embedding_dim=8,
                    distance={"name": "LpDistance", "options": {"power": 2}})
    assert lp.loss.distance.power == 2


@pytest.mark.parametrize("options, fragment", [
    ({"alph": 2}, "unknown option 'alph'; did you mean 'alpha'? known options: alpha, beta, base"),
    ({"alpha": "high"}, "option 'alpha' expects a number"),
    ({"distance": "Cosine"}, "option 'distance' must name one of"),
])
def test_bad_option_is_a_one_line_user_error_naming_loss_and_option(options, fragment):
    with pytest.raises(UserError) as err:
        build_loss("pml:MultiSimilarityLoss", num_classes=4, embedding_dim=8, **options)
    message = str(err.value)
    assert message.startswith("loss 'pml:MultiSimilarityLoss'") and fragment in message and "\n" not in message


def test_automatic_sizes_may_not_be_given():
    with pytest.raises(UserError, match="option 'num_classes' is filled in automatically"):
        build_loss_entry({"name": "pml:ArcFaceLoss", "options": {"num_classes": 3}}, num_classes=4, embedding_dim=8)
    with pytest.raises(UserError, match="option 'embedding_size' is filled in automatically"):
        build_loss("pml:ArcFaceLoss", num_classes=4, embedding_dim=8, embedding_size=8)


def test_unknown_pml_name_suggests_the_closest():
    with pytest.raises(UserError, match=r"did you mean 'pml:MultiSimilarityLoss'"):
        build_loss("pml:MultiSimilarityLos", num_classes=4, embedding_dim=8)
    with pytest.raises(UserError, match=r"or pml:<ClassName>"):
        build_loss("tripplet", num_classes=4, embedding_dim=8)


def test_every_listed_pml_loss_builds_and_runs_or_says_which_option_it_needs():
    x, y = _batch()
    assert "ProxyNCALoss" in pml_loss_names() and "CrossBatchMemory" not in pml_loss_names()
    built = 0
    for name in pml_loss_names():
        try:
            loss = build_loss(f"pml:{name}", num_classes=4, embedding_dim=8)
        except UserError as exc:  # only losses with required options of their own (RankedListLoss: margin, Tn)
            assert "needs option" in str(exc), (name, exc)
            continue
        assert torch.isfinite(loss(x, y)), name
        built += 1
    assert built >= len(pml_loss_names()) - 2


def test_miner_is_used_and_equals_pml_loss_with_pml_miner():
    x, y = _batch(1)
    entry = {"name": "pml:TripletMarginLoss", "options": {"margin": 0.2},
             "miner": {"name": "pml:BatchHardMiner"}}
    ours = build_loss_entry(entry, num_classes=4, embedding_dim=8)
    assert isinstance(ours.miner, pml_miners.BatchHardMiner)
    expected = pml_losses.TripletMarginLoss(margin=0.2)(x, y, pml_miners.BatchHardMiner()(x, y))
    unmined = pml_losses.TripletMarginLoss(margin=0.2)(x, y)
    assert torch.allclose(ours(x, y), expected) and not torch.allclose(expected, unmined)


def test_miner_on_a_builtin_pml_backed_loss_replaces_its_own():
    x, y = _batch(2)
    ours = build_loss_entry({"name": "triplet", "miner": "pml:BatchHardMiner"}, num_classes=4, embedding_dim=8)
    assert isinstance(ours.miner, pml_miners.BatchHardMiner)
    expected = pml_losses.TripletMarginLoss(margin=1.0)(x, y, pml_miners.BatchHardMiner()(x, y))
    assert torch.allclose(ours(x, y), expected)


@pytest.mark.parametrize("entry, fragment", [
    ({"name": "binomial", "miner": "pml:BatchHardMiner"}, "loss 'binomial': takes no miner"),
    ({"name": "triplet", "miner": "pml:BatchHard"}, "did you mean 'pml:BatchHardMiner'"),
    ({"name": "triplet", "miner": {"name": "pml:MultiSimilarityMiner", "options": {"epsilom": 1}}},
     "miner 'pml:MultiSimilarityMiner': unknown option 'epsilom'; did you mean 'epsilon'?"),
    ({"name": "triplet", "miner": {"name": "pml:BatchHardMiner", "option": {}}}, "miner: unknown key(s) option"),
])
def test_bad_miner_is_a_user_error(entry, fragment):
    with pytest.raises(UserError) as err:
        build_loss_entry(entry, num_classes=4, embedding_dim=8)
    assert fragment in str(err.value)


def test_config_entries_with_pml_names_miners_and_bad_options():
    cfg = load_config(None, ['losses=[{name: "pml:MultiSimilarityLoss", options: {alpha: 2.5}, '
                             'miner: {name: "pml:MultiSimilarityMiner", options: {epsilon: 0.2}}}, '
                             '{name: "pml:ArcFaceLoss", head: "pml:MultiSimilarityLoss"}]'])
    assert cfg.losses[0].miner["name"] == "pml:MultiSimilarityMiner" and cfg.losses[1].head == cfg.losses[0].name
    check_components(cfg)
    bad = load_config(None, ['losses=[{name: "pml:ArcFaceLoss", options: {scael: 30}}]'])
    with pytest.raises(UserError, match="loss 'pml:ArcFaceLoss': unknown option 'scael'; did you mean 'scale'"):
        validate_losses(bad.losses, 8)
