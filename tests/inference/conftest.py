"""Fixtures of the inference tests: tiny exported models (untrained small_cnn) and a folder of real PNGs."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference_helpers import export_tiny, write_images


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("model") / "m", seed=0)


@pytest.fixture(scope="session")
def other_model(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("model") / "other", seed=1)


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images") / "images"
    write_images(root, n_classes=6, per_class=5, seed=0)
    return root
