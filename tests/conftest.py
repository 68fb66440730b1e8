"""Shared test setup: one torch thread (CI has 2 cores), a private cache folder per session."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Glyph renders and other caches go to a per-session folder unless one is given."""
    if "LOSSENSEMBLE_CACHE" not in os.environ:
        os.environ["LOSSENSEMBLE_CACHE"] = str(tmp_path_factory.mktemp("lossensemble-cache"))
    yield


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)
    yield
