"""Saving and restoring a trainer's whole state (model, losses, weighting, optimiser, RNG, counters).

One checkpoint file holds everything needed for an exact resume; see
:mod:`lossensemble.training.checkpoint` for the file format.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from lossensemble import __version__, distributed
from lossensemble.errors import UserError
from lossensemble.preprocess import Normalisation
from lossensemble.training.loading import model_normalisation
from lossensemble.training.checkpoint import (
    flatten_optimizer_state,
    load_checkpoint,
    load_modules,
    save_checkpoint,
    unflatten_optimizer_state,
)

__all__ = ["state_tensors", "save_state", "load_state"]

log = logging.getLogger("lossensemble.training")


def state_tensors(trainer) -> dict[str, torch.Tensor]:
    tensors = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    tensors.update({f"losses.{k}": v for k, v in trainer.losses.state_dict().items()})
    tensors.update({f"weighting.{k}": v for k, v in trainer.weighting.state_dict().items()})
    return tensors

def save_state(trainer, path: Path, rng_state: torch.Tensor | None = None) -> None:
    # With a process group every rank must call this (the RNG states are gathered); rank 0 writes.
    rng_states = distributed.gather_object_to_main(rng_state) if rng_state is not None else None
    if not trainer.dist.is_main:
        return
    tensors = state_tensors(trainer)
    opt_tensors, opt_meta = flatten_optimizer_state(trainer.optimizer)
    tensors.update(opt_tensors)
    if trainer.compression is not None:
        tensors.update(trainer.compression.state_tensors())
    if rng_states is not None:
        tensors["rng.torch"] = rng_states[0]
        tensors.update({f"rng.torch.rank{r}": st for r, st in enumerate(rng_states) if r > 0})
    state = {
        "version": __version__,
        "epoch": trainer.epoch,
        "step_in_epoch": trainer.step_in_epoch,
        "global_step": trainer.global_step,
        "best_score": trainer.best_score if math.isfinite(trainer.best_score) else None,
        "best_epoch": trainer.best_epoch,
        "train_seconds": trainer.train_seconds,
        "skipped_images": trainer.skipped_images,
        "skipped_steps": trainer.skipped_steps,
        "history": trainer.history,
        "partial": trainer._partial,
        "optimizer": opt_meta,
        "scheduler": trainer.scheduler.state_dict(),
        "head_names": trainer.model.head_names,
        # how the images were prepared (a timm backbone's own statistics): evaluation and export reuse it
        "normalisation": model_normalisation(trainer.model, trainer.cfg).to_dict(),
        "num_classes": trainer.train_set.num_classes,
        "compressor": trainer.compression.meta() if trainer.compression is not None else None,
        "weights": trainer.weighting.weights().tolist(),
    }
    save_checkpoint(path, tensors, state)

def load_state(trainer, path: Path) -> None:
    from lossensemble.training.resume import check_resumable

    check_resumable(path, trainer.cfg.train.epochs)  # a foreign or hand-edited checkpoint: one line, nothing written
    tensors, state = load_checkpoint(path)
    saved = state.get("normalisation")
    if saved is not None and Normalisation.from_dict(saved) != model_normalisation(trainer.model, trainer.cfg):
        raise UserError(f"{path}: the run was trained with images normalised as {saved}, but its backbone now asks "
                        f"for {model_normalisation(trainer.model, trainer.cfg).to_dict()} (another timm version?); "
                        "resume it with the version that started it")
    _load_modules(trainer, tensors)
    trainer.optimizer.load_state_dict(unflatten_optimizer_state(tensors, state["optimizer"]))
    trainer.scheduler.load_state_dict(state["scheduler"])
    if trainer.compression is not None:
        trainer.compression.load_state_tensors(tensors)
    trainer.epoch = state["epoch"]
    trainer.step_in_epoch = state["step_in_epoch"]
    trainer.global_step = state["global_step"]
    trainer.best_score = state["best_score"] if state["best_score"] is not None else -math.inf
    trainer.best_epoch = state["best_epoch"]
    trainer.train_seconds = state["train_seconds"]
    trainer.skipped_images = state["skipped_images"]
    trainer.skipped_steps = state.get("skipped_steps", 0)
    trainer.history = state["history"]
    trainer._partial = state.get("partial")
    trainer._resume_rng = tensors.get(f"rng.torch.rank{trainer.dist.rank}", tensors.get("rng.torch"))
    log.info("resumed from %s at epoch %d, step %d", path, trainer.epoch, trainer.step_in_epoch)

def _load_modules(trainer, tensors: dict[str, torch.Tensor]) -> None:
    load_modules({"model.": trainer.model, "losses.": trainer.losses, "weighting.": trainer.weighting}, tensors,
                 str(trainer.paths.last))
