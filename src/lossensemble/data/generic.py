"""Users' own data: an image folder (one sub-folder per class) and an open-metric-learning style CSV."""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lossensemble.errors import DataError

from .files import FileDatasetSource
from .registry import DatasetNotFound, register_dataset
from .splits import Catalog

__all__ = ["ImageFolder", "CSVDataset", "IMAGE_EXTENSIONS"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)


class _UserDataSource(FileDatasetSource):
    """A dataset with no default location: ``root`` must be given."""

    user_data = True

    def dataset_root(self) -> Path:
        if self.root is None:
            raise DatasetNotFound(f"{self.name}: needs root=... ({self.how_to_get})")
        return self.root

    def location(self) -> str:
        return str(self.root) if self.root is not None else "(pass root)"

    def check_layout(self) -> Path:
        root = self.dataset_root()
        if not root.exists():
            raise DatasetNotFound(f"{self.name}: not found: {root} ({self.how_to_get})")
        return root


@register_dataset("folder")
class ImageFolder(_UserDataSource):
    """An image folder: ``root/<class name>/<image>`` (any depth below the class folder).

    Classes are split by ``train_classes`` (a list of class names, or the path of a text
    file with one name per line) or else by ``train_ratio``: the first share of the
    class names in sorted order train, the rest test. Files without an image extension
    are ignored; image files that fail to decode are skipped and counted when read.
    """

    title = "Image folder"
    options: ClassVar[dict[str, Any]] = {"train_ratio": 0.5, "train_classes": None, "max_image_pixels": None}
    source = "ROOT/<class>/<images>"
    how_to_get = "your own images, one sub-folder per class"

    def read_catalog(self, root: Path) -> Catalog:
        if not root.is_dir():
            raise DataError(f"folder: {root} is not a directory")
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not class_dirs:
            raise DataError(f"folder: {root} has no class sub-folders (expected ROOT/<class>/<images>)")
        paths: list[str] = []
        classes: list[str] = []
        ignored = 0
        for folder in class_dirs:
            for path in sorted(folder.rglob("*")):
                if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root).parts):
                    continue
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    ignored += 1
                    continue
                paths.append(str(path))
                classes.append(folder.name)
        if ignored:
            log.info("folder: ignored %d files without an image extension under %s", ignored, root)
        names = [p.name for p in class_dirs]
        train = self._train_classes(names)
        return Catalog(
            classes=np.asarray(classes, dtype=str),
            tags=np.where(np.isin(np.asarray(classes, dtype=str), list(train)), "train", "test"),
            class_order=names,
            paths=paths,
        )

    def _train_classes(self, names: list[str]) -> set[str]:
        wanted = self.opts["train_classes"]
        if wanted is None:
            ratio = float(self.opts["train_ratio"])
            if not 0.0 < ratio < 1.0:
                raise DataError(f"folder: train_ratio must be in (0, 1), got {ratio}")
            return set(names[: max(1, int(round(ratio * len(names))))])
        if isinstance(wanted, (str, Path)):
            path = Path(wanted).expanduser()
            if not path.is_file():
                raise DataError(f"folder: train_classes file not found: {path}")
            wanted = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        wanted = [str(w) for w in wanted]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            raise DataError(f"folder: train_classes names {len(unknown)} unknown classes, e.g. {unknown[:5]}")
        return set(wanted)


_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f", ""}
_INT = re.compile(r"^[+-]?\d+$")


@register_dataset("csv")
class CSVDataset(_UserDataSource):
    """A CSV in open-metric-learning style: columns ``path``, ``label``, ``split``, optional ``is_query``, ``is_gallery``.

    ``split`` is "train", or "validation" / "test" (open-metric-learning's evaluation
    split, our "test"). Relative paths are resolved against ``dataset_root`` (option)
    or the CSV's folder. Labels are either all integers or all text.
    """

    title = "CSV (open-metric-learning style)"
    options: ClassVar[dict[str, Any]] = {"dataset_root": None, "max_image_pixels": None}
    source = "ROOT.csv with columns path,label,split[,is_query,is_gallery]"
    how_to_get = "your own images listed in a CSV file"
    extra_splits = ("query", "gallery")
    required_columns = ("path", "label", "split")

    def read_catalog(self, root: Path) -> Catalog:
        if not root.is_file():
            raise DataError(f"csv: {root} is not a file (root must be the CSV file)")
        base = Path(self.opts["dataset_root"]).expanduser() if self.opts["dataset_root"] else root.parent
        try:
            with open(root, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                columns = [c.strip() for c in (reader.fieldnames or [])]
                rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"csv: cannot parse {root}: {exc}") from None
        missing = [c for c in self.required_columns if c not in columns]
        if missing:
            raise DataError(f"csv: {root} lacks column(s) {', '.join(missing)} (has: {', '.join(columns) or 'none'})")
        if not rows:
            raise DataError(f"csv: {root} has no rows")
        flags = [c for c in ("is_query", "is_gallery") if c in columns]
        if len(flags) == 1:
            raise DataError(f"csv: {root} has column {flags[0]} but not its partner; give both is_query and is_gallery")

        tags = self._tags(rows, root)
        paths = self._paths(rows, base, root)
        classes, order = self._labels(rows, root)
        catalog = Catalog(classes=classes, tags=tags, class_order=order, paths=paths)
        if flags:
            catalog.is_query = self._flag(rows, "is_query", root)
            catalog.is_gallery = self._flag(rows, "is_gallery", root)
        return catalog

    @staticmethod
    def _bad_rows(root: Path, what: str, bad: list[tuple[int, str]]) -> DataError:
        # Row numbers are file lines (the header is line 1).
        shown = ", ".join(f"line {i + 2} ({v!r})" for i, v in bad[:5])
        return DataError(f"csv: {root}: {len(bad)} rows with {what}: {shown}")

    def _tags(self, rows: list[dict[str, str]], root: Path) -> np.ndarray:
        mapping = {"train": "train", "validation": "test", "test": "test"}
        bad = [(i, r["split"]) for i, r in enumerate(rows) if r["split"].lower() not in mapping]
        if bad:
            raise self._bad_rows(root, "a split other than train/validation/test", bad)
        return np.asarray([mapping[r["split"].lower()] for r in rows])

    def _paths(self, rows: list[dict[str, str]], base: Path, root: Path) -> list[str]:
        paths = [Path(r["path"]).expanduser() for r in rows]
        paths = [p if p.is_absolute() else base / p for p in paths]
        bad = [(i, rows[i]["path"]) for i, p in enumerate(paths) if not rows[i]["path"] or not p.is_file()]
        if bad:
            raise self._bad_rows(root, f"a path that is not a file (relative to {base})", bad)
        return [str(p) for p in paths]

    def _labels(self, rows: list[dict[str, str]], root: Path) -> tuple[np.ndarray, list[str]]:
        labels = [r["label"] for r in rows]
        empty = [(i, v) for i, v in enumerate(labels) if v == ""]
        if empty:
            raise self._bad_rows(root, "an empty label", empty)
        numeric = [bool(_INT.match(v)) for v in labels]
        if any(numeric) and not all(numeric):
            minority = sum(numeric) < len(numeric) / 2
            bad = [(i, v) for i, (v, n) in enumerate(zip(labels, numeric)) if n == minority]
            kind = "a numeric" if minority else "a text"
            raise self._bad_rows(root, f"{kind} label in a column of mixed types (labels must be all integers or all text)", bad)
        if all(numeric):
            labels = [str(int(v)) for v in labels]
            order = [str(v) for v in sorted({int(v) for v in labels})]
        else:
            order = sorted(set(labels))
        return np.asarray(labels, dtype=str), order

    def _flag(self, rows: list[dict[str, str]], column: str, root: Path) -> np.ndarray:
        values = [r[column].lower() for r in rows]
        bad = [(i, rows[i][column]) for i, v in enumerate(values) if v not in _TRUE | _FALSE]
        if bad:
            raise self._bad_rows(root, f"a {column} value that is not true/false", bad)
        return np.asarray([v in _TRUE for v in values])
