"""Distillation into one network: a fresh backbone and one head trained end to end to reproduce a teacher's distances.

Beyond the paper (issue #15, "distillation into one network"). Where
:func:`~lossensemble.compression.distill_independent` fits a linear head on a *frozen*
backbone, the student here is a whole single-loss model (the config's backbone and one
``embedding_dim`` head, initialised from the config's seed) whose backbone is trained
too. The teacher is any frozen embedding of finished runs: the independent ensemble
(several single-loss runs, each run's embedding L2-normalised and scaled by ``sqrt(1/m)``,
exactly :func:`~lossensemble.models.independent_embedding`) or one run's ``ensemble``
embedding (the shared, learned ensemble).

Training: the batches are those of training (class-balanced, ``data.m_per_class`` per
class, training-split augmentation); the teacher embeds the *same* augmented images (eval
mode, no gradient) and the loss is :func:`~lossensemble.losses.distance_matching.distance_matching_loss`
between the student's L2-normalised embedding and the teacher's, plus ``label_weight``
times the student's own loss (the config's one loss, with its parameters) on the labels.
The optimiser and learning rates are training's (:func:`~lossensemble.training.optim.build_optimizer`,
decayed per epoch by ``train.lr_decay``; float32, no autocast); the student trains ``train.epochs`` epochs of
``factor`` times a single run's steps per epoch.

Output: ``out_dir`` is an ordinary run folder (config.yaml with the one loss,
``checkpoints/last.safetensors`` in training's format, marked not resumable,
history.csv with the losses per epoch, distillation.json with the facts), so
:func:`~lossensemble.training.loading.load_run`, ``evaluate`` and ``export`` read it; the
student's embedding is its head, ``heads.<loss>``. Test metrics are written by the caller
(:mod:`lossensemble.experiments.derived`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from lossensemble import __version__
from lossensemble.config import Config
from lossensemble.data import MPerClassBatchSampler, build_split, collate_batch
from lossensemble.errors import UserError
from lossensemble.io import write_json
from lossensemble.losses.distance_matching import OBJECTIVES, distance_matching_loss
from lossensemble.models import build_components, ensemble_embedding
from lossensemble.training.checkpoint import save_checkpoint
from lossensemble.training.exceptions import TrainingDiverged
from lossensemble.training.loading import LoadedRun, apply_model_normalisation, load_run
from lossensemble.training.optim import build_optimizer
from lossensemble.training.run import RunPaths, check_run_folder, prepare_run_folder, write_history

__all__ = ["Teacher", "student_loss", "build_student", "train_student"]


class Teacher:
    """The frozen teacher embedding of a batch: one embedding of each of ``runs`` (eval mode, no gradient).

    With one run its embedding is used as is (e.g. a learned ensemble's ``ensemble``); with
    several, the parts are joined like :func:`~lossensemble.models.independent_embedding`
    (each L2-normalised and scaled by ``sqrt(1/m)``), here as the equal-weight
    :func:`~lossensemble.models.ensemble_embedding`, which is the same vector.
    """

    def __init__(self, runs: Sequence[LoadedRun], embeddings: Sequence[str]) -> None:
        if not runs or len(runs) != len(embeddings):
            raise UserError(f"a teacher needs one embedding name per run, got {len(runs)} runs and "
                            f"{len(embeddings)} names")
        self.runs = list(runs)
        self.embeddings = list(embeddings)
        self.fns = [run.embed_fn(names=[e]) for run, e in zip(self.runs, self.embeddings)]

    @classmethod
    def load(cls, run_dirs: Sequence[str | Path], embeddings: Sequence[str], device=None) -> "Teacher":
        """The teacher of finished run folders (their last checkpoints)."""
        return cls([load_run(r, device=device) for r in run_dirs], embeddings)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        parts = []
        for run, name, fn in zip(self.runs, self.embeddings, self.fns):
            run.model.eval()
            out = fn(images.to(run.device))
            if name not in out:
                raise UserError(f"{run.paths.root}: its model has no {name!r} embedding")
            parts.append(out[name].float())
        if len(parts) == 1:
            return parts[0]
        return ensemble_embedding(parts, [1.0 / len(parts)] * len(parts))


def student_loss(student_heads: torch.Tensor, teacher: torch.Tensor, objective: str) -> torch.Tensor:
    """The distillation term: the student's L2-normalised embedding's in-batch distances against the teacher's.

    The paper's ``frobenius`` objective divides the norm by ``n^2`` (about 1e-6 on a batch of 64),
    which leaves the gradients of a whole network near Adam's epsilon: trained end to end, the
    student barely moved (R@1 8% on glyphs-compare after 480 steps). Here that term is multiplied
    back by ``n^2``: the Frobenius norm of the difference of the two normalised distance matrices.
    """
    student = F.normalize(student_heads.float(), dim=1)
    loss = distance_matching_loss(student, teacher.detach(), objective)
    return loss * student.shape[0] ** 2 if objective == "frobenius" else loss


def _check(cfg: Config, objective: str, label_weight: float, factor: float) -> None:
    if len(cfg.losses) != 1:
        raise UserError(f"the student config must have exactly one loss (its head), got {len(cfg.losses)}")
    if objective not in OBJECTIVES:
        raise UserError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if not (isinstance(label_weight, (int, float)) and math.isfinite(label_weight) and label_weight >= 0):
        raise UserError(f"label_weight must be a finite number >= 0, got {label_weight!r}")
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise UserError(f"--student-factor: must be a number > 0, got {factor!r}")


def build_student(cfg: Config):
    """``(training split, model, losses, weighting)``: the untrained student of ``cfg``, initialised from its seed.

    The same components, in the same random sequence, as the trainer builds for ``cfg``;
    the caller's random state is left as it was.
    """
    d = cfg.data
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        train_set = build_split(d, d.train_split)
        if train_set.num_classes * d.m_per_class < d.batch_size:
            raise UserError(f"data.batch_size: {d.batch_size} needs {d.batch_size // d.m_per_class} classes per "
                            f"batch but the training split has only {train_set.num_classes}")
        model, losses, weighting = build_components(cfg, train_set.num_classes)
    apply_model_normalisation(model, cfg, {d.train_split: train_set})  # a timm backbone's own statistics
    return train_set, model, losses, weighting


def _fit(teacher: Teacher, model, label, train_set, sampler, optimizer, cfg: Config, objective: str,
         label_weight: float) -> tuple[list[dict], int, int]:
    """The student's training loop; returns the per-epoch history rows, the steps taken and the skipped images."""
    d, t = cfg.data, cfg.train
    device = next(model.parameters()).device
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=t.lr_decay)
    clip = t.grad_clip if t.grad_clip is not None else math.inf
    history: list[dict] = []
    global_step = 0
    skipped = 0
    for epoch in range(t.epochs):
        model.train()
        sampler.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, num_workers=d.num_workers,
                                             collate_fn=collate_batch, pin_memory=device.type == "cuda")
        sums = {"loss_distill": 0.0, "loss_label": 0.0, "loss_total": 0.0}
        n = 0
        for images, labels, bad in loader:
            skipped += bad
            if len(labels) < 2:
                continue
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            target = teacher(images)
            heads = model(images)[0]
            distill = student_loss(heads, target, objective)
            total = distill
            label_value = torch.zeros(())
            if label_weight > 0:
                label_value = label(F.normalize(heads, dim=1) if label.normalize else heads, labels)
                total = distill + label_weight * label_value
            if not torch.isfinite(total):
                raise TrainingDiverged(f"the student's loss became non-finite at epoch {epoch + 1}; nothing was "
                                       "saved (try a lower learning rate or gradient clipping)")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            if not torch.isfinite(torch.nn.utils.clip_grad_norm_(params, clip)):
                optimizer.zero_grad(set_to_none=True)  # a non-finite gradient: the step is skipped
                continue
            optimizer.step()
            global_step += 1
            n += 1
            for k, v in (("loss_distill", distill), ("loss_label", label_value), ("loss_total", total)):
                sums[k] += float(v.detach())
        history.append({"epoch": epoch + 1, "step": global_step, **{k: v / max(n, 1) for k, v in sums.items()},
                        "lr_backbone": optimizer.param_groups[0]["lr"]})
        scheduler.step()
    return history, global_step, skipped


def train_student(
    teacher: Teacher,
    out_dir: str | Path,
    cfg: Config,
    *,
    objective: str | None = None,
    label_weight: float = 0.0,
    factor: float = 1.0,
) -> tuple[LoadedRun, dict]:
    """Train a one-head student end to end on ``teacher``'s distances into the run folder ``out_dir``.

    ``cfg`` is the student's config: its backbone, ``embedding_dim``, one loss (the head's
    name, and with ``label_weight > 0`` a label loss added with that weight), data, seed and
    learning rates. ``objective`` defaults to ``compression.objective``. The student takes
    ``factor`` times the steps per epoch of a run of ``cfg`` (``train.steps_per_epoch`` or one
    pass), for ``train.epochs`` epochs. Returns the student loaded from its folder and a dict
    of training facts (also in ``distillation.json``). See the module docstring.
    """
    objective = objective or cfg.compression.objective
    _check(cfg, objective, label_weight, factor)
    d, t = cfg.data, cfg.train
    paths = RunPaths(Path(out_dir))
    check_run_folder(paths)  # a folder of other files is never overwritten
    prepare_run_folder(paths, cfg)
    device = teacher.runs[0].device
    train_set, model, losses, weighting = build_student(cfg)
    base_steps = len(MPerClassBatchSampler(train_set.labels, d.m_per_class, d.batch_size,
                                           num_batches=t.steps_per_epoch, seed=cfg.seed))
    steps = max(1, round(base_steps * factor))
    sampler = MPerClassBatchSampler(train_set.labels, d.m_per_class, d.batch_size, num_batches=steps, seed=cfg.seed)
    model.to(device)
    losses.to(device)
    weighting.to(device)
    optimizer = build_optimizer(t, model, losses, weighting)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # augmentation draws: the same for the same seed, caller's RNG kept
        torch.manual_seed(cfg.seed)
        history, global_step, skipped = _fit(teacher, model, losses[0], train_set, sampler, optimizer, cfg,
                                             objective, label_weight)
    train_seconds = time.perf_counter() - start
    model.eval()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"losses.{k}": v for k, v in losses.state_dict().items()})
    tensors.update({f"weighting.{k}": v for k, v in weighting.state_dict().items()})
    facts = {
        "teacher": [str(r.paths.root) for r in teacher.runs], "teacher_embeddings": teacher.embeddings,
        "objective": objective, "label_loss": cfg.losses[0].name if label_weight > 0 else None,
        "label_weight": float(label_weight), "factor": float(factor), "epochs": int(t.epochs),
        "steps_per_epoch": int(steps), "steps": int(global_step), "batch_size": int(d.batch_size),
        "skipped_images": int(skipped), "train_seconds": round(train_seconds, 3),
        "seconds_per_step": train_seconds / max(global_step, 1), "device": str(device),
        "epoch_losses": [h["loss_total"] for h in history],
    }
    state = {"version": __version__, "epoch": int(t.epochs), "step_in_epoch": 0, "global_step": global_step,
             "train_seconds": train_seconds, "history": history, "head_names": model.head_names,
             "num_classes": train_set.num_classes, "compressor": None, "weights": weighting.weights().tolist(),
             "resumable": False, "distilled": facts}
    save_checkpoint(paths.last, tensors, state)
    write_history(paths.history, history)
    write_json(paths.root / "distillation.json", facts)
    return load_run(paths.root, device=str(device)), facts
