"""The dataset registry: names -> :class:`DatasetSource` classes, and the ``build_dataset`` entry point."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from lossensemble.errors import DataError, UserError
from lossensemble.preprocess import IMAGENET, Normalisation
from lossensemble.registry import Registry

from .images import ImageDataset
from .splits import SPLITS
from .transforms import build_transforms

__all__ = [
    "DatasetNotFound", "DatasetSource", "DATASETS", "register_dataset", "get_source", "build_dataset", "build_split",
    "split_transform", "list_datasets",
]

TRAIN_LIKE_SPLITS = ("train", "pretrain")


class DatasetNotFound(DataError):
    """The dataset's files are not where they were looked for (the message says where and how to get them)."""


class DatasetSource:
    """How one named dataset is found, described and split; subclasses are registered by name.

    Class attributes describe the dataset for ``lossensemble datasets``; ``options``
    maps each accepted option to its default. An instance is bound to a root and options;
    :meth:`build` returns one split (without transform), :meth:`summary` counts images
    and classes per split without decoding images.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "photo"
    title: ClassVar[str] = ""
    source: ClassVar[str] = ""  # where it is read from, in words
    how_to_get: ClassVar[str] = ""
    default_image_size: ClassVar[int] = 224
    options: ClassVar[dict[str, Any]] = {}
    extra_splits: ClassVar[tuple[str, ...]] = ()
    user_data: ClassVar[bool] = False  # True: no default location, ``root`` must be given

    def __init__(self, root: str | Path | None = None, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(self.options), n=1)
            known = ", ".join(sorted(self.options)) or "none"
            hint = f"; did you mean {close[0]!r}?" if close else f"; known options: {known}"
            raise UserError(f"dataset {self.name!r} has no option {unknown[0]!r}{hint}")
        for key, value in options.items():
            _check_option(self.name, key, value)
        self.root = None if root is None else Path(root).expanduser()
        self.opts: dict[str, Any] = {**self.options, **options}

    @classmethod
    def in_data_dir(cls, data_dir: str | Path) -> "DatasetSource":
        """This dataset as found in a folder holding the datasets' folders (``lossensemble datasets --root-dir``)."""
        return cls(data_dir)

    def splits(self) -> tuple[str, ...]:
        """The split names :meth:`build` accepts."""
        return SPLITS + self.extra_splits

    def build(self, split: str, *, val_fraction: float, seed: int) -> ImageDataset:
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        """Counts per split (keys ``train_classes``, ``train_images``, ``test_classes``, ``test_images``)."""
        raise NotImplementedError

    def location(self) -> str:
        """Where the data is read from (a path), for messages and the datasets table."""
        return str(self.root) if self.root is not None else "(data.root=... required)"


#: Types of the options several datasets share, whose default (None) does not say it.
_OPTION_TYPES: dict[str, tuple[type, ...]] = {"max_image_pixels": (int,), "dataset_root": (str,),
                                              "train_classes": (list, str), "train_ratio": (int, float)}


def _check_option(dataset: str, key: str, value: Any) -> None:
    """A one-line :class:`UserError` for a shared option of the wrong type (``max_image_pixels: x``)."""
    types = _OPTION_TYPES.get(key)
    if value is None or types is None:
        return
    if isinstance(value, bool) or not isinstance(value, types):
        names = " or ".join(t.__name__ for t in types)
        raise UserError(f"dataset {dataset!r}: option {key!r} expects {names} (or null), got {value!r}")
    if key == "max_image_pixels" and value < 1:
        raise UserError(f"dataset {dataset!r}: option 'max_image_pixels' must be >= 1, got {value}")


DATASETS: Registry[type[DatasetSource]] = Registry("dataset", key="data.name")
"""Registry of dataset sources by name (filled by :func:`register_dataset`)."""

S = TypeVar("S", bound=type[DatasetSource])


def register_dataset(name: str) -> Callable[[S], S]:
    """Class decorator: make a :class:`DatasetSource` subclass available under ``name``."""

    def decorator(cls: S) -> S:
        DATASETS.register(name, cls)
        cls.name = name
        return cls

    return decorator


def get_source(name: str) -> type[DatasetSource]:
    """The registered source class for ``name``; an unknown name suggests the closest ones."""
    return DATASETS.get_or_raise(name)


def build_dataset(
    name: str,
    split: str = "train",
    root: str | Path | None = None,
    *,
    image_size: int | None = None,
    transform: Callable | str | None = "auto",
    val_fraction: float = 0.0,
    seed: int = 0,
    augment: Any = "auto",
    normalisation: Normalisation = IMAGENET,
    **options: Any,
) -> ImageDataset:
    """One split of a registered dataset as a torch ``Dataset`` of ``(image tensor, label)``.

    ``split``: "train" (training classes, minus validation classes when ``val_fraction``
    > 0), "val" (a seed-chosen ``val_fraction`` of the training classes, for model
    selection; never test classes), "test" (the unseen classes), "all"; datasets with
    query/gallery flags also take "query" and "gallery"; glyphs take "pretrain".
    ``transform``: "auto" (train transforms for training splits, eval otherwise),
    ``None`` (items are RGB PIL images), or a callable on a PIL image.
    ``seed`` chooses the validation classes (and the glyph renders).
    ``augment``: the training augmentation with ``transform="auto"`` (``data.augment``: ``auto``,
    ``photo``, ``glyph``, ``none`` or ``{name: ..., options: {...}}``; see
    :mod:`lossensemble.data.transforms`).
    ``normalisation``: the backbone's mean/std and filter for ``transform="auto"``
    (``Backbone.normalisation``; ImageNet's by default).
    ``options`` are dataset-specific (see ``DATASETS[name].options``).
    """
    source = get_source(name)(root, **options)
    if split not in source.splits():
        raise UserError(f"dataset {name!r} has no split {split!r} (choose from {', '.join(source.splits())})")
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction must be in [0, 1), got {val_fraction}")
    dataset = source.build(split, val_fraction=float(val_fraction), seed=int(seed))
    if transform == "auto":
        size = int(image_size) if image_size is not None else source.default_image_size
        dataset.transform = build_transforms(source.kind, size, train=split in TRAIN_LIKE_SPLITS, augment=augment,
                                             normalisation=normalisation)
    elif transform is None or callable(transform):
        dataset.transform = transform
    else:
        raise UserError(f"transform must be 'auto', None or a callable, got {transform!r}")
    return dataset


def build_split(data_cfg: Any, split: str, transform: Callable | str | None = "auto",
                normalisation: Normalisation = IMAGENET) -> ImageDataset:
    """One split of the dataset a :class:`~lossensemble.config.DataConfig` describes.

    The one place where a run's data settings become a dataset: training, evaluation,
    compression and the experiments all call this, so they see the same images.
    ``normalisation`` is the model's (``model.backbone.normalisation``) for ``transform="auto"``.
    """
    d = data_cfg
    return build_dataset(d.name, split, root=d.root, image_size=d.image_size, val_fraction=d.val_fraction,
                         transform=transform, augment=d.augment, normalisation=normalisation, **d.options)


def split_transform(data_cfg: Any, split: str, kind: str, normalisation: Normalisation = IMAGENET) -> Callable:
    """The transform ``build_split(data_cfg, split)`` gives a dataset of ``kind``, with ``normalisation``."""
    return build_transforms(kind, data_cfg.image_size, train=split in TRAIN_LIKE_SPLITS, augment=data_cfg.augment,
                            normalisation=normalisation)


def list_datasets(root_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per registered dataset for ``lossensemble datasets``.

    Keys: name, title, kind, train_classes, train_images, test_classes, test_images
    (None when the data is absent), status ("ok", "not found", "user data" for formats
    that need a root, or the problem),
    location (where it is read from), source, how_to_get. ``root_dir`` is a folder
    holding the datasets' folders (default ``$LOSSENSEMBLE_DATA`` or ``./data``).
    """
    rows = []
    for name in sorted(DATASETS, key=lambda n: (DATASETS[n].user_data, n != "glyphs", n)):
        cls = DATASETS[name]
        row: dict[str, Any] = {
            "name": name,
            "title": cls.title,
            "kind": cls.kind,
            "train_classes": None,
            "train_images": None,
            "test_classes": None,
            "test_images": None,
            "source": cls.source,
            "how_to_get": cls.how_to_get,
        }
        if cls.user_data:
            row.update(location="(pass data.root=...)", status="user data")
            rows.append(row)
            continue
        source = cls.in_data_dir(root_dir) if root_dir is not None else cls()
        row["location"] = source.location()
        try:
            row.update(source.summary())
            row["status"] = "ok"
        except DatasetNotFound:
            row["status"] = "not found"
        except DataError as exc:
            row["status"] = f"unusable: {exc}"
        rows.append(row)
    return rows
