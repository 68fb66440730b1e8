"""Shared machinery of datasets whose images are files listed by an index (benchmarks, folders, CSV)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from lossensemble.errors import DataError

from .cache import data_dir
from .images import FileImageDataset, SafeImageReader
from .registry import DatasetNotFound, DatasetSource
from .splits import Catalog, select_split

__all__ = ["FileDatasetSource", "read_table"]


class FileDatasetSource(DatasetSource):
    """A dataset on disk in a fixed layout: ``required`` files under a folder named ``directory``.

    ``root`` may be the dataset's own folder or a folder containing ``directory``; by
    default ``$LOSSENSEMBLE_DATA/<directory>`` (or ``./data/<directory>``). Subclasses
    implement :meth:`read_catalog`, which reads the index files (never the images).
    """

    directory: ClassVar[str] = ""
    required: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[dict[str, Any]] = {"max_image_pixels": None}

    @classmethod
    def in_data_dir(cls, data_dir: str | Path) -> "FileDatasetSource":
        return cls(Path(data_dir) / cls.directory)

    def dataset_root(self) -> Path:
        """The dataset's folder: ``root`` itself if it holds the layout, else ``root/<directory>``."""
        base = self.root if self.root is not None else data_dir()
        if self.root is not None and self._has_layout(base):
            return base
        nested = base / self.directory
        if self._has_layout(nested) or self.root is None:
            return nested
        return base

    def _has_layout(self, folder: Path) -> bool:
        return bool(self.required) and (folder / self.required[0]).exists()

    def location(self) -> str:
        return str(self.dataset_root())

    def check_layout(self) -> Path:
        """The dataset folder, after checking that every required file is there."""
        root = self.dataset_root()
        for rel in self.required:
            path = root / rel
            if not path.exists():
                what = "folder" if not root.is_dir() else "file"
                missing = root if not root.is_dir() else path
                raise DatasetNotFound(
                    f"{self.name}: {what} not found: {missing} (expected {root / self.required[0]}). "
                    f"Get {self.title or self.name} from {self.how_to_get} and extract it so that "
                    f"{root / self.required[0]} exists, or pass data.root=... (root=... in Python; or set LOSSENSEMBLE_DATA)"
                )
        return root

    def read_catalog(self, root: Path) -> Catalog:
        raise NotImplementedError

    def catalog(self) -> Catalog:
        return self.read_catalog(self.check_layout())

    def summary(self) -> dict[str, Any]:
        return self.catalog().summary()

    def build(self, split: str, *, val_fraction: float, seed: int) -> FileImageDataset:
        catalog = self.catalog()
        sel = select_split(catalog, split, val_fraction=val_fraction, seed=seed, dataset=self.name)
        assert catalog.paths is not None
        return FileImageDataset(
            name=self.name,
            split=split,
            kind=self.kind,
            labels=sel.labels,
            class_names=sel.class_names,
            paths=[catalog.paths[i] for i in sel.indices],
            is_query=sel.is_query,
            is_gallery=sel.is_gallery,
            reader=SafeImageReader(self.opts.get("max_image_pixels")),
            data_issues=catalog.issues,
        )


def read_table(path: Path, columns: int, *, skip: int = 0, comment: str | None = None) -> list[list[str]]:
    """Whitespace-separated rows of a text index, each with at least ``columns`` fields (else DataError)."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if number <= skip or not line.strip() or (comment and line.startswith(comment)):
                continue
            fields = line.split()
            if len(fields) < columns:
                raise DataError(f"{path}:{number}: expected {columns} fields, got {line.strip()!r}")
            rows.append(fields)
    return rows
