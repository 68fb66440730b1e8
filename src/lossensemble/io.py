"""Writing and reading the library's files safely: atomic writes and JSON.

Every file the library writes goes through :func:`atomic_write_bytes`: the data is
written to a temporary file in the same folder, flushed, fsync'ed and renamed over
the target, so a reader (or a run killed mid-write) never sees half a file. Written
here because neither the standard library nor our dependencies offer an atomic,
durable write.
"""

from __future__ import annotations

import io as _io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from lossensemble.errors import UserError

__all__ = [
    "TEMP_SUFFIX",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_save_npz",
    "write_json",
    "read_json",
    "remove_stale_temp_files",
]

#: Suffix of the temporary files :func:`atomic_write_bytes` creates (``.<name>.<random>.tmp``).
TEMP_SUFFIX = ".tmp"


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = 0o644) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder + fsync + rename.

    ``mode`` is applied to the new file (``mkstemp`` creates files readable by the owner
    only; exported models and results are meant to be shared, so the default is 0644
    minus the process umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, mode & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npz(path: str | Path, compressed: bool = True, **arrays: Any) -> None:
    """Write numpy arrays as an ``.npz`` file atomically (``np.savez_compressed`` by default)."""
    import numpy as np

    buf = _io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> None:
    """Write ``data`` as JSON (atomically, trailing newline)."""
    atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a missing or malformed file is a one-line :class:`UserError` naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected a JSON file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete temporary files left in ``folder`` by an interrupted :func:`atomic_write_bytes`; returns them.

    Only names of the form ``.<name>.<random>.tmp`` (what this module creates) are removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX) and p.is_file():
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed
