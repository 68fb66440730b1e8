"""Post-hoc compression: train a compressor for a finished run, without touching its ensemble.

Written here because it is the method's own procedure (DESIGN.md §1); the pieces
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

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lossensemble.compression.joint import CompressorTrainer, compressor_meta
from lossensemble.compression.modules import build_compressor, compressor_input
from lossensemble.compression.objectives import OBJECTIVES
from lossensemble.errors import UserError

__all__ = ["COMPRESSED_CHECKPOINT", "compressed_checkpoint_path", "compress_run", "distill_independent"]

log = logging.getLogger("lossensemble.compression")

#: File name of the post-hoc compressed checkpoint inside ``RUN/checkpoints``.
COMPRESSED_CHECKPOINT = "compressed.safetensors"


def compressed_checkpoint_path(run_dir: str | Path) -> Path:
    """Where :func:`compress_run` writes its checkpoint for ``run_dir``."""
    return Path(run_dir) / "checkpoints" / COMPRESSED_CHECKPOINT


def _training_embeddings(loaded, batch_size: int, progress: bool) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Backbone features, ensemble embeddings and labels of the run's training split (eval transforms)."""
    from lossensemble.data import build_dataset, build_transforms
    from lossensemble.evaluation.extract import extract_embeddings
    from lossensemble.models.ensemble import ensemble_embedding

    cfg = loaded.cfg
    d = cfg.data
    dataset = build_dataset(d.name, "train", root=d.root, image_size=d.image_size, transform=None,
                            val_fraction=d.val_fraction, **d.options)
    dataset.transform = build_transforms(dataset.kind, d.image_size, train=False)
    model = loaded.model
    weights = loaded.weights.to(loaded.device)

    def embed(images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = model.forward_features(images).float()
        return {"features": feats, "ensemble": ensemble_embedding(model.forward_heads(feats), weights)}

    model.eval()
    out, labels, _ = extract_embeddings(embed, dataset, batch_size=batch_size, num_workers=d.num_workers,
                                        device=loaded.device, progress=progress)
    if len(labels) < 3:
        raise UserError(f"{loaded.paths.root}: the training split has {len(labels)} readable images; "
                        f"compression needs at least 3")
    return torch.from_numpy(out["features"]), torch.from_numpy(out["ensemble"]), labels


def _batches(labels: np.ndarray, batch_size: int, m: int, num_batches: int, seed: int, epoch: int):
    """Class-balanced index batches (falls back to shuffled batches when classes are too few)."""
    from lossensemble.data import MPerClassBatchSampler

    batch_size = min(batch_size, len(labels))
    try:
        sampler = MPerClassBatchSampler(labels, m, batch_size - batch_size % m or m, num_batches=num_batches,
                                        seed=seed)
        sampler.set_epoch(epoch)
        yield from sampler
    except UserError:
        rng = np.random.default_rng([seed, epoch])
        for _ in range(num_batches):
            yield rng.choice(len(labels), size=batch_size, replace=False).tolist()


def _fit(trainer: CompressorTrainer, inputs: torch.Tensor, teacher: torch.Tensor, labels: np.ndarray, cfg,
         epochs: int, steps: int) -> list[float]:
    """Train ``trainer``'s compressor on cached (input, teacher) rows; returns the mean loss per epoch."""
    losses: list[float] = []
    for epoch in range(epochs):
        epoch_losses = []
        for batch in _batches(labels, cfg.data.batch_size, cfg.data.m_per_class, steps, cfg.seed, epoch):
            idx = torch.as_tensor(batch, device=inputs.device)
            epoch_losses.append(trainer.step(inputs[idx], teacher[idx]))
        losses.append(float(np.mean(epoch_losses)))
        log.info("compression epoch %d/%d: %s loss %.4g", epoch + 1, epochs, trainer.objective, losses[-1])
    return losses


def distill_independent(
    student_run: str | Path,
    teacher_runs: list[str | Path],
    *,
    objective: str | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    min_steps_per_epoch: int = 100,
    device: str | None = None,
    progress: bool = False,
):
    """Compress an *independent* ensemble (separately trained single-loss runs) into one head.

    The teacher is the equal-weight concatenation of the teacher runs' L2-normalised
    embeddings (``sqrt(1/m)`` each) of the training split; the student is a ``direct``
    compressor, one linear layer on the frozen backbone features of ``student_run``,
    trained so that its batch distances match the teacher's (same objectives and
    batches as :func:`compress_run`). The deployed model is that run's backbone plus
    one linear head: the cost of a single learner, where the teacher costs ``m``
    backbones. Returns the student's :class:`~lossensemble.training.loading.LoadedRun`
    with the compressor attached (its ``embed_fn`` yields ``compressed``) and a dict of
    training facts.
    """
    from lossensemble.training.experiments import independent_embedding
    from lossensemble.training.loading import load_run

    student = load_run(student_run, device=device)
    cfg = student.cfg
    objective = objective or cfg.compression.objective
    epochs = int(epochs if epochs is not None else cfg.compression.epochs)
    if objective not in OBJECTIVES:
        raise UserError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    feats, _, labels = _training_embeddings(student, cfg.eval.batch_size, progress)
    parts = []
    for run in teacher_runs:
        _, emb, teacher_labels = _training_embeddings(load_run(run, device=device), cfg.eval.batch_size, progress)
        if not np.array_equal(teacher_labels, labels):
            raise UserError(f"{run}: its training split differs from {student_run}'s; cannot distil")
        parts.append(emb.numpy())
    teacher = torch.from_numpy(independent_embedding(parts))
    embed_seconds = time.perf_counter() - start
    d = int(cfg.model.embedding_dim)
    compressor = build_compressor("direct", feats.shape[1], d).to(student.device)
    trainer = CompressorTrainer(compressor, "direct", objective, cfg.train.lr.compressor if lr is None else lr)
    steps = max(math.ceil(len(labels) / cfg.data.batch_size), min_steps_per_epoch)
    start = time.perf_counter()
    losses = _fit(trainer, feats.to(student.device), teacher.to(student.device), labels, cfg, epochs, steps)
    student.model.compressor = compressor.eval()
    student.model.compressor_input = compressor_input("direct")
    facts = {"compressor": compressor_meta("direct", feats.shape[1], d, None, objective), "epochs": epochs,
             "steps_per_epoch": steps, "epoch_losses": losses, "teacher_dim": int(teacher.shape[1]),
             "embed_seconds": round(embed_seconds, 3), "train_seconds": round(time.perf_counter() - start, 3)}
    return student, facts


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
    from lossensemble.training.checkpoint import load_checkpoint, save_checkpoint
    from lossensemble.training.loading import load_run
    from lossensemble.training.run import read_json, write_json
    from lossensemble.training.trainer import evaluate_model

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
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.seed)
    model = loaded.model
    start = time.perf_counter()
    feats, ens, labels = _training_embeddings(loaded, cfg.eval.batch_size, progress)
    embed_seconds = time.perf_counter() - start

    in_dim = feats.shape[1] if compressor_input(variant) == "features" else ens.shape[1]
    hidden = 2 * d if variant == "mlp" else None
    compressor = build_compressor(variant, in_dim, dim, hidden=hidden).to(loaded.device)
    trainer = CompressorTrainer(compressor, variant, objective, cfg.train.lr.compressor if lr is None else lr)
    steps = max(math.ceil(len(labels) / cfg.data.batch_size), min_steps_per_epoch)
    start = time.perf_counter()
    losses = _fit(trainer, feats.to(loaded.device), ens.to(loaded.device), labels, cfg, epochs, steps)
    train_seconds = time.perf_counter() - start

    model.compressor = compressor.eval()
    model.compressor_input = compressor_input(variant)
    meta = compressor_meta(variant, in_dim, dim, hidden, objective)
    test_set = _test_split(cfg)
    metrics = evaluate_model(loaded.embed_fn(), test_set, cfg, loaded.device, progress=progress)

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


def _test_split(cfg):
    from lossensemble.data import build_dataset

    d = cfg.data
    return build_dataset(d.name, "test", root=d.root, image_size=d.image_size, val_fraction=d.val_fraction,
                         **d.options)
