"""Checkpoints as single safetensors files, written atomically, read without pickle.

One file holds every tensor of a training state (model, loss parameters, loss
weighting, optimiser moments, random-number-generator states) under prefixed
names; the non-tensor state (epoch, history, optimiser hyper-parameters) is JSON in
the file's metadata. Writing goes to a temporary file in the same folder, which is
flushed, fsync'ed and renamed over the target: a checkpoint is never half-written.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from lossensemble.errors import UserError
from lossensemble.io import atomic_write_bytes

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint_header",
    "flatten_optimizer_state",
    "unflatten_optimizer_state",
]

_META_KEY = "lossensemble_state"


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Save tensors + JSON-serialisable state into one safetensors file, atomically."""
    clean = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    data = save(clean, metadata={_META_KEY: json.dumps(state)})
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        path = Path(path)
        kept = (f"the last good checkpoint {path} is kept" if path.is_file()
                else "no earlier checkpoint exists there")
        raise UserError(f"no space left on device to write checkpoint {path}: it needs {len(data):,} bytes "
                        f"({len(data) / 2**20:.1f} MiB) free in {path.parent}; {kept}") from None


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`; a damaged or foreign file is a clear error."""
    path = Path(path)
    read_checkpoint_header(path)  # a foreign file fails here, before its tensors are read
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: damaged or not a lossensemble checkpoint ({exc})") from None
    _, state = read_checkpoint_header(path)
    return tensors, state


def read_checkpoint_header(path: str | Path) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict[str, Any]]:
    """The tensor names (with dtype and shape) and the JSON state of a checkpoint, without reading its tensors.

    A missing file, a damaged header, a safetensors file without lossensemble's state
    (a foreign checkpoint) or a state that is not a JSON object is a one-line :class:`UserError`.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            names = {}
            for name in fh.keys():
                sl = fh.get_slice(name)
                names[name] = (str(sl.get_dtype()), tuple(sl.get_shape()))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: damaged or not a lossensemble checkpoint ({exc})") from None
    if _META_KEY not in meta:
        keys = ", ".join(sorted(meta)) or "none"
        raise UserError(f"{path}: not a lossensemble checkpoint (a safetensors file without '{_META_KEY}' "
                        f"metadata; its metadata keys: {keys})")
    try:
        state = json.loads(meta[_META_KEY])
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: damaged checkpoint metadata ('{_META_KEY}' is not valid JSON: {exc})") from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: damaged checkpoint metadata ('{_META_KEY}' is a JSON {type(state).__name__}, "
                        "expected an object)")
    return names, state


def flatten_optimizer_state(opt: torch.optim.Optimizer, prefix: str = "optim.") -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser's state_dict into tensors (for safetensors) and JSON-able rest."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict, prefix: str = "optim.") -> dict:
    """Inverse of :func:`flatten_optimizer_state`: a state_dict for ``Optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith(prefix):
            continue
        idx, key = name[len(prefix):].split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for idx, extra in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(extra)
    return {"state": state, "param_groups": meta["param_groups"]}


def load_modules(modules: dict[str, torch.nn.Module], tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load prefixed checkpoint tensors into modules (``{"model.": model, ...}``), strictly.

    A mismatch is a :class:`UserError` that names the first differing tensor and both
    shapes (e.g. an embedding size changed in the config since the checkpoint was written).
    """
    for prefix, module in modules.items():
        sub = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        expected = module.state_dict()
        for name, value in expected.items():
            if name in sub and tuple(sub[name].shape) != tuple(value.shape):
                raise UserError(
                    f"{source}: does not match the configured model: {prefix}{name} has shape "
                    f"{tuple(sub[name].shape)} in the checkpoint but {tuple(value.shape)} in the config "
                    f"(was model.embedding_dim, the backbone or the loss list changed?)"
                )
        missing = sorted(set(expected) - set(sub))
        unexpected = sorted(set(sub) - set(expected))
        if missing or unexpected:
            what = f"missing {prefix}{missing[0]}" if missing else f"unexpected {prefix}{unexpected[0]}"
            raise UserError(
                f"{source}: does not match the configured model ({what}; "
                f"{len(missing)} missing, {len(unexpected)} unexpected tensors)"
            )
        module.load_state_dict(sub)
