"""Models: backbone registry, the shared-backbone ensemble of embedding heads, compressors, the factory."""

from lossensemble.models.backbones import (
    BACKBONES,
    Backbone,
    available_backbones,
    build_backbone,
    freeze_batchnorm,
    load_state_dict_file,
    register_backbone,
)
from lossensemble.models.compressor import (
    VARIANTS,
    build_compressor,
    compressor_from_meta,
    compressor_input,
    compressor_meta,
)
from lossensemble.models.ensemble import EnsembleModel, build_model, ensemble_embedding, independent_embedding
from lossensemble.models.factory import attach_compressor, build_components, check_components

__all__ = [
    "BACKBONES",
    "VARIANTS",
    "attach_compressor",
    "build_components",
    "build_compressor",
    "compressor_from_meta",
    "check_components",
    "compressor_input",
    "compressor_meta",
    "Backbone",
    "EnsembleModel",
    "available_backbones",
    "build_backbone",
    "build_model",
    "ensemble_embedding",
    "independent_embedding",
    "freeze_batchnorm",
    "load_state_dict_file",
    "register_backbone",
]
