"""``model.weights`` takes a run folder or an exported model; ``data.train_split=pretrain`` pretrains on disjoint classes."""

from __future__ import annotations

import pytest
import torch

from lossensemble.cli.common import load_run_config
from lossensemble.config import ConfigError
from lossensemble.errors import UserError
from lossensemble.inference import export_run
from lossensemble.models import build_backbone
from lossensemble.training import Trainer

PRETRAIN = ("data.train_split=pretrain", "data.options.num_pretrain_classes=16", "losses=[proxy_nca]")


@pytest.fixture(scope="module")
def pretrained_run(tiny_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("pre") / "run"
    trainer = Trainer(tiny_config(*PRETRAIN), out)
    trainer.fit()
    return out, trainer


def test_pretraining_uses_classes_of_neither_train_nor_test(pretrained_run, tiny_config, tmp_path):
    _, trainer = pretrained_run
    assert trainer.train_set.split == "pretrain"
    finetune = Trainer(tiny_config(), tmp_path / "ft")
    pre, train, test = (set(s.class_names) for s in (trainer.train_set, finetune.train_set, finetune.test_set))
    assert not pre & train and not pre & test


def test_run_folder_and_export_give_the_trained_backbone(pretrained_run, tmp_path):
    run, trainer = pretrained_run
    trained = trainer.model.backbone.state_dict()
    from_run = build_backbone("small_cnn", weights=str(run)).state_dict()
    exported = export_run(run, tmp_path / "model", embedding="ensemble")
    from_export = build_backbone("small_cnn", weights=str(exported)).state_dict()
    fresh = build_backbone("small_cnn").state_dict()
    for key, value in trained.items():
        assert torch.equal(from_run[key], value), key
        assert torch.equal(from_export[key], value), key
    assert not all(torch.equal(fresh[k], v) for k, v in trained.items() if v.is_floating_point())


def test_finetuning_starts_from_the_pretrained_backbone(pretrained_run, tiny_config, tmp_path):
    run, trainer = pretrained_run
    finetune = Trainer(tiny_config(f"model.weights={run}"), tmp_path / "ft")
    for key, value in trainer.model.backbone.state_dict().items():
        assert torch.equal(finetune.model.backbone.state_dict()[key], value), key


def test_bad_weights_folders_are_one_line(pretrained_run, tmp_path):
    run, _ = pretrained_run
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither a run folder"):
        build_backbone("small_cnn", weights=str(tmp_path / "empty"))
    with pytest.raises(UserError, match="do not fit the backbone"):
        build_backbone("resnet18", weights=str(run))


def test_train_split_checks_and_shipped_configs():
    with pytest.raises(ConfigError, match="data.val_fraction"):
        load_run_config(None, ["data.train_split=pretrain", "data.val_fraction=0.2"])
    with pytest.raises(ConfigError, match="data.train_split"):
        load_run_config(None, ["data.train_split=test"])
    pre = load_run_config("glyphs-pretrain", [])
    assert pre.data.train_split == "pretrain" and [loss.name for loss in pre.losses] == ["proxy_nca"]
    fine = load_run_config("glyphs-finetune-compare", [])
    assert fine.model.weights == "runs/glyphs-pretrain" and fine.data.val_fraction > 0
