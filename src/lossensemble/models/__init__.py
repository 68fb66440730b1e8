"""Models: backbone registry and the shared-backbone ensemble of embedding heads."""

from lossensemble.models.backbones import (
    BACKBONES,
    Backbone,
    available_backbones,
    build_backbone,
    freeze_batchnorm,
    load_state_dict_file,
    register_backbone,
)
from lossensemble.models.ensemble import EnsembleModel, build_model, ensemble_embedding

__all__ = [
    "BACKBONES",
    "Backbone",
    "EnsembleModel",
    "available_backbones",
    "build_backbone",
    "build_model",
    "ensemble_embedding",
    "freeze_batchnorm",
    "load_state_dict_file",
    "register_backbone",
]
