"""The run folder: where a training run keeps its config, checkpoints, history and results.

Layout::

    RUN/
      config.yaml            resolved configuration
      checkpoints/last.safetensors   latest state (resume point)
      checkpoints/best.safetensors   best state by the selection metric
      history.csv            one row per epoch: raw losses, weights, scales, metrics
      metrics.json           final test metrics keyed by embedding name
      summary.json           timings, counts, selection, versions
      train.log              the log
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossensemble.errors import UserError
from lossensemble.io import atomic_write_text, read_json, write_json

__all__ = ["RunPaths", "check_writable", "write_history", "read_history", "write_json", "read_json"]


@dataclass(frozen=True)
class RunPaths:
    """Paths inside a run folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.safetensors"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.safetensors"

    @property
    def history(self) -> Path:
        return self.root / "history.csv"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    def is_finished(self) -> bool:
        return self.metrics.is_file() and self.summary.is_file()


def check_writable(folder: Path) -> None:
    """Fail early (before any training) when ``folder`` cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {folder}: {exc.strerror or exc}") from None
    probe = folder / f".write-test-{os.getpid()}"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"\0" * 65536)  # a full disk fails here, not after an hour of training
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise UserError(f"output folder {folder} is not writable: {exc.strerror or exc}") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


def write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write per-epoch rows as CSV (columns: the union of keys, in first-seen order)."""
    fields: list[str] = []
    for row in rows:
        for key in row:
            if key not in fields:
                fields.append(key)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def read_history(path: Path) -> list[dict[str, Any]]:
    """Read a history.csv back (numbers as floats, empty cells left out)."""
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out: dict[str, Any] = {}
            for k, v in row.items():
                if v in ("", None):
                    continue
                try:
                    out[k] = float(v)
                except ValueError:
                    out[k] = v
            rows.append(out)
    return rows
