"""The ensemble model: one shared backbone feeding one linear embedding head per loss.

Written here because no library provides it (docs/method.md, "The model"). A model with a single
head is exactly the single-loss baseline: nothing is special-cased.

For retrieval every head's output is L2-normalised, and the ensemble embedding is
the concatenation ``[sqrt(w_1) e_1, ..., sqrt(w_m) e_m]``, whose squared Euclidean
distance is the weight-averaged sum of the heads' squared distances.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import partial
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lossensemble.models.backbones import Backbone, build_backbone, freeze_batchnorm

__all__ = ["EnsembleModel", "build_heads", "branch_owners", "ensemble_embedding", "independent_embedding",
           "build_model"]


def ensemble_embedding(heads: Sequence[torch.Tensor], weights: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Concatenate L2-normalised head embeddings, each scaled by the square root of its weight."""
    w = torch.as_tensor(weights, dtype=heads[0].dtype, device=heads[0].device).clamp_min(0)
    if len(w) != len(heads):
        raise ValueError(f"{len(heads)} heads but {len(w)} weights")
    return torch.cat([F.normalize(h, dim=1) * w[i].sqrt() for i, h in enumerate(heads)], dim=1)


def independent_embedding(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate separately trained embeddings: each row L2-normalised, each part scaled by sqrt(1/m).

    Its squared Euclidean distance is the average of the parts' squared distances,
    exactly like the ensemble embedding with equal weights.
    """
    if not parts:
        raise ValueError("independent_embedding needs at least one part")
    scale = np.sqrt(1.0 / len(parts))
    out = []
    for p in parts:
        p = np.asarray(p, dtype=np.float32)
        norms = np.linalg.norm(p, axis=1, keepdims=True)
        out.append(p / np.maximum(norms, 1e-12) * scale)
    return np.concatenate(out, axis=1).astype(np.float32)


def build_heads(feature_dim: int, head_names: Sequence[str], embedding_dim: int,
                shared: Mapping[str, str] | None = None) -> nn.ModuleDict:
    """One ``Linear(feature_dim, embedding_dim)`` per name, in order; ``shared[name] = owner`` reuses owner's.

    A shared head is the same module under two names (one set of parameters): the
    ensemble embedding then holds it twice, which gives the same distances as one
    head weighted by the sum of the two weights.
    """
    shared = dict(shared or {})
    distinct: dict[str, nn.Module] = {}
    for n in head_names:
        owner = shared.get(n, n)
        if owner not in head_names or shared.get(owner, owner) != owner:
            raise ValueError(f"head {n!r} shares {owner!r}, which is not a head of its own")
        if owner not in distinct:
            distinct[owner] = nn.Linear(feature_dim, embedding_dim)
    heads = nn.ModuleDict({n: distinct[shared.get(n, n)] for n in head_names})
    aliases = tuple(n for n in head_names if shared.get(n, n) != n)
    if aliases:
        heads.register_state_dict_post_hook(partial(_copy_shared_heads, aliases=aliases))
    return heads


def _copy_shared_heads(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict, *,
                       aliases: tuple[str, ...]) -> None:
    """State-dict hook: a shared head's entries under its second name are copies, not the same memory.

    Checkpoints and exports are safetensors files, which refuse tensors that share
    memory; every name keeps its own ``heads.<name>.*`` entries (loading writes the
    same values into the one module twice).
    """
    for key in list(state_dict):
        if any(key.startswith(f"{prefix}{alias}.") for alias in aliases):
            state_dict[key] = state_dict[key].clone()


class EnsembleModel(nn.Module):
    """Shared backbone + one embedding head per loss (``heads[name]``: Linear(F, d)).

    ``shared`` (``{loss: other loss}``) lets a loss use another loss's head (see :func:`build_heads`).
    With a branched backbone (``model.branch_at``) each head reads the features of the branch
    named like it, or like the head it shares; ``branch_of`` (``{head: branch}``) says otherwise.

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
        shared: Mapping[str, str] | None = None,
        freeze_backbone: bool = False,
        branch_of: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head_names = list(head_names)
        self.embedding_dim = embedding_dim
        branches = getattr(backbone, "branch_names", None)
        head_in = backbone.branch_dim if branches else backbone.feature_dim
        self.heads = build_heads(head_in, self.head_names, embedding_dim, shared)
        # With a branched backbone (model.branch_at) each head reads its own branch's part of the features.
        self.branch_of: dict[str, str] = {}  # {head: its backbone branch}; empty for a shared backbone
        self._feature_slices = None
        if branches:
            owners = dict(branch_of if branch_of is not None else shared or {})
            self.branch_of = {n: owners.get(n, n) for n in self.head_names}
            self._feature_slices = {n: backbone.feature_slice(b) for n, b in self.branch_of.items()}
        self.freeze_bn = freeze_bn
        self.compressor: nn.Module | None = None
        self.compressor_input = "ensemble"  # or "features" for the direct variant
        if freeze_bn:
            freeze_batchnorm(self.backbone)
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:  # a fixed feature extractor: no gradients, always in eval mode
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> "EnsembleModel":
        super().train(mode)
        if mode and self.freeze_backbone:
            self.backbone.eval()
        elif mode and self.freeze_bn:
            freeze_batchnorm(self.backbone)
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward_heads(self, features: torch.Tensor) -> list[torch.Tensor]:
        if self._feature_slices is not None:
            return [self.heads[n](features[:, self._feature_slices[n]]) for n in self.head_names]
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

    def set_compressor(self, compressor: nn.Module | None, variant: str | None = None) -> None:
        """Attach (or with ``None`` remove) the compressor; ``variant`` says what it reads."""
        from lossensemble.models.compressor import compressor_input

        self.compressor = compressor
        self.compressor_input = compressor_input(variant) if compressor is not None else "ensemble"

    def compressor_in_dim(self, variant: str) -> int:
        """The input width a compressor of ``variant`` needs on this model."""
        from lossensemble.models.compressor import compressor_input

        if compressor_input(variant) == "features":
            return int(self.backbone.feature_dim)
        return int(self.embedding_dim * len(self.head_names))

    def embeddings_from_features(self, feats: torch.Tensor, weights: torch.Tensor | Sequence[float],
                                 names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Retrieval embeddings computed from backbone features: each head, ``ensemble``, ``compressed``.

        ``names`` limits the output to those embeddings (and the work to what they need).
        """
        def wanted(name: str) -> bool:
            return names is None or name in names

        compress = self.compressor is not None and wanted("compressed")
        ens_needed = wanted("ensemble") or (compress and self.compressor_input == "ensemble")
        head_needed = ens_needed or any(wanted(f"heads.{n}") for n in self.head_names)
        heads = self.forward_heads(feats) if head_needed and self.head_names else []
        out: dict[str, torch.Tensor] = {}
        for n, h in zip(self.head_names, heads):
            if wanted(f"heads.{n}"):
                out[f"heads.{n}"] = F.normalize(h, dim=1)
        ens = ensemble_embedding(heads, weights) if ens_needed and heads else None
        if ens is not None and wanted("ensemble"):
            out["ensemble"] = ens
        if compress:
            src = feats if self.compressor_input == "features" else ens
            out["compressed"] = F.normalize(self.compressor(src), dim=1)
        return out

    @torch.no_grad()
    def embed(self, x: torch.Tensor, weights: torch.Tensor | Sequence[float],
              names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """All retrieval embeddings of a batch (or those in ``names``): heads, ``ensemble``, ``compressed``.

        With a branched backbone and only heads named, only their branches run (one head: one backbone).
        """
        only = None
        if self.branch_of and names is not None and not {"ensemble", "compressed"} & set(names):
            only = {self.branch_of[n[6:]] for n in names if n.startswith("heads.") and n[6:] in self.branch_of}
        feats = self.backbone(x, only=only) if only is not None else self.forward_features(x)
        return self.embeddings_from_features(feats, weights, names)

    def embed_fn(self, weights: torch.Tensor | Sequence[float], amp: bool = False,
                 names: Sequence[str] | None = None) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
        """``images -> {name: embedding}`` for evaluation and extraction (bf16 autocast on CUDA with ``amp``)."""

        def fn(images: torch.Tensor) -> dict[str, torch.Tensor]:
            with torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext():
                return self.embed(images, weights, names)

        return fn


def branch_owners(head_names: Sequence[str], shared: Mapping[str, str] | None = None) -> list[str]:
    """The heads that own parameters (and, with ``model.branch_at``, a backbone branch), in order."""
    shared = dict(shared or {})
    return [n for n in head_names if shared.get(n, n) == n]


def build_model(model_cfg, head_names: Sequence[str], shared: Mapping[str, str] | None = None) -> EnsembleModel:
    """Build an :class:`EnsembleModel` from a :class:`~lossensemble.config.ModelConfig` (``shared``: see build_heads).

    ``model_cfg.branch_at > 0`` gives a :class:`~lossensemble.models.branching.BranchedBackbone`
    with one branch per head that owns parameters.
    """
    branch_at = int(getattr(model_cfg, "branch_at", 0) or 0)
    if branch_at:
        from lossensemble.models.branching import build_branched

        backbone = build_branched(model_cfg.backbone, branch_at, branch_owners(head_names, shared),
                                  lambda: build_backbone(model_cfg.backbone, model_cfg.pretrained, model_cfg.weights))
    else:
        backbone = build_backbone(model_cfg.backbone, model_cfg.pretrained, model_cfg.weights)
    return EnsembleModel(backbone, head_names, model_cfg.embedding_dim, freeze_bn=model_cfg.freeze_bn, shared=shared,
                         freeze_backbone=getattr(model_cfg, "freeze_backbone", False))
