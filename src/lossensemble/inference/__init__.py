"""Inference: export a trained run, load it with one call, index image folders and search them.

* :func:`export_run` / :func:`export_model`: write a self-contained model folder.
* :func:`load_model` -> :class:`InferenceModel`: embed images (no pickle, checksummed).
* :func:`build_index` / :class:`ImageIndex`: a faiss index folder (flat, hnsw or ivf) and its search.
* :func:`list_images`, :func:`read_paths` / :func:`write_paths`: image listing and the JSON-lines paths files.
* :mod:`lossensemble.inference.server` (needs FastAPI): the HTTP service of ``lossensemble serve``;
  not imported here, so that importing the package never imports FastAPI.
"""

from lossensemble.inference.export import export_model, export_run
from lossensemble.inference.index import INDEX_TYPES, ImageIndex, build_index
from lossensemble.inference.listing import list_images, read_paths, write_paths
from lossensemble.inference.model import EmbeddedFiles, InferenceModel, load_model

__all__ = [
    "EmbeddedFiles",
    "INDEX_TYPES",
    "ImageIndex",
    "InferenceModel",
    "build_index",
    "export_model",
    "export_run",
    "list_images",
    "load_model",
    "read_paths",
    "write_paths",
]
