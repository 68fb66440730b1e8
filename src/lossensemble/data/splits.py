"""From a dataset's full catalogue to one split under the zero-shot protocol (docs/method.md, "Evaluation").

Classes are split, never images. A :class:`Catalog` lists every item with its class
and official split tag ("train" or "test"); :func:`select_split` checks the protocol
(train and test classes disjoint), drops single-image classes from training, carves
the validation classes out of the training classes, and relabels the chosen items with
contiguous labels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lossensemble.errors import DataError

__all__ = ["Catalog", "Selection", "choose_val_classes", "select_split", "SPLITS", "QUERY_GALLERY_SPLITS"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "all")
QUERY_GALLERY_SPLITS = ("query", "gallery")


@dataclass
class Catalog:
    """Every item of a dataset with its class key and official split tag, before a split is chosen.

    ``class_order`` is the dataset's canonical order of class keys (labels follow it);
    ``class_names`` maps a key to the name shown to users (default: the key itself).
    ``is_query`` / ``is_gallery`` flag test items of query/gallery datasets.
    ``sources`` says where each item comes from, for messages (e.g. ``line 7 ('a.png')``);
    ``issues`` holds the counts of problems found in the data (see :meth:`DatasetSource.build`).
    """

    classes: np.ndarray  # str per item
    tags: np.ndarray  # "train" | "test" per item
    class_order: list[str]
    paths: list[str] | None = None
    class_names: dict[str, str] | None = None
    is_query: np.ndarray | None = None
    is_gallery: np.ndarray | None = None
    sources: list[str] | None = None
    issues: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.classes = np.asarray(self.classes, dtype=str)
        self.tags = np.asarray(self.tags, dtype=str)

    def describe(self, index: int) -> str:
        """Where item ``index`` comes from, for messages (its source, else its path, else its number)."""
        if self.sources is not None:
            return self.sources[index]
        return repr(self.paths[index]) if self.paths is not None else f"item {index}"

    def class_name(self, key: str) -> str:
        """The name shown to users for the class key ``key``."""
        return self.class_names.get(key, key) if self.class_names else key

    def take(self, indices: np.ndarray) -> "Catalog":
        """The catalogue of the items ``indices`` (in that order), with the same classes and issues."""
        indices = np.asarray(indices, dtype=np.int64)

        def pick(values: Any) -> Any:
            if values is None:
                return None
            return values[indices] if isinstance(values, np.ndarray) else [values[i] for i in indices]

        return Catalog(
            classes=self.classes[indices], tags=self.tags[indices], class_order=self.class_order,
            paths=pick(self.paths), class_names=self.class_names, is_query=pick(self.is_query),
            is_gallery=pick(self.is_gallery), sources=pick(self.sources), issues=dict(self.issues),
        )

    @property
    def has_query_gallery(self) -> bool:
        return self.is_query is not None and self.is_gallery is not None

    def summary(self) -> dict[str, int]:
        """Class and image counts of the official train and test parts (for ``lossensemble datasets``)."""
        out = {}
        for tag in ("train", "test"):
            mask = self.tags == tag
            out[f"{tag}_classes"] = int(len(np.unique(self.classes[mask])))
            out[f"{tag}_images"] = int(mask.sum())
        return out


@dataclass
class Selection:
    """The items of one split: indices into the catalogue, contiguous labels, class names."""

    indices: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    is_query: np.ndarray | None = None
    is_gallery: np.ndarray | None = None


def choose_val_classes(train_classes: Sequence[str], val_fraction: float, seed: int) -> set[str]:
    """A deterministic, seed-chosen ``val_fraction`` of the training classes (at least one)."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0.0:
        return set()
    n = len(train_classes)
    n_val = max(1, int(round(val_fraction * n)))
    if n - n_val < 2:
        raise DataError(
            f"val_fraction={val_fraction} of {n} training classes leaves fewer than 2 classes to train on"
        )
    rng = np.random.default_rng([seed, 0x5A1])
    chosen = rng.choice(n, size=n_val, replace=False)
    return {train_classes[i] for i in chosen}


def check_disjoint(train_classes: set[str], test_classes: set[str], dataset: str) -> None:
    """Raise if a class is both in train and test: the zero-shot protocol would be broken."""
    shared = train_classes & test_classes
    if shared:
        example = ", ".join(repr(str(c)) for c in sorted(shared)[:5])
        raise DataError(
            f"{dataset}: {len(shared)} classes appear in both the train and the test split "
            f"(e.g. {example}); the zero-shot protocol needs disjoint classes"
        )


def _class_set(keys: np.ndarray) -> set[str]:
    return {str(k) for k in np.unique(keys)}


def select_split(catalog: Catalog, split: str, *, val_fraction: float, seed: int, dataset: str) -> Selection:
    """The items of ``split`` ("train", "val", "test", "all", "query", "gallery") with contiguous labels."""
    if len(catalog.classes) == 0:
        raise DataError(f"{dataset}: the dataset has no images")
    is_train = catalog.tags == "train"
    is_test = catalog.tags == "test"
    check_disjoint(_class_set(catalog.classes[is_train]), _class_set(catalog.classes[is_test]), dataset)

    mask: np.ndarray
    if split in ("train", "val"):
        keys, counts = np.unique(catalog.classes[is_train], return_counts=True)
        singles = _class_set(keys[counts < 2])
        if singles and split == "train":
            log.warning("%s: dropped %d training classes with a single image", dataset, len(singles))
        present = _class_set(keys)
        usable = [c for c in catalog.class_order if c in present and c not in singles]
        val = choose_val_classes(usable, val_fraction, seed)
        if split == "val" and not val:
            raise DataError(f"{dataset}: split 'val' needs val_fraction > 0 (a share of the training classes)")
        wanted = val if split == "val" else set(usable) - val
        mask = is_train & np.isin(catalog.classes, list(wanted))
    elif split == "test":
        mask = is_test
    elif split == "all":
        mask = is_train | is_test
    elif split in QUERY_GALLERY_SPLITS:
        if not catalog.has_query_gallery:
            raise DataError(f"{dataset}: has no query/gallery flags; use split 'test'")
        flags = catalog.is_query if split == "query" else catalog.is_gallery
        mask = is_test & flags
    else:
        raise DataError(f"{dataset}: unknown split {split!r}")

    indices = np.flatnonzero(mask)
    if len(indices) == 0:
        raise DataError(f"{dataset}: split {split!r} is empty (no images)")
    # query and gallery share the test split's class list, so their labels agree.
    label_mask = is_test if split in QUERY_GALLERY_SPLITS else mask
    present = _class_set(catalog.classes[label_mask])
    ordered = [c for c in catalog.class_order if c in present]
    index_of = {c: i for i, c in enumerate(ordered)}
    labels = np.fromiter((index_of[c] for c in catalog.classes[indices]), dtype=np.int64, count=len(indices))
    names = [catalog.class_name(c) for c in ordered]
    qg = catalog.has_query_gallery and split in ("test", "query", "gallery")
    return Selection(
        indices=indices,
        labels=labels,
        class_names=names,
        is_query=catalog.is_query[indices] if qg else None,
        is_gallery=catalog.is_gallery[indices] if qg else None,
    )
