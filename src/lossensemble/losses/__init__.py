"""Metric-learning losses by name, their weighting, and the head-diversity regulariser.

* :data:`LOSSES`, :func:`register_loss`, :func:`available_losses`, :func:`build_loss`:
  the registry of :class:`MetricLoss` modules (``lossensemble.losses.pml`` wraps
  pytorch-metric-learning; ``lossensemble.losses.handwritten`` holds the rest); any other
  pml loss by name as ``pml:<ClassName>`` (``lossensemble.losses.pml_named``).
* :func:`build_loss_entry`: one ``losses:`` entry of a config (name, options, pml miner, shared head).
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
)
from lossensemble.losses import handwritten as _handwritten  # noqa: F401  (registers losses)
from lossensemble.losses import pml as _pml  # noqa: F401  (registers losses)
from lossensemble.losses.entries import build_loss_entries, build_loss_entry, loss_entry, shared_heads, validate_losses
from lossensemble.losses.pml_named import build_miner, pml_loss_names, pml_miner_names
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
    "loss_entry",
    "build_loss_entry",
    "build_loss_entries",
    "shared_heads",
    "build_miner",
    "pml_loss_names",
    "pml_miner_names",
    "diversity_penalty",
    "LossWeighting",
    "WEIGHTINGS",
    "register_weighting",
    "build_weighting",
    "OBJECTIVES",
    "distance_matching_loss",
]
