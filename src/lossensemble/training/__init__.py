"""Training: the loop, its objective module, run folders, checkpoints and joint compression.

:class:`Trainer` trains a config into a run folder; :func:`load_run` rebuilds a
trained model from one.
"""

from lossensemble.training.loading import LoadedRun, load_run
from lossensemble.training.trainer import (
    NothingToResume,
    RunExists,
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
)

__all__ = [
    "LoadedRun",
    "NothingToResume",
    "RunExists",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "load_run",
]
