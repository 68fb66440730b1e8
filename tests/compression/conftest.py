"""Fixtures of the compression tests: a tiny glyph run trained with joint compression."""

from __future__ import annotations

import pytest

from compression_helpers import NO_NMI


@pytest.fixture(scope="session")
def joint_run(tmp_path_factory, tiny_config):
    """A finished tiny glyph run trained with joint compression (paper's mlp); returns its folder."""
    from lossensemble.training import Trainer

    root = tmp_path_factory.mktemp("joint") / "run"
    Trainer(tiny_config(NO_NMI, "compression.enabled=true"), root).fit()
    return root
