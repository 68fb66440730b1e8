"""Users' own data: an image folder (one sub-folder per class) and an open-metric-learning style CSV."""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lossensemble.errors import DataError

from .dedup import check_duplicates
from .files import FileDatasetSource
from .registry import DatasetNotFound, register_dataset
from .splits import Catalog

__all__ = ["ImageFolder", "CSVDataset", "IMAGE_EXTENSIONS"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)


class _UserDataSource(FileDatasetSource):
    """A dataset with no default location: ``root`` must be given.

    Its catalogue is checked for duplicates (:func:`~lossensemble.data.dedup.check_duplicates`):
    an image in both train and test, or under two labels, is an error; exact duplicates
    are dropped, warned about and counted in the built split's ``data_issues``.
    """

    user_data = True

    def dataset_root(self) -> Path:
        if self.root is None:
            raise DatasetNotFound(f"{self.name}: needs data.root=... (root=... in Python; {self.how_to_get})")
        return self.root

    def location(self) -> str:
        return str(self.root) if self.root is not None else "(pass data.root=...)"

    def check_layout(self) -> Path:
        root = self.dataset_root()
        if not root.exists():
            raise DatasetNotFound(f"{self.name}: not found: {root} ({self.how_to_get})")
        return root

    def catalog(self) -> Catalog:
        return check_duplicates(self.read_catalog(self.check_layout()), self.name)


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
        sources: list[str] = []
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
                sources.append(repr(path.relative_to(root).as_posix()))
        if ignored:
            log.info("folder: ignored %d files without an image extension under %s", ignored, root)
        names = [p.name for p in class_dirs]
        train = self._train_classes(names)
        return Catalog(
            classes=np.asarray(classes, dtype=str),
            tags=np.where(np.isin(np.asarray(classes, dtype=str), list(train)), "train", "test"),
            class_order=names,
            paths=paths,
            sources=sources,
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
    or the CSV's folder. Labels are either all integers or all text. The file is UTF-8
    text, with or without the byte-order mark spreadsheets write; errors name the lines.
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
        columns, rows, lines = self._read_rows(root)
        missing = [c for c in self.required_columns if c not in columns]
        if missing:
            raise DataError(f"csv: {root} lacks column(s) {', '.join(missing)} (has: {', '.join(columns) or 'none'})")
        if not rows:
            raise DataError(f"csv: {root} has no rows")
        flags = [c for c in ("is_query", "is_gallery") if c in columns]
        if len(flags) == 1:
            raise DataError(f"csv: {root} has column {flags[0]} but not its partner; give both is_query and is_gallery")

        table = _Table(root, rows, lines)
        tags = self._tags(table)
        paths = self._paths(table, base)
        classes, order = self._labels(table)
        sources = [f"line {line} ({row['path']!r})" for row, line in zip(rows, lines)]
        catalog = Catalog(classes=classes, tags=tags, class_order=order, paths=paths, sources=sources)
        if flags:
            catalog.is_query = self._flag(table, "is_query")
            catalog.is_gallery = self._flag(table, "is_gallery")
        return catalog

    @staticmethod
    def _read_rows(root: Path) -> tuple[list[str], list[dict[str, str]], list[int]]:
        """Column names, rows (column -> stripped value) and each row's first line number in the file."""
        try:
            data = root.read_bytes()
        except OSError as exc:
            raise DataError(f"csv: cannot read {root}: {exc.strerror or exc}") from None
        try:
            text = data.decode("utf-8-sig")  # spreadsheets start UTF-8 files with a byte-order mark
        except UnicodeDecodeError as exc:
            line = exc.object[: exc.start].count(b"\n") + 1  # positions count after the byte-order mark
            raise DataError(
                f"csv: {root}: line {line} is not UTF-8 text (byte {exc.object[exc.start]:#04x}); save the file as UTF-8"
            ) from None
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        records: list[tuple[int, list[str]]] = []  # (last line of the record, fields)
        try:
            for fields in reader:
                records.append((reader.line_num, fields))
        except csv.Error as exc:
            start = records[-1][0] + 1 if records else 1
            hint = " (a quote that is never closed?)" if "end of data" in str(exc) else ""
            raise DataError(f"csv: {root}: line {start}: {exc}{hint}") from None
        header: list[str] | None = None
        rows: list[dict[str, str]] = []
        lines: list[int] = []
        too_long: list[tuple[int, str]] = []
        previous_end = 0
        for end, fields in records:
            first_line, previous_end = previous_end + 1, end
            if not any(f.strip() for f in fields):
                continue  # blank line
            values = [f.strip() for f in fields]
            if header is None:
                header = values
                repeated = sorted({c for c in header if c and header.count(c) > 1})
                if repeated:
                    raise DataError(f"csv: {root}: the header names column(s) {', '.join(repeated)} more than once")
                continue
            if len(values) > len(header) and any(values[len(header):]):
                too_long.append((first_line, ",".join(fields)))
            values += [""] * (len(header) - len(values))
            rows.append(dict(zip(header, values)))
            lines.append(first_line)
        if too_long:
            raise _bad_rows(root, f"more fields than the {len(header or [])} columns of the header", too_long)
        return header or [], rows, lines

    def _tags(self, table: "_Table") -> np.ndarray:
        mapping = {"train": "train", "validation": "test", "test": "test"}
        bad = table.bad("split", lambda v: v.lower() not in mapping)
        if bad:
            raise _bad_rows(table.root, "a split other than train/validation/test", bad)
        return np.asarray([mapping[r["split"].lower()] for r in table.rows])

    def _paths(self, table: "_Table", base: Path) -> list[str]:
        paths = [Path(r["path"]).expanduser() for r in table.rows]
        paths = [p if p.is_absolute() else base / p for p in paths]
        bad = [(line, r["path"]) for line, r, p in zip(table.lines, table.rows, paths) if not r["path"] or not p.is_file()]
        if bad:
            raise _bad_rows(table.root, f"a path that is not a file (relative to {base})", bad)
        return [str(p) for p in paths]

    def _labels(self, table: "_Table") -> tuple[np.ndarray, list[str]]:
        empty = table.bad("label", lambda v: v == "")
        if empty:
            raise _bad_rows(table.root, "an empty label", empty)
        labels = [r["label"] for r in table.rows]
        numeric = [bool(_INT.match(v)) for v in labels]
        if any(numeric) and not all(numeric):
            minority = sum(numeric) < len(numeric) / 2
            bad = table.bad("label", lambda v: bool(_INT.match(v)) == minority)
            kind = "a numeric" if minority else "a text"
            raise _bad_rows(
                table.root, f"{kind} label in a column of mixed types (labels must be all integers or all text)", bad
            )
        if all(numeric):
            labels = [str(int(v)) for v in labels]
            order = [str(v) for v in sorted({int(v) for v in labels})]
        else:
            order = sorted(set(labels))
        return np.asarray(labels, dtype=str), order

    def _flag(self, table: "_Table", column: str) -> np.ndarray:
        bad = table.bad(column, lambda v: v.lower() not in _TRUE | _FALSE)
        if bad:
            raise _bad_rows(table.root, f"a {column} value that is not true/false", bad)
        return np.asarray([r[column].lower() in _TRUE for r in table.rows])


class _Table:
    """The rows of a CSV file with the line each starts on, for messages."""

    def __init__(self, root: Path, rows: list[dict[str, str]], lines: list[int]) -> None:
        self.root, self.rows, self.lines = root, rows, lines

    def bad(self, column: str, wrong: Callable[[str], bool]) -> list[tuple[int, str]]:
        """(line, value) of the rows whose ``column`` value is ``wrong``."""
        return [(line, r[column]) for line, r in zip(self.lines, self.rows) if wrong(r[column])]


def _bad_rows(root: Path, what: str, bad: list[tuple[int, str]]) -> DataError:
    shown = ", ".join(f"line {line} ({value!r})" for line, value in bad[:5])
    return DataError(f"csv: {root}: {len(bad)} rows with {what}: {shown}")
