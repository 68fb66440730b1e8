"""Resuming: the batches of an epoch after the ones already trained, and checking a checkpoint first."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import torch

from lossensemble.errors import UserError

__all__ = ["SkipFirstBatches", "check_resumable"]


class SkipFirstBatches(torch.utils.data.Sampler):
    """A batch sampler that skips the first ``skip`` batches of another (mid-epoch resume)."""

    def __init__(self, batch_sampler, skip: int) -> None:
        self.batch_sampler = batch_sampler
        self.skip = skip

    def __iter__(self) -> Iterator[list[int]]:
        for i, batch in enumerate(self.batch_sampler):
            if i >= self.skip:
                yield batch

    def __len__(self) -> int:
        return max(0, len(self.batch_sampler) - self.skip)


# --------------------------------------------------------------------------- checking a checkpoint before resuming

#: Prefixes of the tensors a training checkpoint may hold (see training/state.py).
TENSOR_PREFIXES = ("model.", "losses.", "weighting.", "optim.", "compression.optim.", "rng.torch")

_INT, _NUM, _LIST, _DICT = (int,), (int, float), (list,), (dict,)

#: The training state's keys that resuming reads, with their JSON types (None allowed where listed).
STATE_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "epoch": (_INT, False),
    "step_in_epoch": (_INT, False),
    "global_step": (_INT, False),
    "best_score": (_NUM, True),
    "best_epoch": (_INT, False),
    "train_seconds": (_NUM, False),
    "skipped_images": (_INT, False),
    "history": (_LIST, False),
    "optimizer": (_DICT, False),
    "scheduler": (_DICT, False),
    "num_classes": (_INT, False),
    "head_names": (_LIST, False),
    "skipped_steps": (_INT, False),
    "partial": (_DICT, True),
    "compressor": (_DICT, True),
}

#: Fields that older checkpoints may lack (resuming has defaults for them); checked when present.
OPTIONAL_FIELDS = frozenset({"head_names", "skipped_steps", "partial", "compressor"})


def _json_type(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "object",
            type(None): "null"}.get(type(value), type(value).__name__)


def check_resumable(path: str | Path, epochs: int | None = None) -> dict[str, Any]:
    """Check that the checkpoint at ``path`` is a training state this version can resume; returns its state.

    Reads only the file's header (tensor names and the JSON state). A foreign or
    hand-edited checkpoint (a missing or mistyped state field, a negative counter, an
    optimiser state naming parameters it does not list, a tensor outside the known
    groups, a compressed or exported checkpoint) is a one-line :class:`UserError`
    naming what is wrong; nothing is written. Tensors that do not fit the configured
    model are named when the state is loaded (:func:`~lossensemble.training.checkpoint.load_modules`).
    ``epochs`` (the run's ``train.epochs``) bounds the saved epoch.
    """
    from lossensemble.training.checkpoint import read_checkpoint_header

    path = Path(path)
    names, state = read_checkpoint_header(path)
    if state.get("resumable") is False:
        made = f" (compressed from the {state['compressed_from']} checkpoint)" if "compressed_from" in state else ""
        raise UserError(f"{path}: not a training checkpoint{made}: it cannot be resumed")
    for key, (types, nullable) in STATE_FIELDS.items():
        if key not in state and key in OPTIONAL_FIELDS:
            continue
        if key not in state:
            raise UserError(f"{path}: checkpoint metadata lacks '{key}' (not a lossensemble training checkpoint, "
                            "or written by another version)")
        value = state[key]
        ok = (value is None and nullable) or (isinstance(value, types) and not isinstance(value, bool))
        if not ok:
            want = "/".join(_json_type(t()) for t in types) + (" or null" if nullable else "")
            raise UserError(f"{path}: checkpoint metadata '{key}' is {_json_type(value)} {value!r:.40}, "
                            f"expected {want}")
    for key in ("epoch", "step_in_epoch", "global_step", "skipped_images", "num_classes"):
        if state[key] < (1 if key == "num_classes" else 0):
            raise UserError(f"{path}: checkpoint metadata '{key}' is {state[key]}, expected "
                            f"{'a positive' if key == 'num_classes' else 'a non-negative'} integer")
    if epochs is not None and state["epoch"] > epochs:
        raise UserError(f"{path}: checkpoint says {state['epoch']} epochs were trained but the run's config has "
                        f"train.epochs={epochs}")
    if not all(isinstance(n, str) and n for n in state.get("head_names", [])):
        raise UserError(f"{path}: checkpoint metadata 'head_names' must be a list of names, got "
                        f"{state['head_names']!r:.60}")
    params = _optimizer_params(path, state["optimizer"])
    for name in names:
        if not name.startswith(TENSOR_PREFIXES):
            raise UserError(f"{path}: unexpected tensor '{name}' (a training checkpoint holds only "
                            f"{', '.join(p.rstrip('.') for p in TENSOR_PREFIXES)} tensors)")
        if name.startswith("optim."):
            idx = name[len("optim."):].split(".", 1)[0]
            if not idx.isdigit() or int(idx) not in params or "." not in name[len("optim."):]:
                raise UserError(f"{path}: unexpected optimiser tensor '{name}' (no parameter group of its "
                                f"optimiser state lists parameter {idx})")
    if not any(n.startswith("model.") for n in names):
        raise UserError(f"{path}: checkpoint holds no model tensors")
    return state


def _optimizer_params(path: Path, optimizer: dict[str, Any]) -> set[int]:
    groups = optimizer.get("param_groups")
    if not isinstance(groups, list) or not groups:
        raise UserError(f"{path}: checkpoint metadata 'optimizer.param_groups' must be a non-empty list")
    params: set[int] = set()
    for i, group in enumerate(groups):
        ids = group.get("params") if isinstance(group, dict) else None
        if not isinstance(ids, list) or not all(isinstance(p, int) and not isinstance(p, bool) for p in ids):
            raise UserError(f"{path}: checkpoint metadata 'optimizer.param_groups[{i}].params' must be a list "
                            "of parameter ids")
        params.update(ids)
    scalars = optimizer.get("scalars", {})
    if not isinstance(scalars, dict):
        raise UserError(f"{path}: checkpoint metadata 'optimizer.scalars' must be an object")
    stray = [k for k in scalars if not (k.isdigit() and int(k) in params)]
    if stray:
        raise UserError(f"{path}: checkpoint metadata 'optimizer.scalars' names parameter {stray[0]!r}, "
                        "which no parameter group lists")
    return params
