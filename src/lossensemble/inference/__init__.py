"""Inference: export a trained run, load it with one call, index image folders and search them.

* :func:`export_run` / :func:`export_model`: write a self-contained model folder.
* :func:`load_model` -> :class:`InferenceModel`: embed images (no pickle, checksummed);
  ``InferenceModel.save_pretrained`` / ``from_pretrained`` (Hugging Face convention).
* :func:`export_onnx`: the ONNX graph of a loaded model (needs ``lossensemble[onnx]``).
* :func:`render_card`: the README.md model card of a model description.
* :func:`build_index` / :class:`ImageIndex`: a faiss index folder (flat, hnsw or ivf) and its search.
* :func:`list_images`, :func:`read_paths` / :func:`write_paths`: image listing and the JSON-lines paths files.
* :mod:`lossensemble.inference.server` (needs FastAPI): the HTTP service of ``lossensemble serve``;
  not imported here, so that importing the package never imports FastAPI.

Submodules are imported on first use (:mod:`lossensemble.lazy`), so importing the package is cheap.
"""

from __future__ import annotations

from lossensemble.lazy import lazy_exports

_EXPORTS = {
    "export_model": "export",
    "export_run": "export",
    "EXPORT_FORMATS": "export",
    "export_onnx": "onnx_export",
    "render_card": "model_card",
    "read_spec": "layout",
    "INDEX_TYPES": "index",
    "ImageIndex": "index",
    "build_index": "index",
    "list_images": "listing",
    "read_paths": "listing",
    "write_paths": "listing",
    "EmbeddedFiles": "model",
    "InferenceModel": "model",
    "load_model": "model",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
