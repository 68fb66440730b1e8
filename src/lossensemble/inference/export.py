"""Exporting a trained run as a self-contained inference model folder.

Written here because the model layout (backbone + the heads and compressor one
embedding needs) is the library's own; the tensors are stored with safetensors and
the description with JSON, so loading never unpickles anything.

A model folder holds two files:

* ``model.safetensors``: only the tensors the chosen embedding needs, named as in
  :class:`InferenceModel` (``backbone.*``, ``heads.<name>.*``, ``compressor.*``);
  e.g. ``compressed`` with the ``direct`` variant = backbone + one linear layer,
  ``heads.<name>`` = backbone + that head, ``ensemble`` = backbone + every head.
* ``model.json``: format and version, lossensemble version, ``embedding`` (which
  one), ``output_dim``, ``distance`` ("cosine": outputs are L2-normalised),
  ``backbone``, ``feature_dim``, ``head_names`` (all heads of the run), ``heads``
  (the heads stored), ``embedding_dim`` (one head's d), ``weights`` (loss weight of
  every head, used by the ensemble), ``compressor`` (variant, in_dim, dim, hidden,
  objective, or null), ``image_size``, ``data_kind`` ("photo"/"glyph": which eval
  transform), ``normalisation`` (mean/std), ``source`` (run and checkpoint),
  ``tensors_sha256`` (checksum of model.safetensors) and ``parameters``.

Loading checks, each failure being a one-line :class:`UserError`: both files exist,
model.json is valid and of this format, model.safetensors parses (a bad header, a
truncated file or a pickle renamed to .safetensors is refused), its checksum
matches, and its tensors fit the modules model.json describes exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from lossensemble.errors import UserError
from lossensemble.inference.model import (
    CONFIG_FILE,
    FORMAT_VERSION,
    MODEL_FILE,
    MODEL_FORMAT,
    select_heads,
    sha256,
)
from lossensemble.io import atomic_write_bytes, atomic_write_text

__all__ = ["export_model", "export_run"]


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
) -> Path:
    """Write the inference model of one embedding of an :class:`EnsembleModel`; returns the folder.

    Both files are written atomically; model.json last, so a folder with a
    model.json always has its matching tensors.
    """
    from safetensors.torch import save

    from lossensemble import __version__
    from lossensemble.data import IMAGENET_MEAN, IMAGENET_STD

    if data_kind not in ("photo", "glyph"):
        raise UserError(f"data kind must be 'photo' or 'glyph', got {data_kind!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: exists and is not a folder")
    head_names = list(model.head_names)
    if model.compressor is None:
        compressor_meta = None
    heads = select_heads(embedding, head_names, compressor_meta)
    w = torch.as_tensor(weights, dtype=torch.float32).detach().cpu()
    state = model.state_dict()
    tensors = {k: v for k, v in state.items() if k.startswith("backbone.")}
    for name in heads:
        tensors.update({k: v for k, v in state.items() if k.startswith(f"heads.{name}.")})
    if embedding == "compressed":
        tensors.update({k: v for k, v in state.items() if k.startswith("compressor.")})
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    data = save(tensors, metadata={"format": MODEL_FORMAT, "embedding": embedding})
    d = int(model.embedding_dim)
    output_dim = {"ensemble": d * len(head_names)}.get(embedding, d)
    if embedding == "compressed":
        output_dim = int(compressor_meta["dim"])
    spec = {
        "format": MODEL_FORMAT,
        "format_version": FORMAT_VERSION,
        "lossensemble_version": __version__,
        "embedding": embedding,
        "output_dim": output_dim,
        "distance": "cosine",
        "backbone": backbone_name,
        "feature_dim": int(model.backbone.feature_dim),
        "head_names": head_names,
        "heads": heads,
        "embedding_dim": d,
        "weights": dict(zip(head_names, w.tolist())),
        "compressor": compressor_meta if embedding == "compressed" else None,
        "image_size": int(image_size),
        "data_kind": data_kind,
        "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "source": source or {},
        "tensors_sha256": sha256(data),
        "parameters": int(sum(v.numel() for k, v in tensors.items() if v.is_floating_point()
                              and "running_" not in k)),
    }
    atomic_write_bytes(out / MODEL_FILE, data)
    atomic_write_text(out / CONFIG_FILE, json.dumps(spec, indent=2) + "\n")
    return out


def export_run(run_dir: str | Path, out_dir: str | Path, *, embedding: str | None = None,
               checkpoint: str | None = None) -> Path:
    """Export one embedding of a trained run (see :func:`export_model`).

    ``checkpoint``: "last", "best" or "compressed" (the post-hoc compressed
    checkpoint); default "compressed" when ``lossensemble compress`` wrote one, else
    "last". ``embedding``: default "compressed" when that checkpoint has a
    compressor, else "ensemble".
    """
    from lossensemble.data import get_source
    from lossensemble.training.loading import compressed_checkpoint_path, load_run

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
    )


