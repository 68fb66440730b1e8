"""Experiment tracking's base: the logger interface, its registry, the tags, and the run's loggers together.

A training run hands its values to every configured logger: each training step's
raw losses, weights and scales; each epoch's history row (the epoch means, the
learning rate and the validation/test metrics, exactly what ``history.csv`` holds)
plus every parameter group's learning rate and the epoch's timing; at the end the
final test metrics, the numbers of ``summary.json`` and the test embeddings. The
values are the trainer's own (nothing is recomputed for logging); only rank 0 logs.

Scalar tags are shared by all trackers: ``loss/raw/<loss>``, ``loss/total``,
``weight/<loss>``, ``scale/<loss>`` per step; ``epoch_mean/loss/raw/<loss>`` (etc., the
epoch means), ``lr/<group>``, ``metrics/val|test/<embedding>/<metric>`` and
``time/...`` per epoch (at the epoch's last step); ``final/test/...`` and
``summary/...`` once. :func:`row_scalars` maps a history row to its tags.

A logger of your own: subclass :class:`TrainingLogger` (its keyword-only
constructor arguments are its ``options``) and register it with
:func:`register_logger`, then name it in ``train.loggers``.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lossensemble.errors import UserError
from lossensemble.registry import Registry, check_options

__all__ = ["LOGGERS", "LoggerContext", "TrainingLogger", "RunLoggers", "register_logger", "build_loggers",
           "step_scalars", "row_scalars", "epoch_extras", "evaluate_keeping"]

log = logging.getLogger("lossensemble.training")

#: Registered loggers by name: what ``train.loggers`` may name.
LOGGERS: Registry[type["TrainingLogger"]] = Registry("logger", key="train.loggers")


@dataclass(frozen=True)
class LoggerContext:
    """What a logger learns when a run starts (or resumes) logging."""

    run_dir: Path  # the run folder (absolute)
    run_name: str  # the run folder's name
    config: dict[str, Any]  # the resolved config as plain data
    resume: bool  # continuing an earlier run of this folder
    global_step: int  # training steps already done (0 for a new run)


class TrainingLogger:
    """Base class of a logger: every hook is a no-op, so a subclass overrides only what it needs.

    ``requires`` names the package the logger imports and the ``lossensemble`` extra
    that installs it; it is checked when the trainer is built, before training starts.
    ``wants_embeddings`` asks for the final test embeddings (:meth:`log_embedding`).
    """

    name: str = ""
    requires: tuple[str, str] | None = None
    wants_embeddings: bool = False

    def open(self, ctx: LoggerContext) -> None:
        """Start logging a run (called once, before the first step)."""

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Scalars by tag at a global training step."""

    def log_history(self, history: Sequence[Mapping[str, Any]]) -> None:
        """All epoch rows so far (what history.csv holds), after each epoch."""

    def log_final(self, metrics: Mapping[str, Mapping[str, float]], summary: Mapping[str, Any]) -> None:
        """The final test metrics (metrics.json) and the run summary (summary.json)."""

    def log_embedding(self, step: int, name: str, vectors: np.ndarray, labels: np.ndarray) -> None:
        """One final test embedding (rows aligned with ``labels``); only called when ``wants_embeddings``."""

    def close(self, status: str) -> None:
        """Stop logging; ``status`` is ``finished``, ``failed`` or ``interrupted``."""


def register_logger(name: str) -> Callable[[type[TrainingLogger]], type[TrainingLogger]]:
    """Class decorator registering a :class:`TrainingLogger` subclass under ``name`` (for ``train.loggers``)."""
    return LOGGERS.class_decorator(name, TrainingLogger)


# --------------------------------------------------------------------------------------
# tags
# --------------------------------------------------------------------------------------


def _train_tag(key: str) -> str:
    """The tag of a training value (``loss_triplet`` -> ``loss/raw/triplet``)."""
    if key == "loss_total":
        return "loss/total"
    for prefix, tag in (("loss_", "loss/raw/"), ("weight_", "weight/"), ("scale_", "scale/")):
        if key.startswith(prefix):
            return tag + key[len(prefix):]
    return f"train/{key}"


def step_scalars(values: Mapping[str, float]) -> dict[str, float]:
    """The tags of one training step's values (:meth:`Trainer.train_step`'s result)."""
    return {_train_tag(k): float(v) for k, v in values.items()}


def row_scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """The tags of one history row (a history.csv line); ``step`` is the x axis, not a scalar."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if key == "step" or not isinstance(value, (int, float)):
            continue
        if key == "epoch":
            tag = "epoch"
        elif key.startswith(("test/", "val/")):
            tag = f"metrics/{key}"
        elif key.startswith("lr_"):
            tag = f"lr/{key[3:]}"
        else:
            tag = f"epoch_mean/{_train_tag(key)}"
        out[tag] = float(value)
    return out


def epoch_extras(optimizer, epoch_seconds: float, steps: int, train_seconds: float) -> dict[str, float]:
    """Scalars of an epoch that history.csv does not hold: every group's learning rate and the timing."""
    out = {f"lr/{g.get('name', i)}": float(g["lr"]) for i, g in enumerate(optimizer.param_groups)}
    out["time/epoch_seconds"] = epoch_seconds
    out["time/train_seconds"] = train_seconds
    if steps > 0:
        out["time/seconds_per_step"] = epoch_seconds / steps
    return out


def final_scalars(metrics: Mapping[str, Mapping[str, float]], summary: Mapping[str, Any]) -> dict[str, float]:
    """``final/test/<embedding>/<metric>`` and the numbers of summary.json as ``summary/<key>``."""
    out = {f"final/test/{emb}/{k}": float(v) for emb, m in metrics.items() for k, v in m.items()}
    out.update({f"summary/{k}": float(v) for k, v in summary.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return out


# --------------------------------------------------------------------------------------
# the run's loggers together
# --------------------------------------------------------------------------------------


class RunLoggers:
    """The configured loggers of one run: each call goes to every opened logger (rank 0 only).

    ``close`` closes every logger that was opened, even when one of them fails, so a
    run that ends by success, error or interrupt leaves no tracker half-open.
    """

    def __init__(self, loggers: Sequence[TrainingLogger], enabled: bool = True) -> None:
        self.loggers = list(loggers) if enabled else []
        self._open: list[TrainingLogger] = []

    @property
    def wants_embeddings(self) -> bool:
        """Whether a logger takes the final test embeddings (worth keeping them after evaluation)."""
        return any(lg.wants_embeddings for lg in self.loggers)

    def open(self, ctx: LoggerContext) -> None:
        """Open every logger in order (those opened before a failing one are still closed by :meth:`close`)."""
        for lg in self.loggers:
            lg.open(ctx)
            self._open.append(lg)

    def log_step(self, step: int, values: Mapping[str, float]) -> None:
        """One training step's values (raw losses, total, weights, scales, ...)."""
        if self._open:
            scalars = step_scalars(values)
            for lg in self._open:
                lg.log_scalars(step, scalars)

    def log_epoch(self, history: Sequence[Mapping[str, Any]], extras: Mapping[str, float]) -> None:
        """The epoch just finished: its history row (the last of ``history``) and ``extras``."""
        if self._open:
            row = history[-1]
            scalars = {**row_scalars(row), **extras}
            for lg in self._open:
                lg.log_scalars(int(row["step"]), scalars)
                lg.log_history(history)

    def log_final(self, step: int, metrics: Mapping[str, Mapping[str, float]], summary: Mapping[str, Any],
                  embeddings: tuple[dict[str, np.ndarray], np.ndarray] | None) -> None:
        """The final test metrics, the summary and (when kept) the test embeddings with their labels."""
        scalars = final_scalars(metrics, summary)
        for lg in self._open:
            lg.log_scalars(step, scalars)
            lg.log_final(metrics, summary)
            if lg.wants_embeddings and embeddings is not None:
                vectors, labels = embeddings
                for name, emb in vectors.items():
                    lg.log_embedding(step, name, emb, labels)

    def close(self, status: str) -> None:
        """Close every opened logger; a failure to close is raised (after all were closed) only on success,
        otherwise logged, so the error or interrupt that ended the run stays the one raised."""
        error: BaseException | None = None
        while self._open:
            lg = self._open.pop(0)
            try:
                lg.close(status)
            except Exception as exc:  # noqa: BLE001 - close the others first
                log.warning("logger %r did not close cleanly: %s", lg.name, exc)
                error = error or exc
        if error is not None and status == "finished":
            raise error


def build_loggers(entries, enabled: bool = True) -> RunLoggers:
    """The loggers of ``train.logger_entries()``: names, options and packages checked (before training)."""
    built = []
    for entry in entries:
        cls = LOGGERS.get_or_raise(entry.name)
        options = check_options(f"logger {entry.name!r}", cls, entry.options)
        if cls.requires is not None and importlib.util.find_spec(cls.requires[0]) is None:
            raise UserError(f"logger {entry.name!r} needs the {cls.requires[0]} package: "
                            f"pip install 'lossensemble[{cls.requires[1]}]'")
        built.append(cls(**options))
    return RunLoggers(built, enabled)


def evaluate_keeping(embed_fn, dataset, *, device, progress: bool, k, distance: str, nmi: bool, batch_size: int,
                     num_workers: int, max_items: int | None, seed: int):
    """:func:`~lossensemble.evaluation.evaluate_model` that also returns ``(embeddings, labels)`` it scored."""
    from lossensemble.evaluation.evaluate import query_gallery_masks, score_embeddings
    from lossensemble.evaluation.extract import extract_embeddings

    embeddings, labels, kept = extract_embeddings(embed_fn, dataset, batch_size=batch_size, num_workers=num_workers,
                                                  device=device, progress=progress, max_items=max_items, seed=seed)
    metrics = score_embeddings(embeddings, labels, k=k, distance=distance, nmi=nmi,
                               **query_gallery_masks(dataset, kept))
    return metrics, (embeddings, labels)
