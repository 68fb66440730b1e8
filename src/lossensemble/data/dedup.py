"""Duplicates and train/test leakage in users' own data (image folders, CSV files).

Two items are the same image when they name the same file (after resolving links and
``..``) or when their files hold identical bytes (SHA-1 of the content). Hashing is
cheap: only files whose size equals another file's size are read, and each file is
hashed once per process (keyed by its resolved path, size and modification time).

On the catalogue of a user dataset, :func:`check_duplicates`

* refuses an image that is in both the train and the test split (the test classes
  would be seen in training: leakage);
* refuses an image listed under two or more labels;
* drops exact duplicates (same image, same class, same split), keeping the first,
  with a warning that counts them; for query/gallery data the kept item is a query
  (gallery item) when any of its copies was.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from lossensemble.errors import DataError

from .splits import Catalog

__all__ = ["content_keys", "check_duplicates"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_HASHES: dict[tuple[str, int, int], str] = {}  # (resolved path, size, mtime_ns) -> sha1 hex digest
_WARNED: set[tuple[str, ...]] = set()
_LOCK = threading.Lock()


def _sha1(path: str, size: int, mtime_ns: int) -> str | None:
    key = (path, size, mtime_ns)
    with _LOCK:
        if key in _HASHES:
            return _HASHES[key]
    digest = hashlib.sha1(usedforsecurity=False)
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except OSError:
        return None  # unreadable: the image reader skips and counts it later
    with _LOCK:
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def content_keys(paths: Sequence[str]) -> list[str]:
    """One key per path: equal keys mean the same file or files with identical bytes."""
    real = [os.path.realpath(p) for p in paths]
    stats: dict[str, tuple[int, int] | None] = {}
    for path in dict.fromkeys(real):
        try:
            st = os.stat(path)
            stats[path] = (st.st_size, st.st_mtime_ns)
        except OSError:
            stats[path] = None
    sizes = Counter(s[0] for s in stats.values() if s is not None)
    keys: dict[str, str] = {}
    for path, stat in stats.items():
        digest = _sha1(path, *stat) if stat is not None and sizes[stat[0]] > 1 else None
        keys[path] = f"sha1:{stat[0]}:{digest}" if stat is not None and digest else f"path:{path}"
    return [keys[p] for p in real]


def _groups(keys: Sequence[str]) -> list[list[int]]:
    """Item indices of every key shared by several items (each group in item order)."""
    by_key: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        by_key.setdefault(key, []).append(i)
    return [g for g in by_key.values() if len(g) > 1]


def _what(catalog: Catalog, i: int) -> str:
    return f"{catalog.describe(i)} (label {catalog.class_name(str(catalog.classes[i]))!r})"


def check_duplicates(catalog: Catalog, dataset: str) -> Catalog:
    """``catalog`` without exact duplicates; DataError on train/test leakage or an image with two labels.

    The returned catalogue's ``issues`` gain ``duplicates_dropped`` (total) and
    ``duplicates_dropped_by_split`` (``{"train": n, "test": n}``).
    """
    assert catalog.paths is not None
    repeated = _groups(content_keys(catalog.paths))
    tags, classes = catalog.tags, catalog.classes

    leaks = [g for g in repeated if len({str(tags[i]) for i in g}) > 1]
    if leaks:
        train = next(i for i in leaks[0] if tags[i] == "train")
        test = next(i for i in leaks[0] if tags[i] == "test")
        raise DataError(
            f"{dataset}: {len(leaks)} images are in both the train and the test split (same file or identical "
            f"bytes), e.g. {_what(catalog, train)} in train and {_what(catalog, test)} in test; "
            f"remove them from one split"
        )
    conflicts = [g for g in repeated if len({str(classes[i]) for i in g}) > 1]
    if conflicts:
        first = conflicts[0][0]
        other = next(i for i in conflicts[0] if classes[i] != classes[first])
        raise DataError(
            f"{dataset}: {len(conflicts)} images have two or more labels (same file or identical bytes), "
            f"e.g. {_what(catalog, first)} and {_what(catalog, other)}; give each image one label"
        )

    dropped = np.asarray(sorted(i for g in repeated for i in g[1:]), dtype=np.int64)
    by_split = {tag: int((tags[dropped] == tag).sum()) for tag in ("train", "test")}
    issues: dict[str, Any] = {"duplicates_dropped": len(dropped), "duplicates_dropped_by_split": by_split}
    if not len(dropped):
        catalog.issues.update(issues)
        return catalog

    if catalog.has_query_gallery:  # a kept copy is a query / gallery item when any copy was
        catalog = catalog.take(np.arange(len(classes)))
        for g in repeated:
            catalog.is_query[g[0]] = catalog.is_query[g].any()
            catalog.is_gallery[g[0]] = catalog.is_gallery[g].any()
    keep = np.ones(len(classes), dtype=bool)
    keep[dropped] = False
    out = catalog.take(np.flatnonzero(keep))
    out.issues.update(issues)
    example = next(g for g in repeated)
    key = (dataset, catalog.paths[example[0]], str(len(dropped)))
    with _LOCK:
        first_time = key not in _WARNED
        _WARNED.add(key)
    if first_time:
        log.warning(
            "%s: dropped %d duplicate images (%d train, %d test): the same file or identical bytes listed twice "
            "in one class, e.g. %s and %s",
            dataset, len(dropped), by_split["train"], by_split["test"], catalog.describe(example[0]),
            catalog.describe(example[1]),
        )
    return out
