"""Image files in, row paths out: the listing ``index`` and ``embed`` share, and the paths file format.

A paths file names the image of every row of an embedding matrix or a faiss index,
row i on line i. It is written as **JSON lines** (``*.jsonl``): one JSON string per
line, ASCII only, so a file name holding a newline, a carriage return, a Unicode
line separator or bytes that are not UTF-8 (kept by Python as surrogate escapes)
still takes exactly one line and reads back unchanged. :func:`read_paths` also reads
the one-path-per-line ``paths.txt`` of indexes built before this format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from lossensemble.errors import UserError
from lossensemble.io import atomic_write_text

__all__ = ["IMAGE_EXTENSIONS", "list_images", "write_paths", "read_paths"]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)


def list_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named directly (any extension) or found recursively in folders (image extensions only).

    Paths are absolute (resolved); folder contents are sorted; duplicates are kept
    once, in first-seen order. A path that does not exist is a :class:`UserError`.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            found = [p]
        else:
            raise UserError(f"not found: {p}")
        for f in found:
            f = f.resolve()
            if f not in seen:
                seen.add(f)
                out.append(f)
    return out


def write_paths(path: str | Path, paths: Sequence[str]) -> None:
    """Write ``paths`` as JSON lines (one ASCII JSON string per line), atomically."""
    atomic_write_text(path, "".join(json.dumps(str(p), ensure_ascii=True) + "\n" for p in paths))


def read_paths(path: str | Path) -> list[str]:
    """The row paths of a ``.jsonl`` paths file (or of a legacy one-path-per-line ``.txt`` file).

    Anything unreadable or malformed is a one-line :class:`UserError` naming the file and line.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")  # no newline translation (read_text would turn \r into \n)
    except FileNotFoundError:
        raise UserError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot be read ({exc})") from None
    lines = text.split("\n")  # not splitlines(), which also splits on \r, \x0b, \x1c, \u2028, ...
    if lines[-1] == "":
        lines.pop()
    if path.suffix != ".jsonl":  # legacy paths.txt: one path per line (names holding a newline were left out)
        return lines
    out: list[str] = []
    for number, line in enumerate(lines, 1):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}, line {number}: not a JSON string ({exc.msg})") from None
        if not isinstance(value, str):
            raise UserError(f"{path}, line {number}: expected a JSON string, got {type(value).__name__}")
        out.append(value)
    return out
