"""Experiment tracking: the loggers of ``train.loggers`` (csv, tensorboard, mlflow, or your own).

``csv`` writes history.csv (the default), ``tensorboard`` event files in RUN/tensorboard,
``mlflow`` a run in a local MLflow store (RUN/mlruns) or at ``options.tracking_uri``.
A logger of your own subclasses :class:`TrainingLogger` and is registered with
:func:`register_logger`; see :mod:`.base` for the hooks and the scalar tags.
"""

from lossensemble.training.loggers.base import (
    LOGGERS,
    LoggerContext,
    RunLoggers,
    TrainingLogger,
    build_loggers,
    epoch_extras,
    evaluate_keeping,
    register_logger,
    row_scalars,
    step_scalars,
)
from lossensemble.training.loggers.builtin import CsvLogger, MlflowLogger, TensorBoardLogger, flatten_params, mlflow_key

__all__ = [
    "LOGGERS",
    "CsvLogger",
    "LoggerContext",
    "MlflowLogger",
    "RunLoggers",
    "TensorBoardLogger",
    "TrainingLogger",
    "build_loggers",
    "epoch_extras",
    "evaluate_keeping",
    "flatten_params",
    "mlflow_key",
    "register_logger",
    "row_scalars",
    "step_scalars",
]
