"""Embedding images with an exported model's ONNX graph under onnxruntime: no torch on the query path.

``lossensemble search`` is one process per query, and importing torch alone costs about
1.2 s of CPU, several times a whole one-image search. When an index's model copy holds
``model.onnx`` (``export --format onnx``) and onnxruntime is installed, the index embeds
queries here instead: Pillow + numpy preprocessing (:mod:`lossensemble.preprocess`, equal
to the training-time evaluation transform), then the graph, whose outputs match
PyTorch's to about 1e-7 (checked at export time, refused above 1e-4).

Written here: the glue. onnxruntime runs the graph; nothing is computed by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lossensemble.errors import UserError
from lossensemble.preprocess import Normalisation, SafeImageReader, eval_array, to_rgb

__all__ = ["OnnxEmbedder", "onnxruntime_available"]


def onnxruntime_available() -> bool:
    """Whether onnxruntime can be imported (the ``[onnx]`` extra)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class OnnxEmbedder:
    """The embedding of an exported model, computed by onnxruntime from its ``model.onnx``.

    Offers what search and serve use of an :class:`~lossensemble.inference.InferenceModel`:
    ``spec`` (config.json), ``embedding``, ``output_dim`` and :meth:`embed_images`.
    ``graph`` is the serialised ONNX model (its checksum is checked by the caller).
    """

    backend = "onnxruntime"

    def __init__(self, spec: dict[str, Any], graph: bytes, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(graph, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for damaged graphs
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"model.onnx: cannot be loaded by onnxruntime ({first[:200]})") from None
        self.spec = spec
        self.embedding = str(spec["embedding"])
        self.output_dim = int(spec["output_dim"])
        self.image_size = int(spec["image_size"])
        self.data_kind = str(spec["data_kind"])
        self.normalisation = Normalisation.from_dict(spec.get("normalisation"))  # as exported (ImageNet's if absent)
        self._input = self.session.get_inputs()[0].name

    def embed_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Embed preprocessed images (B, 3, H, W) float32; returns float32 (B, D), L2-normalised."""
        out = self.session.run(None, {self._input: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float32)

    def embed_images(self, images: Sequence[str | Path | Any], batch_size: int = 64,
                     progress: bool = False) -> np.ndarray:
        """Embed image files and/or PIL images, in order; an unreadable file is a :class:`UserError`."""
        from PIL import Image

        if batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {batch_size}")
        reader = SafeImageReader()
        arrays = []
        for item in images:
            img = to_rgb(item) if isinstance(item, Image.Image) else reader.read(str(item))
            if img is None:
                raise UserError(f"cannot read image {item}")
            arrays.append(eval_array(img, self.data_kind, self.image_size, self.normalisation))
        out = np.zeros((len(arrays), self.output_dim), np.float32)
        for start in range(0, len(arrays), batch_size):
            out[start:start + batch_size] = self.embed_arrays(np.stack(arrays[start:start + batch_size]))
        return out
