"""Fixtures of the compression tests: a tiny glyph run trained with joint compression."""

from __future__ import annotations

import pytest

from compression_helpers import glyphs_available, tiny_config


@pytest.fixture(scope="session")
def joint_run(tmp_path_factory):
    """A finished tiny glyph run trained with joint compression (paper's mlp); returns its folder."""
    if not glyphs_available():
        pytest.skip("the glyphs dataset is not available yet")
    from lossensemble.training import Trainer

    root = tmp_path_factory.mktemp("joint") / "run"
    Trainer(tiny_config("compression.enabled=true"), root).fit()
    return root
