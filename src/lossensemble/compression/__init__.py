"""Distance-based compression of the ensemble, export of inference models, and image retrieval.

Our own code (DESIGN.md §1, "Distance-based compression"): the compressor networks
(:func:`build_compressor`), the distance-matching objectives
(:func:`distance_matching_loss`), joint training as the paper does
(:class:`JointCompression`), post-hoc compression of a finished run
(:func:`compress_run`), self-contained inference models (:func:`export_run`,
:func:`load_model`) and a faiss image index (:func:`build_index`, :class:`ImageIndex`).
Heavy submodules are imported on first use.
"""

from __future__ import annotations

from lossensemble.compression.modules import VARIANTS, build_compressor, compressor_input
from lossensemble.compression.objectives import OBJECTIVES, distance_matching_loss

__all__ = [
    "OBJECTIVES",
    "VARIANTS",
    "CompressorTrainer",
    "ImageIndex",
    "InferenceModel",
    "JointCompression",
    "build_compressor",
    "build_index",
    "compress_run",
    "compressor_input",
    "distance_matching_loss",
    "distill_independent",
    "export_run",
    "load_model",
]

_LAZY = {
    "CompressorTrainer": "joint",
    "JointCompression": "joint",
    "compress_run": "posthoc",
    "distill_independent": "posthoc",
    "InferenceModel": "export",
    "export_run": "export",
    "load_model": "export",
    "ImageIndex": "retrieval",
    "build_index": "retrieval",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"lossensemble.compression.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'lossensemble.compression' has no attribute {name!r}")
