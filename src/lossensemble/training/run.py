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

import contextlib
import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossensemble.errors import UserError
from lossensemble.io import atomic_write_text, read_json, remove_stale_temp_files, write_json

try:  # POSIX only; elsewhere the run folder is not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunPaths", "check_writable", "check_run_folder", "run_lock", "clean_temp_files", "merge_metrics",
           "prepare_run_folder",
           "write_history", "read_history", "write_json", "read_json"]


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

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def is_finished(self) -> bool:
        return self.metrics.is_file() and self.summary.is_file()

    def is_run(self) -> bool:
        """Whether the folder looks like a lossensemble run (config.yaml and checkpoints/)."""
        return self.config.is_file() and self.checkpoints.is_dir()


def check_run_folder(paths: RunPaths) -> None:
    """Refuse an existing, non-empty folder that is not a lossensemble run (its files would be overwritten)."""
    root = paths.root
    if root.exists() and not root.is_dir():
        raise UserError(f"output folder {root} is a file, not a folder; choose another output folder")
    if root.is_dir() and not paths.is_run():
        try:
            names = sorted(p.name for p in root.iterdir())
        except OSError as exc:
            raise UserError(f"cannot read output folder {root}: {exc.strerror or exc}") from None
        if names:
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            raise UserError(f"output folder {root} is not empty and is not a lossensemble run ({shown}); "
                            f"choose an empty or new folder")


def prepare_run_folder(paths: RunPaths, cfg: Any = None) -> None:
    """Create the run folder (checked writable, not in use, stale temp files removed); write ``cfg`` if given."""
    check_writable(paths.root)
    with run_lock(paths):
        paths.checkpoints.mkdir(parents=True, exist_ok=True)
        clean_temp_files(paths)
        if cfg is not None:
            from lossensemble.config import save_config

            save_config(cfg, paths.config)


def clean_temp_files(paths: RunPaths) -> None:
    """Delete temporary files left by an interrupted write in the run folder and its checkpoints."""
    remove_stale_temp_files(paths.root)
    remove_stale_temp_files(paths.checkpoints)


@contextlib.contextmanager
def run_lock(paths: RunPaths, enabled: bool = True):
    """Hold an exclusive, non-blocking lock on ``RUN/.lock``; a second writer gets a :class:`UserError`."""
    if not enabled or fcntl is None:
        yield
        return
    paths.root.mkdir(parents=True, exist_ok=True)
    fh = open(paths.lock, "a+b")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError(f"run folder {paths.root} is being written by another process "
                            f"(wait for it to finish or choose another output folder)") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    finally:
        fh.close()


def merge_metrics(paths: RunPaths, test: dict[str, Any], has_compressor: bool) -> dict[str, Any]:
    """``test`` plus the ``compressed`` entry of an existing metrics.json written by post-hoc compression."""
    if has_compressor or "compressed" in test or not (paths.root / "compression.json").is_file():
        return test
    try:
        old = read_json(paths.metrics)
    except UserError:
        return test
    if isinstance(old, dict) and "compressed" in old:
        return {**test, "compressed": old["compressed"]}
    return test


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
