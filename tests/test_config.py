"""Config loading, overrides and validation errors."""

from __future__ import annotations

import pytest
import yaml

from lossensemble.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)


def test_defaults_are_valid_and_have_the_papers_four_losses():
    cfg = config_from_dict({})
    assert [loss.name for loss in cfg.losses] == ["classification", "triplet", "binomial", "proxy_nca"]
    assert cfg.model.embedding_dim == 64


def test_dotted_overrides_change_nested_values_with_types():
    cfg = load_config(overrides=["train.epochs=3", "model.embedding_dim=128", "train.lr.backbone=1e-4",
                                 "weighting.scheme=learned", "train.grad_clip=null"])
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.model.embedding_dim == 128
    assert cfg.train.lr.backbone == pytest.approx(1e-4)
    assert cfg.weighting.scheme == "learned"
    assert cfg.train.grad_clip is None


def test_loss_list_override_and_indexed_loss_option():
    cfg = load_config(overrides=["losses=[triplet,binomial]", "losses.0.options.margin=0.2"])
    assert [loss.name for loss in cfg.losses] == ["triplet", "binomial"]
    assert cfg.losses[0].options == {"margin": 0.2}


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 7}, "data": {"batch_size": 32}}))
    cfg = load_config(path, ["train.epochs=2"])
    assert cfg.train.epochs == 2
    assert cfg.data.batch_size == 32


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["train.epochz=3"], "train.epochz"),
        (["train.epochs=three"], "train.epochs"),
        (["model.embedding_dim=-4"], "model.embedding_dim"),
        (["losses=[]"], "losses"),
        (["data.batch_size=30", "data.m_per_class=4"], "data.batch_size"),
        (["train.amp=maybe"], "train.amp"),
        (["weighting.scheme=fixed"], "weighting.weights"),
        (["losses=[triplet,triplet]"], "losses"),
        (["losses.5.name=x"], "losses.5"),
    ],
)
def test_bad_values_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=overrides)
    assert str(exc.value).startswith(key)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["weighting.scheme=magic"], "weighting.scheme"),
        (["model.backbone=resnet19"], "model.backbone"),
        (["losses=[triplet,binomal]"], "losses"),
        (["compression.variant=pca"], "compression.variant"),
        (["compression.objective=kl"], "compression.objective"),
        (["weighting.scheme=gradnorm", "weighting.options={alfa: 1}"], "weighting 'gradnorm'"),
    ],
)
def test_registry_names_are_checked_by_check_components(overrides, key):
    """Names that registries define are checked against the registries (config itself only checks structure)."""
    from lossensemble.errors import UserError
    from lossensemble.models import check_components

    cfg = load_config(overrides=overrides)
    with pytest.raises(UserError) as exc:
        check_components(cfg)
    assert str(exc.value).startswith(key)


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        load_config(overrides=["train.epoch=3"])


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["train.epochs"])


def test_python_yaml_tags_are_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_malformed_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(top)


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(overrides=["train.epochs=4", "losses=[triplet]"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert config_to_dict(again) == config_to_dict(cfg)
    assert isinstance(again, Config)
