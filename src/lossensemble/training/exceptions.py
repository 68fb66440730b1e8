"""The errors a training run raises (re-exported by :mod:`lossensemble.training`)."""

from __future__ import annotations

from pathlib import Path

from lossensemble.errors import LossEnsembleError, UserError

__all__ = ["TrainingDiverged", "TrainingInterrupted", "RunExists", "NothingToResume"]


class TrainingDiverged(UserError):
    """A loss became NaN/inf; the message says which checkpoint (if any) is kept."""


class TrainingInterrupted(LossEnsembleError):
    """SIGINT/SIGTERM arrived; a checkpoint was saved in ``run_dir`` and the run can be resumed."""

    def __init__(self, message: str, run_dir: Path) -> None:
        super().__init__(message)
        self.run_dir = run_dir


class RunExists(UserError):
    """The output folder already holds a run (resume it with ``resume=True`` or choose another folder)."""


class NothingToResume(UserError):
    """``resume=True`` but the folder holds no checkpoint."""
