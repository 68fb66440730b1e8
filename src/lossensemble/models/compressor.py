"""The compressor networks: what maps the ensemble (or the backbone features) to one compact vector.

Written here because this is the method's own component (docs/method.md,
"Compression"); PyTorch provides the layers.

* ``mlp`` (the paper's ``_C`` variant): ``Linear(m*d -> hidden), tanh, Linear(hidden -> dim)``
  on the ensemble embedding ``[sqrt(w_1) e_1, ..., sqrt(w_m) e_m]``. The authors use
  ``hidden = dim = 2d``; here ``dim`` defaults to one head's ``d`` (the size of a single
  learner) and ``hidden`` to ``2d``.
* ``direct`` (ours): a single ``Linear(feature_dim -> dim)`` on the backbone features, so
  the deployed model is backbone + one linear head, the size and speed of one learner.

The compressed embedding is the L2-normalised output of these modules.
"""

from __future__ import annotations

from torch import nn

from lossensemble.errors import UserError

__all__ = ["VARIANTS", "build_compressor", "compressor_input", "compressor_meta", "compressor_from_meta"]

#: Compressor variants and the input each one reads ("ensemble" or "features").
VARIANTS: dict[str, str] = {"mlp": "ensemble", "direct": "features"}


def compressor_input(variant: str) -> str:
    """Which model output a variant reads: ``"ensemble"`` (mlp) or ``"features"`` (direct)."""
    _check_variant(variant)
    return VARIANTS[variant]


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise UserError(f"compression variant must be one of {', '.join(VARIANTS)}, got {variant!r}")


def build_compressor(variant: str, in_dim: int, dim: int, hidden: int | None = None) -> nn.Module:
    """A fresh compressor module.

    Args:
        variant: ``"mlp"`` (reads the ``m*d`` ensemble embedding) or ``"direct"``
            (reads the backbone's ``feature_dim`` features).
        in_dim: input width (``m*d`` for mlp, the backbone's feature width for direct).
        dim: output width of the compact embedding.
        hidden: mlp only, width of the hidden layer (default ``2 * dim``); ignored by direct.
    """
    _check_variant(variant)
    for name, value in (("in_dim", in_dim), ("dim", dim)):
        if int(value) < 1:
            raise UserError(f"compressor {name} must be >= 1, got {value}")
    if variant == "direct":
        return nn.Linear(int(in_dim), int(dim))
    width = int(hidden) if hidden is not None else 2 * int(dim)
    if width < 1:
        raise UserError(f"compressor hidden width must be >= 1, got {hidden}")
    return nn.Sequential(nn.Linear(int(in_dim), width), nn.Tanh(), nn.Linear(width, int(dim)))


def compressor_meta(variant: str, in_dim: int, dim: int, hidden: int | None, objective: str) -> dict:
    """The JSON description of a compressor stored in checkpoints and exported models."""
    return {"variant": variant, "in_dim": int(in_dim), "dim": int(dim),
            "hidden": None if hidden is None else int(hidden), "objective": objective}


def compressor_from_meta(meta: dict) -> nn.Module:
    """A fresh compressor as described by :func:`compressor_meta` (weights loaded by the caller)."""
    return build_compressor(meta["variant"], meta["in_dim"], meta["dim"], hidden=meta.get("hidden"))
