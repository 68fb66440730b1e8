"""Exporting a trained run as a self-contained inference model folder.

Written here because the model layout (backbone + the heads and compressor one
embedding needs) is the library's own; the tensors are stored with safetensors and
the description with JSON, so loading never unpickles anything.

A model folder follows the Hugging Face layout (:mod:`lossensemble.inference.layout`):

* ``model.safetensors``: only the tensors the chosen embedding needs, named as in
  :class:`InferenceModel` (``backbone.*``, ``heads.<name>.*``, ``compressor.*``);
  e.g. ``compressed`` with the ``direct`` variant = backbone + one linear layer,
  ``heads.<name>`` = backbone + that head, ``ensemble`` = backbone + every head.
  Its metadata holds the checksum of the description's architecture fields.
* ``config.json``: format and version, lossensemble version, ``embedding`` (which
  one), ``output_dim``, ``distance`` ("cosine": outputs are L2-normalised),
  ``backbone``, ``feature_dim``, ``head_names`` (all heads of the run), ``heads``
  (the heads stored), ``embedding_dim`` (one head's d), ``weights`` (loss weight of
  every head, used by the ensemble), ``compressor`` (variant, in_dim, dim, hidden,
  objective, or null), ``image_size``, ``data_kind`` ("photo"/"glyph": which eval
  transform), ``normalisation`` (mean/std), ``source`` (run and checkpoint),
  ``training`` (dataset and its options, losses, epochs), ``metrics`` (the run's
  test metrics), ``license``, ``onnx`` (with ``--format onnx``), ``tensors_sha256``
  (checksum of model.safetensors) and ``parameters``.
* ``README.md``: the model card (:mod:`lossensemble.inference.model_card`).
* ``model.onnx`` (``format="onnx"``): the same embedding as an ONNX graph,
  normalised images (B, 3, H, W) -> L2-normalised embeddings (B, D), dynamic batch
  (:mod:`lossensemble.inference.onnx_export`).

Folders exported before config.json hold ``model.json`` (format version 1) and still load.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import torch

from lossensemble.errors import UserError
from lossensemble.inference.layout import select_heads, write_folder
from lossensemble.inference.model import InferenceModel
from lossensemble.preprocess import IMAGENET

__all__ = ["EXPORT_FORMATS", "export_model", "export_run"]

#: ``safetensors``: the model folder; ``onnx``: the model folder plus model.onnx.
EXPORT_FORMATS = ("safetensors", "onnx")


def _exported_branches(model, heads: Sequence[str]) -> list[list[str]]:
    """``[[head, backbone branch], ...]`` for the exported ``heads`` of a branched model, in the order the
    features hold the branches (every branch when the embedding reads the backbone features, as the
    direct compressor does); empty for a shared backbone. A list, so the checksum covers the order."""
    if not model.branch_of:
        return []
    if not heads:  # the direct compressor reads the whole feature vector: all branches
        return [[b, b] for b in model.backbone.branch_names]
    return [[h, model.branch_of[h]] for h in heads]


def export_model(
    model,
    weights: torch.Tensor | Sequence[float],
    out_dir: str | Path,
    *,
    embedding: str,
    image_size: int,
    data_kind: str,
    backbone_name: str,
    compressor_meta: dict | None = None,
    source: dict | None = None,
    format: str = "safetensors",
    training: dict | None = None,
    metrics: dict | None = None,
    license: str = "other",
) -> Path:
    """Write the inference model of one embedding of an :class:`EnsembleModel`; returns the folder.

    Every file is written atomically; config.json last, so a folder with a
    config.json always has its matching tensors. ``format="onnx"`` adds model.onnx,
    checked against PyTorch with onnxruntime when that is installed. ``training``,
    ``metrics`` (the run's metrics.json) and ``license`` (a Hub license id) go into
    config.json and the model card.
    """
    from lossensemble import __version__

    if data_kind not in ("photo", "glyph"):
        raise UserError(f"data kind must be 'photo' or 'glyph', got {data_kind!r}")
    if format not in EXPORT_FORMATS:
        raise UserError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
    if not isinstance(license, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}", license):
        raise UserError(f"--license must be a license id such as mit, apache-2.0 or other, got {license!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: exists and is not a folder")
    head_names = list(model.head_names)
    if model.compressor is None:
        compressor_meta = None
    heads = select_heads(embedding, head_names, compressor_meta)
    w = torch.as_tensor(weights, dtype=torch.float32).detach().cpu()
    state = model.state_dict()
    branches = _exported_branches(model, heads)
    kept = {b for _, b in branches}
    dropped = tuple(f"backbone.branches.{b}." for b in getattr(model.backbone, "branch_names", ()) if b not in kept)
    tensors = {k: v for k, v in state.items() if k.startswith("backbone.") and not k.startswith(dropped)}
    for name in heads:
        tensors.update({k: v for k, v in state.items() if k.startswith(f"heads.{name}.")})
    if embedding == "compressed":
        tensors.update({k: v for k, v in state.items() if k.startswith("compressor.")})
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    d = int(model.embedding_dim)
    output_dim = {"ensemble": d * len(head_names)}.get(embedding, d)
    if embedding == "compressed":
        output_dim = int(compressor_meta["dim"])
    spec: dict[str, Any] = {
        "lossensemble_version": __version__,
        "embedding": embedding,
        "output_dim": output_dim,
        "distance": "cosine",
        "backbone": backbone_name,
        "feature_dim": int(model.backbone.branch_dim * len(kept) if branches else model.backbone.feature_dim),
        # model.branch_at > 0: [head, backbone branch] pairs of the exported heads (only those branches are
        # exported; the features hold them in the order they first appear)
        **({"branch_at": int(model.backbone.branch_at), "branches": branches} if branches else {}),
        "head_names": head_names,
        "heads": heads,
        "embedding_dim": d,
        "weights": dict(zip(head_names, w.tolist())),
        "compressor": dict(compressor_meta) if embedding == "compressed" else None,
        "image_size": int(image_size),
        "data_kind": data_kind,
        # the backbone's (a timm model's own data config; ImageNet's otherwise): the query path repeats it
        "normalisation": getattr(model.backbone, "normalisation", IMAGENET).to_dict(),
        "source": source or {},
        "training": training or {},
        "metrics": metrics or {},
        "license": license,
        "parameters": int(sum(v.numel() for k, v in tensors.items() if v.is_floating_point()
                              and "running_" not in k)),
    }
    onnx_bytes = None
    if format == "onnx":
        from lossensemble.inference.onnx_export import export_onnx

        inference = InferenceModel({**spec, "tensors_sha256": "0" * 64})
        inference.load_state_dict(tensors, strict=True)
        onnx_bytes, spec["onnx"] = export_onnx(inference.eval())
    return write_folder(out, spec, tensors, onnx_bytes)


def _training_info(cfg) -> dict[str, Any]:
    """What the model card says about training: dataset, its scalar options, losses, epochs."""
    options = {k: v for k, v in dict(cfg.data.options or {}).items()
               if isinstance(v, (int, float, str)) and not isinstance(v, bool) and k != "progress"}
    return {"dataset": cfg.data.name, "options": options, "losses": [loss.name for loss in cfg.losses],
            "epochs": int(cfg.train.epochs), "pretrained_backbone": bool(cfg.model.pretrained)}


def _run_metrics(run_dir: str | Path) -> dict[str, Any]:
    """The run's metrics.json (``{embedding: {metric: value}}``, finite numbers only), or {}."""
    import math

    from lossensemble.io import read_json

    path = Path(run_dir) / "metrics.json"
    try:
        data = read_json(path) if path.is_file() else {}
    except UserError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): {str(m): float(x) for m, x in v.items()
                     if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)}
            for k, v in data.items() if isinstance(v, dict)}


def export_run(run_dir: str | Path, out_dir: str | Path, *, embedding: str | None = None,
               checkpoint: str | None = None, format: str = "safetensors", license: str = "other") -> Path:
    """Export one embedding of a trained run (see :func:`export_model`).

    ``checkpoint``: "last", "best" or "compressed" (the post-hoc compressed
    checkpoint); default "compressed" when ``lossensemble compress`` wrote one, else
    "last". ``embedding``: default "compressed" when that checkpoint has a
    compressor, else "ensemble". ``format``: "safetensors" or "onnx" (adds model.onnx).
    """
    from lossensemble.data import get_source
    from lossensemble.training.loading import compressed_checkpoint_path, load_run

    if format not in EXPORT_FORMATS:
        raise UserError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
    compressed = compressed_checkpoint_path(run_dir)
    if checkpoint is None:
        checkpoint = "compressed" if compressed.is_file() else "last"
    if checkpoint not in ("last", "best", "compressed"):
        raise UserError(f"--checkpoint must be last, best or compressed, got {checkpoint!r}")
    if checkpoint == "compressed" and not compressed.is_file():
        raise UserError(f"{compressed} not found: run 'lossensemble compress {run_dir}' first")
    loaded = load_run(run_dir, checkpoint=str(compressed) if checkpoint == "compressed" else checkpoint,
                      device="cpu")
    model = loaded.model
    meta = loaded.state.get("compressor")
    if embedding is None:
        embedding = "compressed" if model.compressor is not None else "ensemble"
    cfg = loaded.cfg
    return export_model(
        model, loaded.weights, out_dir, embedding=embedding, image_size=cfg.data.image_size,
        data_kind=get_source(cfg.data.name).kind, backbone_name=cfg.model.backbone, compressor_meta=meta,
        source={"run": str(Path(run_dir).resolve()), "checkpoint": checkpoint, "dataset": cfg.data.name},
        format=format, training=_training_info(cfg), metrics=_run_metrics(run_dir), license=license,
    )
