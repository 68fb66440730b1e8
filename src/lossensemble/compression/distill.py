"""Distilling the independent ensemble (separately trained single-loss runs) into one head.

Beyond the paper: the teacher costs ``m`` backbones at query time, the student one.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from lossensemble.compression.common import fit_compressor, training_embeddings
from lossensemble.errors import UserError
from lossensemble.losses.distance_matching import OBJECTIVES
from lossensemble.models import build_compressor, compressor_meta, independent_embedding
from lossensemble.training.joint import CompressorTrainer
from lossensemble.training.loading import load_run

__all__ = ["distill_independent"]


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
    student = load_run(student_run, device=device)
    cfg = student.cfg
    objective = objective or cfg.compression.objective
    epochs = int(epochs if epochs is not None else cfg.compression.epochs)
    if objective not in OBJECTIVES:
        raise UserError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    feats, _, labels = training_embeddings(student, cfg.eval.batch_size, progress)
    parts = []
    for run in teacher_runs:
        _, emb, teacher_labels = training_embeddings(load_run(run, device=device), cfg.eval.batch_size, progress)
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
    losses = fit_compressor(trainer, feats.to(student.device), teacher.to(student.device), labels, cfg, epochs, steps)
    student.model.set_compressor(compressor.eval(), "direct")
    facts = {"compressor": compressor_meta("direct", feats.shape[1], d, None, objective), "epochs": epochs,
             "steps_per_epoch": steps, "epoch_losses": losses, "teacher_dim": int(teacher.shape[1]),
             "embed_seconds": round(embed_seconds, 3), "train_seconds": round(time.perf_counter() - start, 3)}
    return student, facts
