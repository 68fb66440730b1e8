"""Datasets for zero-shot deep metric learning: registry, loaders, transforms, class-balanced batches.

Entry points: :func:`build_dataset` (one split of a registered dataset as a torch
``Dataset`` of ``(image tensor, label)``), :func:`list_datasets`, :func:`collate_batch`
(a ``collate_fn`` that drops unreadable images and counts them), :class:`MPerClassBatchSampler`
and :func:`build_transforms`. Registered datasets: ``glyphs`` (embedded, offline),
``cub200``, ``cars196``, ``sop``, ``inshop``, ``flowers102``, ``pets``, ``folder``, ``csv``.
"""

from __future__ import annotations

from . import benchmarks as _benchmarks  # noqa: F401  (registers the loaders)
from . import generic as _generic  # noqa: F401
from . import glyphs as _glyphs  # noqa: F401
from .cache import cache_dir, data_dir
from .collate import collate_batch
from .images import ArrayImageDataset, FileImageDataset, ImageDataset, SafeImageReader
from .registry import (
    DATASETS,
    DatasetNotFound,
    DatasetSource,
    build_dataset,
    build_split,
    get_source,
    list_datasets,
    register_dataset,
)
from .sampler import MPerClassBatchSampler
from .transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms

__all__ = [
    "ArrayImageDataset",
    "DATASETS",
    "DatasetNotFound",
    "DatasetSource",
    "FileImageDataset",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageDataset",
    "MPerClassBatchSampler",
    "SafeImageReader",
    "build_dataset",
    "build_split",
    "get_source",
    "build_transforms",
    "cache_dir",
    "collate_batch",
    "data_dir",
    "list_datasets",
    "register_dataset",
]
