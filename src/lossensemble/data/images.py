"""Dataset objects: items are (image tensor, label), or ``None`` for an unreadable image.

:class:`ImageDataset` holds what every split has in common (labels, class names,
query/gallery flags, transform); :class:`FileImageDataset` reads images from disk
through a :class:`SafeImageReader`, :class:`ArrayImageDataset` serves images held
in memory (the rendered glyphs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from lossensemble.preprocess import SafeImageReader

__all__ = ["SafeImageReader", "ImageDataset", "FileImageDataset", "ArrayImageDataset"]


Transform = Callable[[Image.Image], Any]


class ImageDataset(Dataset):
    """One split of a dataset: ``dataset[i] -> (image tensor CxHxW, label)`` or ``None``.

    Attributes: ``labels`` (int64, contiguous ``0..num_classes-1`` within the split),
    ``class_names`` (index = label), ``paths`` (None for in-memory data),
    ``is_query`` / ``is_gallery`` (bool arrays for query/gallery datasets, else None),
    ``name``, ``split``, ``kind`` ("photo" or "glyph") and ``transform``
    (``None`` makes items PIL images, for plotting).

    ``data_issues``: counts of the problems found in the data when the split was built,
    for reports (``summary.json``); empty when the dataset is not checked. Users' own
    datasets (``folder``, ``csv``) give ``duplicates_dropped`` (exact duplicate images
    dropped from the whole dataset: same file or identical bytes, same class and split)
    and ``duplicates_dropped_by_split`` (``{"train": n, "test": n}``).
    """

    def __init__(
        self,
        *,
        name: str,
        split: str,
        kind: str,
        labels: np.ndarray,
        class_names: Sequence[str],
        transform: Transform | None = None,
        paths: list[str] | None = None,
        is_query: np.ndarray | None = None,
        is_gallery: np.ndarray | None = None,
        data_issues: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.split = split
        self.kind = kind
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = list(class_names)
        self.transform = transform
        self.paths = paths
        self.is_query = None if is_query is None else np.asarray(is_query, dtype=bool)
        self.is_gallery = None if is_gallery is None else np.asarray(is_gallery, dtype=bool)
        self.data_issues: dict[str, Any] = dict(data_issues or {})

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_skipped(self) -> int:
        """Images that could not be read in this process (0 for in-memory data)."""
        return 0

    def __len__(self) -> int:
        return len(self.labels)

    def _read(self, index: int) -> Image.Image | None:
        raise NotImplementedError

    def get_image(self, index: int) -> Image.Image | None:
        """The untransformed image ``index`` as an RGB PIL image (``None`` if unreadable)."""
        img = self._read(index)
        return None if img is None else img.convert("RGB")

    def __getitem__(self, index: int) -> tuple[Any, int] | None:
        img = self.get_image(index)
        if img is None:
            return None
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[index])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, "
            f"images={len(self)}, classes={self.num_classes})"
        )


class FileImageDataset(ImageDataset):
    """A split whose images are files on disk (``paths[i]``), read safely on access."""

    def __init__(self, *, paths: list[str], reader: SafeImageReader | None = None, **kwargs: Any) -> None:
        super().__init__(paths=list(paths), **kwargs)
        if len(self.paths) != len(self.labels):
            raise ValueError("paths and labels differ in length")
        self.reader = reader or SafeImageReader()

    @property
    def num_skipped(self) -> int:
        return self.reader.num_skipped

    def _read(self, index: int) -> Image.Image | None:
        return self.reader.read(self.paths[index])


class ArrayImageDataset(ImageDataset):
    """A split held in memory as a uint8 array (N, H, W) grayscale or (N, H, W, 3) RGB."""

    def __init__(self, *, images: np.ndarray, **kwargs: Any) -> None:
        super().__init__(paths=None, **kwargs)
        if len(images) != len(self.labels):
            raise ValueError("images and labels differ in length")
        self.images = images

    def _read(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index])
