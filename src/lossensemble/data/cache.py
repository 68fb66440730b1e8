"""Where the data layer keeps generated files and looks for downloaded datasets; verified, locked cache files.

A cache file is written with a small check file beside it (``<name>.sha256.json``: size
and SHA-256 of the bytes), written last, so a cache file is used only when it is
complete and intact. :func:`cached` reads such a file or builds and writes it:

* a damaged file (truncated, empty, changed bytes, a bad or missing check file, content
  that does not load) is warned about and rebuilt;
* the build and the write happen under an exclusive lock on ``.lock`` in the cache folder
  (``fcntl.flock``; no lock where ``fcntl`` is missing), and the file is looked for again
  once the lock is held, so two processes never write it at once and the second one
  reads what the first wrote;
* a folder that cannot be created or written (read-only ``LOSSENSEMBLE_CACHE``) gives the
  built value from memory, with one warning per folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from lossensemble.io import atomic_write_bytes, remove_stale_temp_files, write_json

__all__ = ["cache_dir", "data_dir", "cached", "cache_lock", "check_path", "read_verified", "write_verified",
           "CacheDamaged"]

log = logging.getLogger(__name__)

T = TypeVar("T")

LOCK_NAME = ".lock"
_UNWRITABLE: set[str] = set()  # folders already warned about
_WARN_LOCK = threading.Lock()


class CacheDamaged(Exception):
    """A cache file that is incomplete or changed since it was written (never shown to users: it is rebuilt)."""


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


def check_path(path: Path) -> Path:
    """The check file of the cache file ``path``."""
    return path.with_name(path.name + ".sha256.json")


def write_verified(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, then its check file (size and SHA-256)."""
    atomic_write_bytes(path, data)
    write_json(check_path(path), {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()})


def read_verified(path: Path) -> bytes | None:
    """The bytes of the cache file ``path`` (None if there is none); :class:`CacheDamaged` if they fail the check."""
    if not path.exists():
        return None
    try:
        data = path.read_bytes()
        check = json.loads(check_path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CacheDamaged("no check file (an interrupted write or an older version)") from None
    except (OSError, ValueError) as exc:
        raise CacheDamaged(f"{type(exc).__name__}: {exc}") from None
    if not isinstance(check, dict) or check.get("size") != len(data) \
            or check.get("sha256") != hashlib.sha256(data).hexdigest():
        raise CacheDamaged(f"{len(data)} bytes that do not match the check file")
    return data


@contextmanager
def cache_lock(folder: Path) -> Iterator[bool]:
    """Hold an exclusive lock on ``folder/.lock`` while the block runs; yields whether a lock is held.

    POSIX only (``fcntl.flock``); elsewhere, or when the lock file cannot be opened (a
    read-only folder), the block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:
        fcntl = None  # type: ignore[assignment]
    handle = None
    if fcntl is not None:
        try:
            handle = open(folder / LOCK_NAME, "a")  # noqa: SIM115 (closed below)
        except OSError:
            handle = None
    if handle is None:
        yield False
        return
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            locked = True
        except OSError:  # a file system without locks
            locked = False
        yield locked
    finally:
        handle.close()  # closing releases the lock


def _load(path: Path, load: Callable[[bytes], T], what: str, warn: bool) -> T | None:
    try:
        data = read_verified(path)
        return None if data is None else load(data)
    except Exception as exc:  # damaged in any way: rebuilt, never a crash
        if warn:
            log.warning("%s: rebuilding the damaged cache file %s (%s)", what, path, exc)
        return None


def _warn_unwritable(folder: Path, what: str, exc: OSError) -> None:
    with _WARN_LOCK:
        first = str(folder) not in _UNWRITABLE
        _UNWRITABLE.add(str(folder))
    if first:
        log.warning(
            "%s: cannot write the cache folder %s (%s); building in memory, which is repeated on every run "
            "(set LOSSENSEMBLE_CACHE to a writable folder)", what, folder, exc.strerror or exc,
        )


def cached(path: Path, *, load: Callable[[bytes], T], build: Callable[[], T], dump: Callable[[T], bytes],
           what: str) -> T:
    """``load`` of the verified cache file ``path``, else ``build()``, written (``dump``) with its check file.

    ``load`` raises on content it cannot use (that counts as damage). See the module
    docstring for damaged files, locking and unwritable folders; ``what`` prefixes warnings.
    """
    value = _load(path, load, what, warn=True)
    if value is not None:
        return value
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _warn_unwritable(folder, what, exc)
        return build()
    with cache_lock(folder) as locked:
        value = _load(path, load, what, warn=False)  # another process may have written it meanwhile
        if value is not None:
            return value
        if locked:  # nobody else is writing: temporary files left are from killed runs
            remove_stale_temp_files(folder)
        value = build()
        try:
            write_verified(path, dump(value))
        except OSError as exc:
            _warn_unwritable(folder, what, exc)
        return value
