"""The ensemble model: one shared backbone feeding one linear embedding head per loss.

Written here because no library provides it (DESIGN.md §1). A model with a single
head is exactly the single-loss baseline: nothing is special-cased.

For retrieval every head's output is L2-normalised, and the ensemble embedding is
the concatenation ``[sqrt(w_1) e_1, ..., sqrt(w_m) e_m]``, whose squared Euclidean
distance is the weight-averaged sum of the heads' squared distances.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lossensemble.models.backbones import Backbone, build_backbone, freeze_batchnorm

__all__ = ["EnsembleModel", "ensemble_embedding", "build_model"]


def ensemble_embedding(heads: Sequence[torch.Tensor], weights: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Concatenate L2-normalised head embeddings, each scaled by the square root of its weight."""
    w = torch.as_tensor(weights, dtype=heads[0].dtype, device=heads[0].device).clamp_min(0)
    if len(w) != len(heads):
        raise ValueError(f"{len(heads)} heads but {len(w)} weights")
    return torch.cat([F.normalize(h, dim=1) * w[i].sqrt() for i, h in enumerate(heads)], dim=1)


class EnsembleModel(nn.Module):
    """Shared backbone + one embedding head per loss (``heads[name]``: Linear(F, d)).

    ``forward`` returns the raw head outputs in head order; the trainer normalises
    those whose loss expects unit vectors. ``embed`` gives retrieval embeddings.
    ``compressor`` (optional) maps the ensemble embedding, or for the ``direct``
    variant the backbone features, to one compact vector.
    """

    def __init__(
        self,
        backbone: Backbone,
        head_names: Sequence[str],
        embedding_dim: int,
        freeze_bn: bool = False,
    ) -> None:
        super().__init__()
        if not head_names:
            raise ValueError("an ensemble needs at least one head")
        self.backbone = backbone
        self.head_names = list(head_names)
        self.embedding_dim = embedding_dim
        self.heads = nn.ModuleDict({n: nn.Linear(backbone.feature_dim, embedding_dim) for n in head_names})
        self.freeze_bn = freeze_bn
        self.compressor: nn.Module | None = None
        self.compressor_input = "ensemble"  # or "features" for the direct variant
        if freeze_bn:
            freeze_batchnorm(self.backbone)

    def train(self, mode: bool = True) -> "EnsembleModel":
        super().train(mode)
        if mode and self.freeze_bn:
            freeze_batchnorm(self.backbone)
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward_heads(self, features: torch.Tensor) -> list[torch.Tensor]:
        return [self.heads[n](features) for n in self.head_names]

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The raw head outputs; with ``return_features`` also the backbone features, ``(features, heads)``.

        The trainer uses ``return_features=True`` so that one call (DDP's forward when
        training on several processes) yields both.
        """
        feats = self.forward_features(x)
        heads = self.forward_heads(feats)
        return (feats, heads) if return_features else heads

    @torch.no_grad()
    def embed(self, x: torch.Tensor, weights: torch.Tensor | Sequence[float]) -> dict[str, torch.Tensor]:
        """All retrieval embeddings of a batch: each head, ``ensemble`` and ``compressed``."""
        feats = self.forward_features(x)
        heads = self.forward_heads(feats)
        out = {f"heads.{n}": F.normalize(h, dim=1) for n, h in zip(self.head_names, heads)}
        ens = ensemble_embedding(heads, weights)
        out["ensemble"] = ens
        if self.compressor is not None:
            src = feats if self.compressor_input == "features" else ens
            out["compressed"] = F.normalize(self.compressor(src), dim=1)
        return out


def build_model(model_cfg, head_names: Sequence[str]) -> EnsembleModel:
    """Build an :class:`EnsembleModel` from a :class:`~lossensemble.config.ModelConfig`."""
    backbone = build_backbone(model_cfg.backbone, model_cfg.pretrained, model_cfg.weights)
    return EnsembleModel(backbone, head_names, model_cfg.embedding_dim, freeze_bn=model_cfg.freeze_bn)
