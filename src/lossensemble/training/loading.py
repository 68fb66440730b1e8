"""Rebuilding a trained model from a run folder (for evaluate, compress, export)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lossensemble.config import Config, load_config
from lossensemble.data import build_split
from lossensemble.data.registry import split_transform
from lossensemble.errors import UserError
from lossensemble.models import EnsembleModel, attach_compressor, build_components
from lossensemble.models.backbones import warn_input_size
from lossensemble.preprocess import IMAGENET, Normalisation
from lossensemble.runtime import resolve_device
from lossensemble.training.checkpoint import load_checkpoint, load_modules
from lossensemble.training.run import RunPaths

__all__ = ["LoadedRun", "load_run", "COMPRESSED_CHECKPOINT", "compressed_checkpoint_path", "model_normalisation",
           "apply_model_normalisation"]

#: File name of the post-hoc compressed checkpoint inside ``RUN/checkpoints``.
COMPRESSED_CHECKPOINT = "compressed.safetensors"


def compressed_checkpoint_path(run_dir: str | Path) -> Path:
    """Where ``lossensemble compress`` writes the compressed checkpoint of ``run_dir``."""
    return RunPaths(Path(run_dir)).checkpoints / COMPRESSED_CHECKPOINT


def model_normalisation(model: nn.Module, cfg: Config) -> Normalisation:
    """The normalisation the images of ``model`` (built from ``cfg``) are prepared with: its backbone's.

    A timm backbone brings its own data config (mean/std, filter, crop); every other backbone
    uses ImageNet's. Warns once when ``data.image_size`` is not the timm model's default input size.
    """
    backbone = model.backbone
    warn_input_size(cfg.model.backbone, getattr(backbone, "default_input_size", None), cfg.data.image_size)
    return getattr(backbone, "normalisation", IMAGENET)


def apply_model_normalisation(model: nn.Module, cfg: Config, splits: dict) -> Normalisation:
    """Give the datasets of ``splits`` (``{split name: dataset or None}``, built by ``build_split(cfg.data, split)``)
    the transforms of ``model``'s normalisation; returns it. Nothing changes for ImageNet's (the default)."""
    norm = model_normalisation(model, cfg)
    if norm != IMAGENET:
        for split, dataset in splits.items():
            if dataset is not None:
                dataset.transform = split_transform(cfg.data, split, dataset.kind, norm)
    return norm


@dataclass
class LoadedRun:
    """A trained run in memory: config, model (eval mode), losses, weighting, device."""

    cfg: Config
    paths: RunPaths
    model: EnsembleModel
    losses: nn.ModuleList
    weighting: nn.Module
    device: torch.device
    state: dict

    @property
    def weights(self) -> torch.Tensor:
        return self.weighting.weights().detach()

    @property
    def normalisation(self) -> Normalisation:
        """How the model's images are normalised and resized (its backbone's; see :func:`model_normalisation`)."""
        return model_normalisation(self.model, self.cfg)

    def split(self, split: str, transform="auto"):
        """``split`` of the run's dataset, with the transforms the trainer gave it (the model's normalisation)."""
        return build_split(self.cfg.data, split, transform=transform, normalisation=self.normalisation)

    def embed_fn(self, names=None):
        """``images -> {name: embedding}`` of the loaded model (see :meth:`EnsembleModel.embed_fn`)."""
        amp = self.cfg.train.amp and self.device.type == "cuda"
        return self.model.embed_fn(self.weights.to(self.device), amp=amp, names=names)


def load_run(run_dir: str | Path, checkpoint: str = "last", device: str | None = None) -> LoadedRun:
    """Load a run's config and checkpoint into an eval-mode model.

    ``checkpoint`` is ``last``, ``best``, ``compressed`` (written by ``lossensemble compress``)
    or a path to a checkpoint file.
    """
    paths = RunPaths(Path(run_dir))
    if not paths.root.is_dir():
        raise UserError(f"run folder not found: {paths.root}")
    if not paths.config.is_file():
        raise UserError(f"{paths.root} is not a run folder (no config.yaml)")
    cfg = load_config(paths.config)
    named = {"last": paths.last, "best": paths.best, "compressed": compressed_checkpoint_path(paths.root)}
    ckpt = named.get(checkpoint, Path(checkpoint))
    tensors, state = load_checkpoint(ckpt)
    if "num_classes" not in state:
        raise UserError(f"{ckpt}: checkpoint lacks num_classes (written by an older version?)")
    model, losses, weighting = build_components(cfg, state["num_classes"])
    if isinstance(state.get("normalisation"), dict):  # what the run was trained with, not what timm says today
        model.backbone.normalisation = Normalisation.from_dict(state["normalisation"])
    if state.get("compressor"):
        attach_compressor(model, state["compressor"])
    load_modules({"model.": model, "losses.": losses, "weighting.": weighting}, tensors, str(ckpt))
    dev = resolve_device(device or cfg.train.device)
    model.to(dev).eval()
    losses.to(dev).eval()
    weighting.to(dev).eval()
    return LoadedRun(cfg, paths, model, losses, weighting, dev, state)
