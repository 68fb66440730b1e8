"""Where the data layer keeps generated files and looks for downloaded datasets."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["cache_dir", "data_dir", "atomic_save_npz", "atomic_write_json"]


def cache_dir(*parts: str, create: bool = True) -> Path:
    """The folder for generated data (glyph renders, class lists), created on demand.

    ``$LOSSENSEMBLE_CACHE`` when set, else the platform's user cache folder
    (``~/.cache/lossensemble``, ``~/Library/Caches/lossensemble``, ``%LOCALAPPDATA%``).
    """
    env = os.environ.get("LOSSENSEMBLE_CACHE")
    if env:
        base = Path(env).expanduser()
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "lossensemble" / "Cache"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches" / "lossensemble"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lossensemble"
    path = base.joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """The folder under which benchmark datasets are looked for: ``$LOSSENSEMBLE_DATA`` or ``./data``."""
    return Path(os.environ.get("LOSSENSEMBLE_DATA", "data")).expanduser()


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write a compressed ``.npz`` so that readers never see a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file + rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
