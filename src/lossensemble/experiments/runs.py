"""Runs inside an experiment: train a config into a folder, or reuse/resume what is there.

A run that has already finished is read back instead of trained again; one that was
interrupted is resumed from its last checkpoint. So an interrupted experiment
continues where it stopped.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

from lossensemble.config import Config, config_to_dict, load_config
from lossensemble.errors import UserError
from lossensemble.io import read_json
from lossensemble.training import Trainer
from lossensemble.training.run import RunPaths

__all__ = ["RunResult", "with_changes", "single_loss_config", "long_config", "seed_config", "method_folder",
           "run_or_reuse"]

log = logging.getLogger("lossensemble.experiments")


@dataclass
class RunResult:
    """The outcome of one run: test metrics per embedding and the run's summary."""

    name: str
    path: Path
    metrics: dict[str, dict[str, float]]
    summary: dict
    reused: bool


def with_changes(cfg: Config, **sections) -> Config:
    """A deep copy of ``cfg`` with some attributes replaced (``weighting=dict(scheme=...)``)."""
    new = copy.deepcopy(cfg)
    for section, changes in sections.items():
        if isinstance(changes, dict):
            target = getattr(new, section)
            for k, v in changes.items():
                setattr(target, k, v)
        else:
            setattr(new, section, copy.deepcopy(changes))
    return new.validate()


def single_loss_config(cfg: Config, loss_name: str) -> Config:
    """The single-loss baseline of an ensemble config: the same everything, one head."""
    losses = [loss for loss in cfg.losses if loss.name == loss_name]
    if not losses:
        raise UserError(f"loss {loss_name!r} is not in the config's losses")
    return with_changes(cfg, losses=losses, weighting=dict(scheme="equal", scale="none", prior=None, weights=None,
                                                           diversity=0.0))


def long_config(cfg: Config, factor: int) -> Config:
    """``cfg`` trained ``factor`` times as many steps with the same schedule shape.

    With ``train.steps_per_epoch`` set, each epoch gets ``factor`` times the steps (the
    per-epoch decay, evaluation and checkpoint rhythm stay as they are). Without it (one
    pass per epoch), ``factor`` times the epochs, the per-epoch decay taken to the power
    ``1/factor`` and the evaluation/checkpoint intervals scaled, so the learning rate
    follows the same curve over the run. Any other ``train.*_steps`` setting is scaled too.
    """
    factor = int(factor)
    if factor < 1:
        raise UserError(f"--long-factor: must be >= 1, got {factor}")
    t = cfg.train
    changes: dict = {}
    if t.steps_per_epoch is not None:
        changes["steps_per_epoch"] = t.steps_per_epoch * factor
    else:
        changes.update(epochs=t.epochs * factor, lr_decay=float(t.lr_decay) ** (1.0 / factor),
                       eval_every=t.eval_every * factor, checkpoint_every=t.checkpoint_every * factor)
    for name, value in vars(t).items():
        if name.endswith("_steps") and isinstance(value, int) and not isinstance(value, bool):
            changes[name] = value * factor
    return with_changes(cfg, train=changes)


def run_or_reuse(name: str, cfg: Config, folder: Path, progress: bool = True) -> RunResult:
    """Train ``cfg`` into ``folder``, or reuse/resume what is already there."""
    paths = RunPaths(folder)
    if paths.is_finished():
        saved = load_config(paths.config)
        if config_to_dict(saved) != config_to_dict(cfg):
            raise UserError(
                f"{folder} holds a finished run with a different config; remove it or use another output folder"
            )
        log.info("%s: reusing the finished run in %s", name, folder)
        return RunResult(name, folder, read_json(paths.metrics), read_json(paths.summary), True)
    if paths.last.is_file():
        log.info("%s: resuming the interrupted run in %s", name, folder)
        trainer = Trainer(None, folder, resume=True, progress=progress)
    else:
        trainer = Trainer(cfg, folder, progress=progress)
    metrics = trainer.fit()
    return RunResult(name, folder, metrics, read_json(paths.summary), False)


def seed_config(cfg: Config, seed: int) -> Config:
    """``cfg`` with another seed (initialisation and batch order; the data split stays the same)."""
    return with_changes(cfg, seed=int(seed))


def method_folder(out: Path, method: str, seed: int) -> Path:
    """Where a method's run for one seed lives: ``OUT/<method>/seed<k>``."""
    return Path(out) / method / f"seed{seed}"
