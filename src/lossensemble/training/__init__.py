"""Training: the ensemble trainer, run folders and checkpoints."""

from lossensemble.training.trainer import (
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
    build_components,
    evaluate_model,
    resolve_device,
)

__all__ = [
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "build_components",
    "evaluate_model",
    "resolve_device",
]
