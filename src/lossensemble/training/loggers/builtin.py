"""The built-in loggers: ``csv`` (history.csv), ``tensorboard`` (RUN/tensorboard) and ``mlflow`` (RUN/mlruns).

TensorBoard's ``SummaryWriter`` and MLflow's ``MlflowClient`` do the writing; they
are imported when a run opens its logger, so neither package is needed unless named.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from lossensemble.errors import UserError
from lossensemble.training.loggers.base import LoggerContext, TrainingLogger, register_logger
from lossensemble.training.run import write_history

__all__ = ["CsvLogger", "TensorBoardLogger", "MlflowLogger", "flatten_params", "mlflow_key"]


@register_logger("csv")
class CsvLogger(TrainingLogger):
    """history.csv in the run folder: one row per epoch, rewritten whole (a resumed run never repeats a row)."""

    def open(self, ctx: LoggerContext) -> None:
        self.path = ctx.run_dir / "history.csv"

    def log_history(self, history: Sequence[Mapping[str, Any]]) -> None:
        write_history(self.path, list(history))


@register_logger("tensorboard")
class TensorBoardLogger(TrainingLogger):
    """TensorBoard event files in RUN/tensorboard (``tensorboard --logdir RUN/tensorboard``).

    Options: ``max_points``: at most this many test items go to the embedding projector
    (a fixed random sample; 0 = no projector). A resumed run purges the events after its
    checkpoint's step, so replayed steps are not shown twice.
    """

    requires = ("tensorboard", "tensorboard")
    wants_embeddings = True

    def __init__(self, *, max_points: int = 2000) -> None:
        if max_points < 0:
            raise UserError(f"logger 'tensorboard': option 'max_points' must be >= 0, got {max_points}")
        self.max_points = max_points
        self.wants_embeddings = max_points > 0  # kept after the final evaluation only when shown
        self.writer = None

    def open(self, ctx: LoggerContext) -> None:
        from torch.utils.tensorboard import SummaryWriter

        purge = ctx.global_step + 1 if ctx.resume else None
        self.writer = SummaryWriter(log_dir=str(ctx.run_dir / "tensorboard"), purge_step=purge)

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, global_step=step)

    def log_embedding(self, step: int, name: str, vectors: np.ndarray, labels: np.ndarray) -> None:
        if self.max_points == 0 or len(vectors) == 0:
            return
        keep = np.arange(len(vectors))
        if len(keep) > self.max_points:
            keep = np.sort(np.random.default_rng(0).choice(len(keep), self.max_points, replace=False))
        self.writer.add_embedding(np.asarray(vectors)[keep], metadata=[str(x) for x in np.asarray(labels)[keep]],
                                  tag=f"test_{name}", global_step=step)

    def close(self, status: str) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def mlflow_key(tag: str) -> str:
    """A tag as an MLflow metric/param key (MLflow allows letters, digits and ``_-. :/``; ``@`` -> ``_at_``)."""
    return re.sub(r"[^/\w.\- :]", "_", tag.replace("@", "_at_"))


def flatten_params(data: Any, prefix: str = "") -> dict[str, str]:
    """A nested config as ``{"data.batch_size": "64", "losses.0.name": "triplet", ...}`` (MLflow params)."""
    if isinstance(data, Mapping):
        items = [(f"{prefix}.{k}" if prefix else str(k), v) for k, v in data.items()]
    elif isinstance(data, (list, tuple)) and any(isinstance(v, (Mapping, list, tuple)) for v in data):
        items = [(f"{prefix}.{i}", v) for i, v in enumerate(data)]
    else:
        return {mlflow_key(prefix): str(data)}
    out: dict[str, str] = {}
    for key, value in items:
        out.update(flatten_params(value, key))
    if not items and prefix:
        out[mlflow_key(prefix)] = str(data)
    return out


@contextlib.contextmanager
def _mlflow_environment(uri: str):
    """The environment MLflow reads while the logger imports it and connects, restored afterwards.

    MLflow 3 opens a local (``file:``) store only with ``MLFLOW_ALLOW_FILE_STORE`` and,
    on its first import, starts usage telemetry (network) unless ``MLFLOW_DISABLE_TELEMETRY``
    is set: both are set here unless the user set them. MLflow caches the store per URI and
    decides telemetry at import, so the process environment is left as it was.
    """
    wanted = {"MLFLOW_DISABLE_TELEMETRY": "true"}
    if urlparse(uri).scheme in ("", "file"):
        wanted["MLFLOW_ALLOW_FILE_STORE"] = "true"
    added = [k for k in wanted if k not in os.environ and not (k == "MLFLOW_DISABLE_TELEMETRY"
                                                                and "DO_NOT_TRACK" in os.environ)]
    os.environ.update({k: wanted[k] for k in added})
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


#: The run tag that ties an MLflow run to its run folder (a resume finds its run by it).
RUN_DIR_TAG = "lossensemble.run_dir"
#: The run tag recording the last step logged: a resume skips the steps it replays.
STEP_TAG = "lossensemble.logged_step"


@register_logger("mlflow")
class MlflowLogger(TrainingLogger):
    """An MLflow run: params = the flattened config, metrics per step, the final metrics; offline by default.

    Options: ``tracking_uri`` (default ``file:`` + RUN/mlruns, a local file store);
    ``experiment`` (experiment name, default ``lossensemble``); ``run_name`` (default
    the run folder's name). Metrics are sent in batches once per epoch and at the end;
    a resumed run continues the same MLflow run without repeating a step.
    """

    requires = ("mlflow", "mlflow")

    def __init__(self, *, tracking_uri: str = "", experiment: str = "lossensemble", run_name: str = "") -> None:
        if not experiment:
            raise UserError("logger 'mlflow': option 'experiment' must not be empty")
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.client = None
        self.run_id: str | None = None
        self._pending: list = []
        self._logged_step = -1

    def open(self, ctx: LoggerContext) -> None:
        uri = self.tracking_uri or "file:" + str((ctx.run_dir / "mlruns").resolve())
        with _mlflow_environment(uri):
            from mlflow.exceptions import MlflowException

            try:
                self._open(ctx, uri)
            except MlflowException as exc:
                raise UserError(f"logger 'mlflow' ({uri}): {' '.join(str(exc.message).split())}") from None

    def _open(self, ctx: LoggerContext, uri: str) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(self.experiment)
        run_dir = str(Path(ctx.run_dir).resolve())
        if ctx.resume:
            found = self.client.search_runs([exp_id], filter_string=f"tags.`{RUN_DIR_TAG}` = '{_quote(run_dir)}'",
                                            max_results=1)
            if found:
                self.run_id = found[0].info.run_id
                self._logged_step = int(found[0].data.tags.get(STEP_TAG, -1))
                self.client.update_run(self.run_id, status="RUNNING")
                return
        run = self.client.create_run(exp_id, run_name=self.run_name or ctx.run_name, tags={RUN_DIR_TAG: run_dir})
        self.run_id = run.info.run_id
        params = [Param(k, v[:6000]) for k, v in flatten_params(ctx.config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        if step <= self._logged_step and not any(t.startswith(("final/", "summary/")) for t in scalars):
            return  # a resumed run replays these steps: they are logged already
        now = int(time.time() * 1000)
        self._pending.extend(Metric(mlflow_key(t), float(v), now, step) for t, v in scalars.items())

    def log_history(self, history: Sequence[Mapping[str, Any]]) -> None:
        self._flush()

    def _flush(self) -> None:
        from mlflow.entities import RunTag

        if self.client is None or not self._pending:
            return
        for i in range(0, len(self._pending), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=self._pending[i:i + 1000])
        self._logged_step = max(self._logged_step, max(m.step for m in self._pending))
        self._pending = []
        self.client.log_batch(self.run_id, tags=[RunTag(STEP_TAG, str(self._logged_step))])

    def close(self, status: str) -> None:
        if self.client is None or self.run_id is None:
            return
        try:
            self._flush()
        finally:
            state = {"finished": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED")
            self.client.set_terminated(self.run_id, status=state)
            self.client = None


def _quote(text: str) -> str:
    """``text`` inside a single-quoted MLflow search string."""
    return text.replace("\\", "\\\\").replace("'", "\\'")
