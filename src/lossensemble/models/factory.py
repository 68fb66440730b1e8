"""The component factory: model, losses and weighting of a config, built and checked in one place.

Train, evaluate, compress, export and the experiments all build their components
here, so a config means the same model everywhere. :func:`check_components` checks
every name and option a config gives (losses, weighting scheme, backbone,
compressor) against the registries before any data is loaded.
"""

from __future__ import annotations

from torch import nn

from lossensemble.config import Config
from lossensemble.data.registry import DATASETS
from lossensemble.data.transforms import check_augment
from lossensemble.errors import UserError
from lossensemble.losses import build_loss_entries, build_weighting, shared_heads, validate_losses
from lossensemble.losses.distance_matching import OBJECTIVES
from lossensemble.models.backbones import BACKBONES
from lossensemble.models.branching import check_branch_at
from lossensemble.models.compressor import VARIANTS, compressor_from_meta
from lossensemble.models.ensemble import EnsembleModel, build_model

__all__ = ["build_components", "check_components", "attach_compressor"]


def check_components(cfg: Config) -> None:
    """Check the registry names and options of ``cfg`` (fast: builds nothing large); raises :class:`UserError`."""
    validate_losses(cfg.losses, cfg.model.embedding_dim)
    check_augment(cfg.data.augment, DATASETS[cfg.data.name].kind if cfg.data.name in DATASETS else "photo")
    build_weighting(cfg.weighting, [loss.name for loss in cfg.losses])
    if getattr(cfg.model, "freeze_backbone", False) and cfg.weighting.scheme == "gradnorm":
        raise UserError("weighting.scheme=gradnorm balances the losses' gradients through the backbone's features, "
                        "which model.freeze_backbone=true keeps fixed: choose another scheme or unfreeze the backbone")
    name = cfg.model.backbone
    if not name.startswith("timm:") and name not in BACKBONES:
        raise UserError(BACKBONES.unknown_message(name) + " (or timm:<name>)")
    check_branch_at(name, cfg.model.branch_at)
    if cfg.model.branch_at and getattr(cfg.model, "freeze_backbone", False):
        raise UserError("model.branch_at copies backbone stages so that each head trains its own; with "
                        "model.freeze_backbone=true they would stay fixed copies: set one of them back")
    if cfg.model.branch_at and cfg.weighting.scheme == "gradnorm":
        raise UserError("weighting.scheme=gradnorm balances the losses' gradients at features every head reads; "
                        "with model.branch_at each head reads its own branch: choose another scheme")
    if cfg.compression.variant not in VARIANTS:
        raise UserError(f"compression.variant: must be one of {', '.join(VARIANTS)}, got {cfg.compression.variant!r}")
    if cfg.compression.objective not in OBJECTIVES:
        raise UserError(f"compression.objective: must be one of {', '.join(OBJECTIVES)}, "
                        f"got {cfg.compression.objective!r}")


def build_components(cfg: Config, num_classes: int) -> tuple[EnsembleModel, nn.ModuleList, nn.Module]:
    """The model, the losses (one per head name, for ``num_classes`` training classes) and the weighting of ``cfg``.

    A loss with ``head: <other loss>`` gets the other loss's head under its own name (one module).
    """
    names = [loss.name for loss in cfg.losses]
    losses = build_loss_entries(cfg.losses, num_classes=num_classes, embedding_dim=cfg.model.embedding_dim)
    model = build_model(cfg.model, names, shared=shared_heads(cfg.losses))
    weighting = build_weighting(cfg.weighting, names)
    return model, losses, weighting


def attach_compressor(model: EnsembleModel, meta: dict) -> nn.Module:
    """Give ``model`` the compressor described by checkpoint metadata (weights are loaded later); returns it."""
    compressor = compressor_from_meta(meta)
    model.set_compressor(compressor, meta["variant"])
    return compressor
