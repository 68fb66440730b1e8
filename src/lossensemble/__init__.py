"""lossensemble: deep metric learning with an ensemble of loss functions.

One shared backbone, one embedding head per loss, weighted losses, zero-shot
evaluation on unseen classes, and distance-based compression of the ensemble.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "LossEnsemble", "build_dataset", "load_model"]


def __getattr__(name: str):
    # Lazy imports keep ``import lossensemble`` (and the CLI's --help) fast.
    if name == "build_dataset":
        from lossensemble.data import build_dataset

        return build_dataset
    if name == "LossEnsemble":
        from lossensemble.models.loss_ensemble import LossEnsemble

        return LossEnsemble
    if name == "load_model":
        from lossensemble.inference.model import load_model

        return load_model
    raise AttributeError(f"module 'lossensemble' has no attribute {name!r}")
