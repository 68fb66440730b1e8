"""``model.branch_at``: a shared trunk, one backbone branch per head; export keeps only the branches it needs."""

from __future__ import annotations

import json

import pytest
import torch

from lossensemble.config import ConfigError
from lossensemble.config.schema import ModelConfig
from lossensemble.errors import UserError
from lossensemble.inference import export_run, load_model
from lossensemble.models import build_backbone
from lossensemble.models.branching import STAGE_COUNTS, check_branch_at
from lossensemble.models.ensemble import build_model
from lossensemble.models.factory import check_components
from lossensemble.training import Trainer
from lossensemble.training.loading import load_run

HEADS = ["a", "b", "c"]


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("backbone,branch_at", [("small_cnn", 1), ("small_cnn", 2), ("small_cnn", 3),
                                                ("resnet18", 1), ("resnet18", 4)])
def test_trunk_is_one_set_of_parameters_and_each_branch_its_own(backbone, branch_at):
    torch.manual_seed(0)
    plain = build_backbone(backbone)
    model = build_model(ModelConfig(backbone=backbone, branch_at=branch_at, embedding_dim=8), HEADS)
    bb = model.backbone
    assert bb.branch_names == HEADS and bb.feature_dim == len(HEADS) * plain.feature_dim
    # parameters: the trunk once, the branched stages once per head; the trunk + one branch is one whole backbone
    branch = _params(bb.branches["a"])
    assert _params(bb.body) + branch == _params(plain)
    assert _params(bb) == _params(bb.body) + len(HEADS) * branch
    storage = {p.data_ptr() for b in bb.branches.values() for p in b.parameters()}
    assert len(storage) == len(HEADS) * len(list(bb.branches["a"].parameters()))
    # a loss on head "a" trains the trunk and branch "a", never branch "b"
    model.train()
    size = 32 if backbone == "small_cnn" else 64
    out = model(torch.randn(4, 3, size, size))
    out[0].pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in bb.body.parameters() if p.dim() > 1)
    assert all(p.grad is not None for p in bb.branches["a"].parameters())
    assert all(p.grad is None or not p.grad.any() for p in bb.branches["b"].parameters())
    assert all(p.grad is None for p in model.heads["b"].parameters())


def test_each_head_reads_its_own_branch():
    torch.manual_seed(1)
    model = build_model(ModelConfig(backbone="small_cnn", branch_at=2, embedding_dim=8), HEADS).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        heads = model(x)
        for name, out in zip(HEADS, heads):
            own = model.backbone.branches[name](model.backbone.body(x))
            assert torch.allclose(out, model.heads[name](own), atol=1e-6)
    assert not torch.allclose(heads[0], heads[1])


def test_embedding_one_head_runs_only_its_branch():
    torch.manual_seed(3)
    model = build_model(ModelConfig(backbone="small_cnn", branch_at=2, embedding_dim=8), HEADS).eval()
    x = torch.randn(3, 3, 32, 32)
    calls = []
    for name in HEADS:
        model.backbone.branches[name].register_forward_hook(lambda *_, n=name: calls.append(n))
    full = model.embed(x, [1.0, 1.0, 1.0])
    assert sorted(calls) == sorted(HEADS)
    calls.clear()
    one = model.embed(x, [1.0, 1.0, 1.0], names=["heads.b"])
    assert calls == ["b"] and list(one) == ["heads.b"]
    assert torch.allclose(one["heads.b"], full["heads.b"], atol=1e-6)
    calls.clear()
    model.embed(x, [1.0, 1.0, 1.0], names=["heads.a", "ensemble"])  # the ensemble needs every branch
    assert sorted(calls) == sorted(HEADS)


def test_branches_start_from_their_own_draw_or_the_same_weights(tmp_path):
    torch.manual_seed(2)
    model = build_model(ModelConfig(backbone="small_cnn", branch_at=3), ["a", "b"])
    first, second = (model.backbone.branches[n].state_dict() for n in ("a", "b"))
    assert not any(torch.equal(first[k], second[k]) for k in first if k.endswith("weight") and first[k].dim() > 1)
    from safetensors.torch import save_file

    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in build_backbone("small_cnn").state_dict().items()}, str(weights))
    model = build_model(ModelConfig(backbone="small_cnn", branch_at=3, weights=str(weights)), ["a", "b"])
    first, second = (model.backbone.branches[n].state_dict() for n in ("a", "b"))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_shared_heads_share_a_branch():
    model = build_model(ModelConfig(backbone="small_cnn", branch_at=1), ["a", "b", "c"], shared={"c": "a"})
    assert model.backbone.branch_names == ["a", "b"]
    assert model.branch_of == {"a": "a", "b": "b", "c": "a"}


@pytest.mark.parametrize("backbone,branch_at,match", [
    ("small_cnn", 4, "0..3"), ("resnet50", 5, "0..4"), ("efficientnet_b0", 1, "available for"),
    ("timm:resnet18", 2, "available for"), ("small_cnn", -1, ">= 0"), ("small_cnn", True, "whole number")])
def test_bad_branch_points_are_one_line_errors(backbone, branch_at, match):
    with pytest.raises(UserError, match=match):
        check_branch_at(backbone, branch_at)


def test_config_checks_branch_at(tiny_config):
    check_components(tiny_config("model.branch_at=3"))
    with pytest.raises(UserError, match="0..3"):
        check_components(tiny_config("model.branch_at=7"))
    with pytest.raises(ConfigError, match="model.branch_at"):
        tiny_config("model.branch_at=-2")
    with pytest.raises(UserError, match="freeze_backbone"):
        check_components(tiny_config("model.branch_at=1", "model.freeze_backbone=true"))
    with pytest.raises(UserError, match="gradnorm"):
        check_components(tiny_config("model.branch_at=1", "weighting.scheme=gradnorm"))
    for name, count in STAGE_COUNTS.items():  # every listed backbone splits into a trunk and a branch that
        plain = build_backbone(name)            # together are the whole network
        for k in (1, count):
            bb = build_model(ModelConfig(backbone=name, branch_at=k, embedding_dim=4), ["a", "b"]).backbone
            assert _params(bb.body) + _params(bb.branches["a"]) == _params(plain), (name, k)
            assert _params(bb.branches["a"]) == _params(bb.branches["b"]) > 0


@pytest.fixture(scope="module")
def branched_run(tiny_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("branched") / "run"
    trainer = Trainer(tiny_config("model.branch_at=2"), out)
    trainer.fit()
    return out, trainer


def test_export_of_one_head_is_one_backbone(branched_run, tmp_path):
    run, trainer = branched_run
    folder = export_run(run, tmp_path / "triplet", embedding="heads.triplet")
    spec = json.loads((folder / "config.json").read_text())
    assert spec["branch_at"] == 2 and spec["branches"] == [["triplet", "triplet"]]
    assert spec["feature_dim"] == 256
    model = load_model(folder)
    assert _params(model.backbone) == _params(build_backbone("small_cnn"))
    images = torch.randn(5, 3, 32, 32)
    trainer.model.eval()
    with torch.no_grad():
        want = trainer.model.embed(images, [1.0, 1.0], names=["heads.triplet"])["heads.triplet"]
        assert torch.allclose(model(images), want, atol=1e-5)


def test_export_of_the_ensemble_keeps_every_branch(branched_run, tmp_path):
    run, trainer = branched_run
    folder = export_run(run, tmp_path / "ens", embedding="ensemble")
    spec = json.loads((folder / "config.json").read_text())
    assert spec["branches"] == [["triplet", "triplet"], ["proxy_nca", "proxy_nca"]]
    model = load_model(folder)
    images = torch.randn(4, 3, 32, 32)
    loaded = load_run(run, device="cpu")
    with torch.no_grad():
        want = loaded.model.eval().embed(images, loaded.weights, names=["ensemble"])["ensemble"]
        assert torch.allclose(model(images), want, atol=1e-5)
    # the description is checked field by field: a branch list that misses an exported head, or is not
    # a list of pairs, is a one-line error naming the field (before any checksum is compared)
    from lossensemble.inference.layout import check_spec

    for bad in ([["triplet", "triplet"]], {"triplet": "triplet", "proxy_nca": "proxy_nca"}, [["triplet"]]):
        with pytest.raises(UserError, match="branches"):
            check_spec({**spec, "branches": bad}, folder / "config.json")
    with pytest.raises(UserError, match="come together"):
        check_spec({k: v for k, v in spec.items() if k != "branch_at"}, folder / "config.json")


def test_one_head_export_is_reusable_as_model_weights(branched_run, tmp_path):
    run, _ = branched_run
    folder = export_run(run, tmp_path / "proxy", embedding="heads.proxy_nca")
    plain = build_backbone("small_cnn", weights=str(folder)).eval()
    loaded = load_run(run, device="cpu")
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        bb = loaded.model.backbone.eval()
        want = bb.branches["proxy_nca"](bb.body(images))
        assert torch.allclose(plain(images), want, atol=1e-5)
    # a run folder holds every branch: which one is meant must be said by exporting it
    with pytest.raises(UserError, match="export one head"):
        build_backbone("small_cnn", weights=str(run))
    with pytest.raises(UserError, match="do not fit the backbone"):
        build_backbone("resnet18", weights=str(folder))
    with pytest.raises(UserError, match="trained with model.branch_at fit small_cnn"):
        build_backbone("mobilenet_v3_small", weights=str(folder))


def test_direct_compressor_export_reads_every_branch_in_order(tiny_config, tmp_path):
    run = tmp_path / "direct"
    Trainer(tiny_config("model.branch_at=1", "compression.enabled=true", "compression.variant=direct"), run).fit()
    folder = export_run(run, tmp_path / "model", embedding="compressed")
    spec = json.loads((folder / "config.json").read_text())
    assert spec["branches"] == [["triplet", "triplet"], ["proxy_nca", "proxy_nca"]] and spec["feature_dim"] == 512
    images = torch.randn(4, 3, 32, 32)
    loaded = load_run(run, device="cpu")
    with torch.no_grad():
        want = loaded.model.eval().embed(images, loaded.weights, names=["compressed"])["compressed"]
        assert torch.allclose(load_model(folder)(images), want, atol=1e-5)
    # the order of the branches is part of the checked description: swapped, the folder is refused
    spec["branches"] = spec["branches"][::-1]
    (folder / "config.json").write_text(json.dumps(spec))
    with pytest.raises(UserError):
        load_model(folder)
