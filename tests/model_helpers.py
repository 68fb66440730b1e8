"""A small exported-model fixture shared by the export tests (imported by name: tests/ is on sys.path)."""

from __future__ import annotations

import torch

from lossensemble.models import EnsembleModel, build_backbone, build_compressor

HEADS = ["triplet", "proxy_nca", "binomial"]
WEIGHTS = torch.tensor([0.5, 0.3, 0.2])


def compressor_meta(variant: str | None) -> dict | None:
    """Checkpoint metadata of the compressor :func:`small_ensemble` attaches (None without one)."""
    if variant is None:
        return None
    return {"variant": variant, "in_dim": 256 if variant == "direct" else 8 * len(HEADS), "dim": 6,
            "hidden": 16 if variant == "mlp" else None, "objective": "frobenius"}


def small_ensemble(variant: str | None, warm_up: torch.Tensor | None = None) -> EnsembleModel:
    """A small_cnn ensemble of :data:`HEADS` (8-d heads), eval mode, with non-trivial BatchNorm statistics
    (so that a missing buffer would change the output) and optionally a ``variant`` compressor of 6 dims."""
    torch.manual_seed(0)
    model = EnsembleModel(build_backbone("small_cnn"), HEADS, 8)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32) if warm_up is None else warm_up)
    meta = compressor_meta(variant)
    if meta is not None:
        model.set_compressor(build_compressor(variant, meta["in_dim"], 6, hidden=meta["hidden"]), variant)
    return model.eval()
