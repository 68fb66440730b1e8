"""The training-cost accounting of comparison rows (lossensemble.experiments.cost) and the long-run configs."""

from __future__ import annotations

import pytest

from lossensemble.errors import UserError
from lossensemble.experiments.catalogue import comparison_methods, concrete_single_long
from lossensemble.experiments.cost import query_costs, train_costs, train_images
from lossensemble.experiments.methods import DEFAULT_METHODS, METHOD_PRESETS, expand_methods
from lossensemble.experiments.runs import long_config


@pytest.fixture()
def cfg(tiny_config):
    return tiny_config("data.val_fraction=0.25", "train.steps_per_epoch=3", "train.epochs=2")


def test_every_row_costs_steps_times_batch_over_one_single_run(cfg):
    methods = comparison_methods(cfg, ["study", "compressed", "uncertainty"], long_factor=3)
    costs = train_costs(methods, cfg)
    assert set(costs) == {m.name for m in methods}
    for name in ("single-triplet", "single-proxy_nca", "equal", "learned", "uncertainty"):
        assert costs[name] == 1.0
    assert costs["learned-long"] == 3.0 and costs["single-long"] == 3.0
    # the independent ensemble trains both single-loss models; its distillation trains no backbone
    assert costs["independent"] == 2.0 and costs["independent-compressed"] == 2.0
    # rows read off another run cost what that run cost
    assert costs["learned-compressed"] == costs["learned"] == 1.0
    assert costs["equal-head-triplet"] == 1.0 and costs["equal-best-head"] == 1.0
    assert costs["learned-long-best-head"] == 3.0
    # distilled students: their teacher, plus their own steps and the teacher's forward passes (factor 1)
    assert costs["distilled-independent"] == 2.0 + 1 + 2 and costs["distilled-shared"] == 1.0 + 1 + 1


def test_cost_follows_the_configs_batch_and_steps(cfg):
    methods = comparison_methods(cfg, ["single", "independent"])
    assert train_images(cfg) == (2 * 3 * cfg.data.batch_size, True)
    # a chosen single-long row is costed from its real config
    long_row = concrete_single_long(comparison_methods(cfg, ["single-long"], long_factor=5)[-1], cfg, "triplet")
    assert train_costs(methods + [long_row], cfg)["single-long"] == 5.0
    # without steps_per_epoch (one pass per epoch) ratios still hold: epochs scale instead
    one_pass = cfg.__class__(**{**vars(cfg)})
    one_pass.train = type(cfg.train)(**{**vars(cfg.train), "steps_per_epoch": None})
    assert train_images(one_pass)[1] is False
    assert train_costs([*comparison_methods(one_pass, ["learned-long"], long_factor=2)], one_pass)[
        "learned-long"] == 2.0


def test_long_config_keeps_the_schedule_shape(cfg):
    long = long_config(cfg, 4)
    assert long.train.steps_per_epoch == 12 and long.train.epochs == 2
    assert long.train.lr_decay == cfg.train.lr_decay and long.train.eval_every == cfg.train.eval_every
    assert cfg.train.steps_per_epoch == 3  # the original is untouched
    one_pass = type(cfg.train)(**{**vars(cfg.train), "steps_per_epoch": None, "lr_decay": 0.81, "epochs": 3})
    base = cfg.__class__(**{**vars(cfg), "train": one_pass})
    long = long_config(base, 2)
    assert long.train.epochs == 6 and long.train.steps_per_epoch is None
    assert long.train.lr_decay == pytest.approx(0.9)  # the same decay per pass over the data
    assert long.train.lr_decay ** long.train.epochs == pytest.approx(0.81 ** 3)
    assert long.train.eval_every == 2 and long.train.checkpoint_every == 2
    with pytest.raises(UserError, match="long-factor"):
        long_config(cfg, 0)


def test_study_preset_and_opt_in_families(cfg):
    assert expand_methods(["study"]) == list(METHOD_PRESETS["study"])
    assert expand_methods(["single", "study", "learned"]) == list(METHOD_PRESETS["study"])
    for opt_in in ("single-long", "learned-long", "best-head", "gradnorm", "distilled-independent", "distilled-shared",
                   "branched"):
        assert opt_in not in DEFAULT_METHODS
    names = [m.name for m in comparison_methods(cfg, ["study"])]
    assert names == ["single-triplet", "single-proxy_nca", "equal", "learned", "learned-compressed",
                     "single-long", "learned-long", "learned-long-compressed",
                     "independent", "independent-compressed", "equal-head-triplet", "equal-head-proxy_nca",
                     "distilled-independent", "distilled-shared", "learned-branch1", "learned-branch2",
                     "learned-branch3", "equal-best-head", "learned-best-head", "learned-long-best-head",
                     "learned-branch1-best-head", "learned-branch2-best-head", "learned-branch3-best-head"]
    by = {m.name: m for m in comparison_methods(cfg, ["study"], long_factor=2)}
    assert by["learned-long"].cfg.train.steps_per_epoch == 6
    assert by["learned-long"].cfg.weighting.scheme == "learned"
    assert by["learned-best-head"].source == "learned" and by["learned-best-head"].kind == "best-head"


@pytest.mark.parametrize("family", ["single-long", "best-head", "study"])
def test_choosing_on_validation_needs_validation_classes(tiny_config, family):
    cfg = tiny_config("data.val_fraction=0")
    with pytest.raises(UserError, match="set data.val_fraction") as err:
        comparison_methods(cfg, [family])
    assert "\n" not in str(err.value)


def test_unknown_family_names_the_presets(cfg):
    with pytest.raises(UserError, match="preset: study"):
        comparison_methods(cfg, ["bogus"])


def _small_cnn_conv_flops(size: int) -> list[int]:
    """Forward FLOPs (2 x multiply-adds) of small_cnn's four 3x3 convolutions at ``size`` px, by hand."""
    channels = [(3, 32), (32, 64), (64, 128), (128, 256)]
    return [2 * cin * cout * 9 * (size // 2 ** i) ** 2 for i, (cin, cout) in enumerate(channels)]


def test_branched_rows_cost_their_backbone_compute(cfg):
    methods = comparison_methods(cfg, ["branched", "independent", "best-head", "compressed"])
    flops = _small_cnn_conv_flops(cfg.data.image_size)
    whole = sum(flops)
    costs, queries = train_costs(methods, cfg), query_costs(methods, cfg)
    for k in (1, 2, 3):  # two losses: the last k convolutions run twice
        branch = sum(flops[-k:])
        expected = (whole + branch) / whole
        assert costs[f"learned-branch{k}"] == pytest.approx(expected)
        assert queries[f"learned-branch{k}"] == pytest.approx(expected)
        # a branched model's head alone is one backbone at query time; it cost what its run cost
        assert queries[f"learned-branch{k}-best-head"] == 1.0
        assert costs[f"learned-branch{k}-best-head"] == pytest.approx(expected)
        assert [m.cfg.model.branch_at for m in methods if m.name == f"learned-branch{k}"] == [k]
    assert queries["independent"] == 2.0 and queries["independent-compressed"] == 1.0
    assert queries["learned"] == 1.0 and queries["learned-compressed"] == 1.0 and queries["single-triplet"] == 1.0


def test_a_branched_teachers_forward_passes_cost_its_backbone_compute(tiny_config):
    cfg = tiny_config("train.steps_per_epoch=3", "model.branch_at=3")
    flops = _small_cnn_conv_flops(cfg.data.image_size)
    learned = (sum(flops) + sum(flops[-3:])) / sum(flops)  # two losses, the last 3 convs twice
    costs = train_costs(comparison_methods(cfg, ["single", "learned", "distilled-shared"]), cfg)
    assert costs["learned"] == pytest.approx(learned)
    assert costs["distilled-shared"] == pytest.approx(learned + 1 * (1 + learned))
    with pytest.raises(UserError, match="sets model.branch_at itself"):
        comparison_methods(cfg, ["branched"])


def test_branched_needs_a_backbone_with_stages(tiny_config):
    with pytest.raises(UserError, match="branched: partial sharing is available for small_cnn"):
        comparison_methods(tiny_config("model.backbone=mobilenet_v3_small"), ["branched"])
    with pytest.raises(UserError, match="freeze_backbone"):
        comparison_methods(tiny_config("model.freeze_backbone=true"), ["branched"])
    # from the study preset it is left out where it cannot run; the rest of the study stays
    for cfg in (tiny_config("model.backbone=mobilenet_v3_small", "data.val_fraction=0.25"),
                tiny_config("model.freeze_backbone=true", "data.val_fraction=0.25")):
        names = [m.name for m in comparison_methods(cfg, ["study"])]
        assert "learned-long" in names and not any("branch" in n for n in names)
