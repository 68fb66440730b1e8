"""Models: backbone registry, the shared-backbone ensemble of embedding heads, compressors, the factory,
and :class:`LossEnsemble` (heads + losses + weighting as one module, for your own training loop).

Submodules are imported on first use (:mod:`lossensemble.lazy`), so importing the package is cheap.
"""

from __future__ import annotations

from lossensemble.lazy import lazy_exports

_EXPORTS = {
    "BACKBONES": "backbones",
    "Backbone": "backbones",
    "available_backbones": "backbones",
    "build_backbone": "backbones",
    "freeze_batchnorm": "backbones",
    "load_state_dict_file": "backbones",
    "register_backbone": "backbones",
    "VARIANTS": "compressor",
    "build_compressor": "compressor",
    "compressor_from_meta": "compressor",
    "compressor_input": "compressor",
    "compressor_meta": "compressor",
    "EnsembleModel": "ensemble",
    "build_heads": "ensemble",
    "LossEnsemble": "loss_ensemble",
    "build_model": "ensemble",
    "ensemble_embedding": "ensemble",
    "independent_embedding": "ensemble",
    "attach_compressor": "factory",
    "build_components": "factory",
    "check_components": "factory",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
