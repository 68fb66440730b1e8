"""Inference: export a trained run, load it with one call, index image folders and search them.

* :func:`export_run` / :func:`export_model`: write a self-contained model folder.
* :func:`load_model` -> :class:`InferenceModel`: embed images (no pickle, checksummed).
* :func:`build_index` / :class:`ImageIndex`: a faiss index folder and its search.
"""

from lossensemble.inference.export import export_model, export_run
from lossensemble.inference.index import ImageIndex, build_index, list_images
from lossensemble.inference.model import EmbeddedFiles, InferenceModel, load_model

__all__ = [
    "EmbeddedFiles",
    "ImageIndex",
    "InferenceModel",
    "build_index",
    "export_model",
    "export_run",
    "list_images",
    "load_model",
]
