"""The summary.json of a finished run: counts, timings, selection, weights, sizes and versions."""

from __future__ import annotations

import platform
from typing import Any

import torch

from lossensemble import __version__
from lossensemble.config import config_to_dict

__all__ = ["run_summary", "embedding_sizes", "short_row", "data_and_evaluation_issues", "setup_message"]


def run_summary(trainer) -> dict[str, Any]:
    """What summary.json holds for ``trainer`` (a :class:`~lossensemble.training.Trainer` after ``fit``)."""
    steps = max(trainer.global_step - trainer.skipped_steps, 1)
    return {
        "version": __version__,
        "epochs": trainer.epoch,
        "steps": trainer.global_step,
        "skipped_steps": trainer.skipped_steps,
        "skipped_images": trainer.skipped_images,
        "train_seconds": round(trainer.train_seconds, 3),
        "seconds_per_step": trainer.train_seconds / steps,
        "best_epoch": trainer.best_epoch,
        "selection": "val/ensemble/map@r" if trainer.val_set is not None else "test/ensemble/map@r",
        "weights": dict(zip(trainer.model.head_names, trainer.weighting.weights().tolist())),
        "embedding_sizes": {k: int(v) for k, v in embedding_sizes(trainer).items()},
        "device": str(trainer.device),
        "world_size": trainer.dist.world_size,
        "global_batch_size": trainer.cfg.data.batch_size * trainer.dist.world_size,
        # Training throughput over all ranks (unreadable images and skipped steps aside).
        "images_per_second": round(trainer.cfg.data.batch_size * trainer.dist.world_size * steps
                                   / max(trainer.train_seconds, 1e-9), 2),
        **data_and_evaluation_issues(trainer),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "config": config_to_dict(trainer.cfg),
    }


def data_and_evaluation_issues(trainer, test: dict[str, Any] | None = None) -> dict[str, Any]:
    """What went wrong outside training steps, for summary.json.

    ``eval_skipped_images``: test images that could not be read at the final evaluation;
    ``evaluation_warnings``: the degenerate-evaluation messages of the final test metrics, by
    embedding (empty when none); ``data_issues``: each split's ``data_issues`` (duplicates
    dropped, ...), splits without any left out. ``test`` defaults to the trainer's last test metrics.
    """
    from lossensemble.evaluation import metric_warnings

    test = test if test is not None else (getattr(trainer, "_last_test", None) or {})
    splits = {"train": getattr(trainer, "train_set", None), "val": getattr(trainer, "val_set", None),
              "test": getattr(trainer, "test_set", None)}
    issues = {name: dict(ds.data_issues) for name, ds in splits.items() if getattr(ds, "data_issues", None)}
    return {
        "eval_skipped_images": max((int(getattr(m, "skipped_images", 0)) for m in test.values()), default=0),
        "evaluation_warnings": {name: metric_warnings(m) for name, m in test.items() if metric_warnings(m)},
        "data_issues": issues,
    }


def embedding_sizes(trainer) -> dict[str, int]:
    """The width of every embedding the trained model yields, by name."""
    d = trainer.cfg.model.embedding_dim
    sizes = {f"heads.{n}": d for n in trainer.model.head_names}
    sizes["ensemble"] = d * len(trainer.model.head_names)
    if trainer.model.compressor is not None:
        sizes["compressed"] = trainer.compression.dim if trainer.compression is not None else d
    return sizes


def short_row(row: dict[str, Any]) -> str:
    """The losses, weights and headline test metrics of a history row, for the log."""
    keys = [k for k in row if k.startswith("loss_") or k.startswith("weight_") or k == "test/ensemble/recall@1"
            or k == "test/ensemble/map@r"]
    return ", ".join(f"{k}={row[k]:.4g}" for k in keys)


def setup_message(trainer) -> str:
    """The log line describing a trainer's data, model and device (written once set up)."""
    d, cfg = trainer.cfg.data, trainer.cfg
    n_params = sum(p.numel() for p in trainer.model.parameters())
    val = f", {trainer.val_set.num_classes} val classes" if trainer.val_set is not None else ""
    frozen = "; frozen backbone" + (", cached features" if trainer.loader_set is not trainer.train_set else "") \
        if cfg.model.freeze_backbone else ""
    return (f"data {d.name}: {trainer.train_set.num_classes} train classes / {len(trainer.train_set)} images, "
            f"{trainer.test_set.num_classes} test classes / {len(trainer.test_set)} images{val}; model "
            f"{cfg.model.backbone} with {len(cfg.losses)} heads ({n_params / 1e6:.2f}M parameters) on "
            f"{trainer.device}{frozen}")
