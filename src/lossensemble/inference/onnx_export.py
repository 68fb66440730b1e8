"""ONNX export of an :class:`InferenceModel`: normalised images (B, 3, H, W) -> L2-normalised embeddings (B, D).

torch.onnx does the export: the dynamo exporter first (``torch.export`` + onnxscript),
the TorchScript exporter (``dynamo=False``) if that fails. Written here: the choice of
inputs/outputs (the graph starts after preprocessing, which stays in PIL/torchvision:
resize, crop, greyscale, normalise, as the model card and the ONNX metadata say), the
metadata a user needs to preprocess (``image_size``, ``mean``, ``std``, ``data_kind``,
``embedding``, ``output_dim``) and a check with onnxruntime, when installed, that the
graph reproduces PyTorch's embeddings at batch sizes 1 and 3 (max abs diff < 1e-4).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings
from typing import Any

import torch

from lossensemble.errors import UserError

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "OPSET", "export_onnx", "onnx_metadata"]

INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
OPSET = 18
TOLERANCE = 1e-4
_INSTALL = "pip install 'lossensemble[onnx]'"


def onnx_metadata(spec: dict[str, Any]) -> dict[str, str]:
    """The ``metadata_props`` of the graph: how to preprocess and what comes out (JSON values as strings)."""
    norm = spec.get("normalisation") or {}
    size = int(spec["image_size"])
    return {
        "lossensemble_format": "lossensemble-onnx-embedding",
        "embedding": str(spec["embedding"]),
        "output_dim": str(spec["output_dim"]),
        "distance": "cosine (outputs are L2-normalised)",
        "input": json.dumps({"name": INPUT_NAME, "shape": ["batch", 3, size, size], "dtype": "float32"}),
        "image_size": str(size),
        "data_kind": str(spec["data_kind"]),
        "mean": json.dumps(norm.get("mean")),
        "std": json.dumps(norm.get("std")),
        "interpolation": str(norm.get("interpolation", "bilinear")),
        "crop_pct": str(norm.get("crop_pct", 0.875)),
        "backbone": str(spec["backbone"]),
    }


def _dynamo(model: torch.nn.Module, example: torch.Tensor):
    from torch.export import Dim

    program = torch.onnx.export(
        model, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_shapes={"images": {0: Dim("batch", min=1, max=65536)}}, opset_version=OPSET,
        optimize=True, verbose=False, external_data=False,
    )
    return program.model_proto


def _torchscript(model: torch.nn.Module, example: torch.Tensor):
    import onnx

    buf = io.BytesIO()
    torch.onnx.export(model, (example,), buf, dynamo=False, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                      dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, opset_version=17)
    return onnx.load_from_string(buf.getvalue())


def check_onnx(data: bytes, model: torch.nn.Module, size: int) -> float | None:
    """Max abs difference between onnxruntime and PyTorch at batch sizes 1 and 3; None without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for batch in (1, 3):
        x = torch.randn(batch, 3, size, size, generator=gen)
        with torch.no_grad():
            want = model(x).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        if got.shape != want.shape:
            raise UserError(f"ONNX export gives shape {got.shape} at batch size {batch}, PyTorch {want.shape}")
        worst = max(worst, float(abs(got - want).max()))
    return worst


def export_onnx(model: torch.nn.Module) -> tuple[bytes, dict[str, Any]]:
    """The serialised ONNX graph of an eval-mode :class:`InferenceModel` and the ``onnx`` entry of config.json."""
    try:
        import onnx
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError:
        raise UserError(f"ONNX export needs onnx and onnxscript: {_INSTALL}") from None
    spec = model.spec
    size = int(spec["image_size"])
    if any(p.device.type != "cpu" for p in model.parameters()):
        model = copy.deepcopy(model).cpu()  # the caller's model stays where it is
    model = model.eval()
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    errors = []
    proto = None
    for name, fn in (("dynamo", _dynamo), ("torchscript", _torchscript)):
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                proto = fn(model, example)
            exporter = name
            break
        except Exception as exc:  # an exporter that cannot trace this model: try the next one
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            errors.append(f"{name}: {first[:200]}")
    if proto is None:
        raise UserError("ONNX export failed (" + "; ".join(errors) + ")")
    meta = onnx_metadata(spec)
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "lossensemble"
    data = proto.SerializeToString()
    diff = check_onnx(data, model, size)
    if diff is not None and diff > TOLERANCE:
        raise UserError(f"the ONNX graph ({exporter} exporter) differs from PyTorch by {diff:.2g} (> {TOLERANCE}); "
                        "not written")
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    info = {"file": "model.onnx", "input": INPUT_NAME, "output": OUTPUT_NAME,
            "input_shape": ["batch", 3, size, size], "output_shape": ["batch", int(spec["output_dim"])],
            "exporter": exporter, "opset": opset, "onnx_version": onnx.__version__,
            "max_abs_diff_vs_torch": diff}
    return data, info
