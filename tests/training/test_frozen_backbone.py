"""``model.freeze_backbone``: a fixed backbone, and with ``data.augment=none`` its features cached on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lossensemble.training import Trainer
from lossensemble.training.features import FeatureDataset

FROZEN = ("model.freeze_backbone=true", "data.augment=none", "train.epochs=2", "train.steps_per_epoch=4")


def train(tiny_config, out: Path, *extra: str) -> Trainer:
    trainer = Trainer(tiny_config(*FROZEN, *extra), out)
    trainer.fit()
    return trainer


def cache_files() -> list[Path]:
    folder = Path(os.environ["LOSSENSEMBLE_CACHE"]) / "features"
    return sorted(folder.glob("*.npy")) if folder.is_dir() else []


def test_cached_run_equals_uncached_frozen_run(tiny_config, tmp_path):
    uncached = train(tiny_config, tmp_path / "uncached", "model.feature_cache=false")
    assert uncached.loader_set is uncached.train_set
    cached = train(tiny_config, tmp_path / "cached")
    assert isinstance(cached.loader_set, FeatureDataset)
    a = json.loads((tmp_path / "uncached" / "metrics.json").read_text())
    b = json.loads((tmp_path / "cached" / "metrics.json").read_text())
    for emb in ("ensemble", "heads.triplet", "heads.proxy_nca"):
        for metric, value in a[emb].items():
            assert b[emb][metric] == pytest.approx(value, abs=1e-6), (emb, metric)
    # the backbone did not move; the heads did
    init = Trainer(tiny_config(*FROZEN), tmp_path / "init")
    for (name, p0), p1 in zip(init.model.backbone.state_dict().items(), cached.model.backbone.state_dict().values()):
        assert torch.equal(p0, p1), name
    assert not all(torch.equal(p0, p1) for p0, p1 in zip(init.model.heads.parameters(), cached.model.heads.parameters()))


def test_cache_is_reused_and_keyed_by_weights_and_data(tiny_config, tmp_path):
    train(tiny_config, tmp_path / "a")
    files = cache_files()
    assert files
    before = {f: f.stat().st_mtime_ns for f in files}
    features = np.load(files[0])
    trainer = Trainer(tiny_config(*FROZEN), tmp_path / "b")  # same backbone weights (same seed) and data
    assert cache_files() == files and all(f.stat().st_mtime_ns == before[f] for f in files)
    assert np.array_equal(trainer.loader_set.features.numpy(), np.load(files[0]))
    with torch.inference_mode():  # the cached rows are the backbone's features of the training images
        x = torch.stack([trainer.train_set[i][0] for i in range(5)])
        assert np.allclose(trainer.model.backbone.eval()(x).numpy(), features[:5], atol=1e-5)
    Trainer(tiny_config(*FROZEN, "seed=1"), tmp_path / "c")  # other initial weights: another cache file
    Trainer(tiny_config(*FROZEN, "data.image_size=40"), tmp_path / "d")  # other transform: another one
    assert len(cache_files()) == len(files) + 2


def test_damaged_cache_is_recomputed(tiny_config, tmp_path, caplog):
    train(tiny_config, tmp_path / "a", "seed=7")
    newest = max(cache_files(), key=lambda f: f.stat().st_mtime_ns)
    good = np.load(newest)
    newest.write_bytes(b"not a numpy file")
    trainer = Trainer(tiny_config(*FROZEN, "seed=7"), tmp_path / "b")
    assert "damaged" in caplog.text
    assert np.array_equal(trainer.loader_set.features.numpy(), good)
    assert np.array_equal(np.load(newest), good)


def test_augmentation_keeps_the_backbone_running(tiny_config, tmp_path, caplog):
    trainer = Trainer(tiny_config("model.freeze_backbone=true", "data.augment=auto"), tmp_path / "run")
    assert trainer.loader_set is trainer.train_set
    assert "runs on every augmented batch" in caplog.text
    assert all(not p.requires_grad for p in trainer.model.backbone.parameters())
    trainer.model.train()
    assert not trainer.model.backbone.training  # frozen means eval mode too (batch norm statistics fixed)


def test_gradnorm_with_a_frozen_backbone_is_one_line(tiny_config):
    from lossensemble.errors import UserError
    from lossensemble.models import check_components

    with pytest.raises(UserError, match="gradnorm.*freeze_backbone"):
        check_components(tiny_config("model.freeze_backbone=true", "weighting.scheme=gradnorm"))
