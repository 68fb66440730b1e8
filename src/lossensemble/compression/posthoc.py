"""Post-hoc compression: train a compressor for a finished run, without touching its ensemble.

Written here because it is the method's own procedure (docs/method.md, "Compression"); the pieces
it uses (data, extraction, metrics, checkpoints) come from the rest of the library.

Design decision (inputs): the backbone and the heads are frozen, so the run's
*training split* is embedded **once**, with the **evaluation transforms**, and the
compressor is then trained on these cached vectors (backbone features for
``direct``, the weighted ensemble embedding for ``mlp``). Reasons: the compressor
must reproduce the ensemble's geometry on the images it will see at test time
(un-augmented), and a pass over cached vectors costs microseconds, so many epochs
are cheap; re-running the backbone with train-time augmentation every epoch would
cost a full training epoch each, for a target (the ensemble's distances) that
augmentation only blurs. Batches are class-balanced (``data.m_per_class`` images per
class, ``data.batch_size`` per batch, as in training) so each batch holds near
pairs as well as far ones. An epoch is one pass over the split, or
``min_steps_per_epoch`` batches when a pass is shorter than that.

Output (the run's own checkpoints are never modified, so ``--resume`` stays valid):

* ``checkpoints/compressed.safetensors``: the source checkpoint's model, losses and
  weighting, plus ``model.compressor.*`` and the ``compressor`` metadata; written
  atomically; ``load_run(run, checkpoint=<that path>)`` and ``lossensemble export``
  read it.
* ``metrics.json``: ``compressed`` added (replaced) next to ``ensemble`` and the heads.
* ``compression.json``: settings, losses and timing of the compression.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from lossensemble.compression.common import fit_compressor, training_embeddings
from lossensemble.errors import UserError
from lossensemble.evaluation import evaluate_model
from lossensemble.io import read_json, write_json
from lossensemble.losses.distance_matching import OBJECTIVES
from lossensemble.models import build_compressor, compressor_meta
from lossensemble.training.checkpoint import load_checkpoint, save_checkpoint
from lossensemble.training.joint import CompressorTrainer
from lossensemble.training.loading import compressed_checkpoint_path, load_run

__all__ = ["compress_run"]


def compress_run(
    run_dir: str | Path,
    *,
    variant: str | None = None,
    dim: int | None = None,
    objective: str | None = None,
    epochs: int | None = None,
    checkpoint: str = "last",
    lr: float | None = None,
    min_steps_per_epoch: int = 100,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Train a compressor for a finished run and evaluate it; returns the test metrics of every embedding.

    Unset arguments come from the run's ``compression`` config (variant, dim,
    objective, epochs) and ``train.lr.compressor``. ``checkpoint`` ("last" or
    "best") is the model whose ensemble is compressed. See the module docstring for
    what is written where.
    """
    if checkpoint not in ("last", "best"):
        raise UserError(f"--checkpoint must be 'last' or 'best', got {checkpoint!r}")
    loaded = load_run(run_dir, checkpoint=checkpoint, device=device)
    cfg = loaded.cfg
    c = cfg.compression
    variant = variant or c.variant
    objective = objective or c.objective
    epochs = int(epochs if epochs is not None else c.epochs)
    d = int(cfg.model.embedding_dim)
    dim = int(dim if dim is not None else (c.dim or d))
    if objective not in OBJECTIVES:
        raise UserError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if epochs < 1 or dim < 1:
        raise UserError(f"--epochs and --dim must be >= 1 (got {epochs}, {dim})")
    torch.manual_seed(cfg.seed)
    model = loaded.model
    start = time.perf_counter()
    feats, ens, labels = training_embeddings(loaded, cfg.eval.batch_size, progress)
    embed_seconds = time.perf_counter() - start

    in_dim = model.compressor_in_dim(variant)
    hidden = 2 * d if variant == "mlp" else None
    compressor = build_compressor(variant, in_dim, dim, hidden=hidden).to(loaded.device)
    trainer = CompressorTrainer(compressor, variant, objective, cfg.train.lr.compressor if lr is None else lr)
    steps = max(math.ceil(len(labels) / cfg.data.batch_size), min_steps_per_epoch)
    start = time.perf_counter()
    losses = fit_compressor(trainer, feats.to(loaded.device), ens.to(loaded.device), labels, cfg, epochs, steps)
    train_seconds = time.perf_counter() - start

    model.set_compressor(compressor.eval(), variant)
    meta = compressor_meta(variant, in_dim, dim, hidden, objective)
    metrics = evaluate_model(loaded.embed_fn(), loaded.split("test"), device=loaded.device, progress=progress,
                             **cfg.eval_options())

    # The compressed checkpoint: the source's model/losses/weighting + the new compressor.
    source = loaded.paths.best if checkpoint == "best" else loaded.paths.last
    tensors, state = load_checkpoint(source)
    keep = {k: v for k, v in tensors.items()
            if k.startswith(("model.", "losses.", "weighting.")) and not k.startswith("model.compressor.")}
    keep.update({f"model.compressor.{k}": v for k, v in compressor.state_dict().items()})
    state = {k: v for k, v in state.items() if k not in ("optimizer", "scheduler", "partial")}
    state.update(compressor=meta, compressed_from=checkpoint, resumable=False)
    save_checkpoint(compressed_checkpoint_path(loaded.paths.root), keep, state)

    merged: dict[str, Any] = read_json(loaded.paths.metrics) if loaded.paths.metrics.is_file() else {}
    merged = {k: v for k, v in merged.items() if k != "compressed"}
    merged.update({k: v for k, v in metrics.items() if k not in merged})
    merged["compressed"] = metrics["compressed"]
    write_json(loaded.paths.metrics, merged)
    write_json(loaded.paths.root / "compression.json", {
        "mode": "post-hoc",
        "checkpoint": checkpoint,
        "written_to": str(compressed_checkpoint_path(loaded.paths.root)),
        "compressor": meta,
        "epochs": epochs,
        "steps_per_epoch": steps,
        "lr": trainer.optimizer.param_groups[0]["lr"],
        "train_items": int(len(labels)),
        "inputs": "training split, evaluation transforms, embedded once",
        "epoch_losses": losses,
        "embed_seconds": round(embed_seconds, 3),
        "train_seconds": round(train_seconds, 3),
        "metrics": metrics,
    })
    return metrics
