"""Metric-learning losses by name, their weighting, and the head-diversity regulariser.

* :data:`LOSSES`, :func:`register_loss`, :func:`available_losses`, :func:`build_loss`:
  the registry of :class:`MetricLoss` modules (``lossensemble.losses.pml`` wraps
  pytorch-metric-learning; ``lossensemble.losses.handwritten`` holds the rest).
* :mod:`lossensemble.losses.weighting`: :func:`build_weighting` and the schemes.
* :func:`diversity_penalty`: the WEDL regulariser between heads.
* :mod:`lossensemble.losses.distance_matching`: the compressor's distance-matching objectives.
"""

from lossensemble.losses.base import (
    LOSSES,
    MetricLoss,
    available_losses,
    build_loss,
    loss_options,
    register_loss,
    validate_losses,
)
from lossensemble.losses import handwritten as _handwritten  # noqa: F401  (registers losses)
from lossensemble.losses import pml as _pml  # noqa: F401  (registers losses)
from lossensemble.losses.diversity import diversity_penalty
from lossensemble.losses.distance_matching import OBJECTIVES, distance_matching_loss
from lossensemble.losses.weighting import WEIGHTINGS, LossWeighting, build_weighting, register_weighting

__all__ = [
    "LOSSES",
    "MetricLoss",
    "register_loss",
    "available_losses",
    "build_loss",
    "loss_options",
    "validate_losses",
    "diversity_penalty",
    "LossWeighting",
    "WEIGHTINGS",
    "register_weighting",
    "build_weighting",
    "OBJECTIVES",
    "distance_matching_loss",
]
