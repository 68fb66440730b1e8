"""Adding a loss, a weighting scheme, a dataset and a backbone touches one file each (tests/plugins/my_components.py)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from lossensemble.config import load_config
from lossensemble.errors import UserError
from lossensemble.models import check_components
from lossensemble.training import Trainer


@pytest.fixture(scope="module")
def plugins():
    """Import the plug-in file by path, as a user's own module would be."""
    path = Path(__file__).with_name("my_components.py")
    spec = importlib.util.spec_from_file_location("user_components_for_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    from lossensemble.data import DATASETS
    from lossensemble.losses import LOSSES, WEIGHTINGS
    from lossensemble.models import BACKBONES

    LOSSES.unregister("plugin_center")
    WEIGHTINGS.unregister("plugin_first_heavy")
    DATASETS.unregister("plugin_blobs")
    BACKBONES.unregister("plugin_tiny_cnn")
    del sys.modules[spec.name]


OVERRIDES = [
    "data.name=plugin_blobs", "data.image_size=16", "data.batch_size=8", "data.m_per_class=2",
    "model.backbone=plugin_tiny_cnn", "model.embedding_dim=8", "losses=[plugin_center,triplet]",
    "losses.0.options.scale=0.5", "weighting.scheme=plugin_first_heavy", "weighting.options={share: 0.8}",
    "train.epochs=1", "train.steps_per_epoch=2", "train.progress=false", "eval.nmi=false",
]


def test_registered_components_train_a_run(plugins, tmp_path):
    cfg = load_config(overrides=OVERRIDES)
    check_components(cfg)
    trainer = Trainer(cfg, tmp_path / "run")
    metrics = trainer.fit()
    assert set(metrics) >= {"ensemble", "heads.plugin_center", "heads.triplet"}
    assert trainer.weighting.weights().tolist() == pytest.approx([0.8, 0.2])
    assert trainer.losses[0].scale == 0.5
    assert trainer.model.backbone.feature_dim == 16
    assert all(math.isfinite(v) for v in metrics["ensemble"].values())


def test_plugin_options_are_checked_like_built_in_ones(plugins):
    cfg = load_config(overrides=OVERRIDES[:-6] + ["weighting.scheme=plugin_first_heavy",
                                                  "weighting.options={shares: 0.8}"])
    with pytest.raises(UserError, match="unknown option 'shares'; did you mean 'share'"):
        check_components(cfg)


def test_unknown_names_list_the_registered_plugins(plugins):
    cfg = load_config(overrides=["model.backbone=plugin_tiny", "losses=[triplet]"])
    with pytest.raises(UserError, match="did you mean 'plugin_tiny_cnn'"):
        check_components(cfg)
