"""The trainer: one loop for any number of heads (a single head is the single-loss baseline).

Written here because the ensemble's training step (several losses on one backbone,
combined by a :class:`~lossensemble.losses.weighting.LossWeighting`) is the
library's own method. Everything else comes from PyTorch (optimisers, schedules,
autocast), the data layer (class-balanced batches) and the evaluation layer.

Reproducibility: the sampler and the global torch RNG are re-seeded from
``(seed, epoch)`` at the start of every epoch, so resuming from an epoch-end
checkpoint replays exactly what an uninterrupted run does. A run interrupted by
SIGINT/SIGTERM saves a mid-epoch checkpoint (step and RNG state included); its
resume is exact with ``data.num_workers=0``.
"""

from __future__ import annotations

import logging
import math
import platform
import signal
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from lossensemble import __version__
from lossensemble.config import Config, config_to_dict, load_config, save_config
from lossensemble.errors import LossEnsembleError, UserError
from lossensemble.training import distributed
from lossensemble.training.checkpoint import (
    flatten_optimizer_state,
    load_checkpoint,
    load_modules,
    save_checkpoint,
    unflatten_optimizer_state,
)
from lossensemble.training.run import RunPaths, check_writable, write_history, write_json

__all__ = [
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "TrainingModule",
    "resolve_device",
    "build_components",
]

log = logging.getLogger("lossensemble.training")

# Consecutive steps with non-finite gradients tolerated (skipped) before giving up.
MAX_BAD_STEPS = 10


class TrainingDiverged(UserError):
    """A loss became NaN/inf; the last good checkpoint is kept."""


class TrainingInterrupted(LossEnsembleError):
    """SIGINT/SIGTERM arrived; a checkpoint was saved and the run can be resumed."""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; errors are one line."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"train.device: unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device: {name} asked for but CUDA is not available (use cpu or auto)")
    return device


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    import random

    random.seed(seed)


class _SkipFirst(torch.utils.data.Sampler):
    """A batch sampler that skips the first ``skip`` batches of another (mid-epoch resume)."""

    def __init__(self, batch_sampler, skip: int) -> None:
        self.batch_sampler = batch_sampler
        self.skip = skip

    def __iter__(self) -> Iterator[list[int]]:
        for i, batch in enumerate(self.batch_sampler):
            if i >= self.skip:
                yield batch

    def __len__(self) -> int:
        return max(0, len(self.batch_sampler) - self.skip)


def build_components(cfg: Config, num_classes: int):
    """Build the model, the losses and the weighting of a config (shared by train/evaluate/export)."""
    from lossensemble.losses import build_loss
    from lossensemble.losses.weighting import build_weighting
    from lossensemble.models import build_model

    names = [loss.name for loss in cfg.losses]
    losses = nn.ModuleList(
        [
            build_loss(
                loss.name, num_classes=num_classes, embedding_dim=cfg.model.embedding_dim, **loss.options
            )
            for loss in cfg.losses
        ]
    )
    model = build_model(cfg.model, names)
    weighting = build_weighting(cfg.weighting, names)
    return model, losses, weighting


class TrainingModule(nn.Module):
    """Everything that turns a batch into the objective: the unit DistributedDataParallel wraps.

    Holds the model's backbone and heads, the losses and the weighting as submodules, so
    that one DDP wrapper broadcasts and gradient-averages all their parameters (the
    losses' proxies and classifiers and the learned loss weights are not part of the
    model). The model itself is kept unregistered: its optional compressor, trained
    separately on detached inputs, stays outside DDP.

    ``forward(images, labels, amp)`` returns ``(features, heads, raw, total, info)``:
    ``raw`` the raw loss values (detached; on several processes their mean over ranks,
    identical everywhere), ``total`` the weighted objective (with the diversity term) and
    ``info`` the weighting's floats for logging. On several processes, losses without
    parameters of their own (pair and triplet losses) are computed on the embeddings of
    all ranks (:func:`~lossensemble.training.distributed.gather_with_grad`); the others
    (proxy, classification) on the local batch.
    """

    def __init__(self, model: nn.Module, losses: nn.ModuleList, weighting: nn.Module, diversity: float = 0.0,
                 diversity_margin: float = 2.0) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.heads = model.heads
        self.losses = losses
        self.weighting = weighting
        self._model = (model,)  # a tuple: not registered as a submodule
        self.diversity = float(diversity)
        self.diversity_margin = float(diversity_margin)
        self.gathered = [not any(True for _ in loss.parameters()) for loss in losses]

    def train(self, mode: bool = True) -> "TrainingModule":
        """Set the training mode through the model's own ``train`` (it keeps frozen batch norms frozen)."""
        self.training = mode
        self._model[0].train(mode)
        self.losses.train(mode)
        self.weighting.train(mode)
        return self

    def forward(self, images: torch.Tensor, labels: torch.Tensor, amp: bool = False):
        model = self._model[0]
        with torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext():
            feats, heads = model(images, return_features=True)
        heads = [h.float() for h in heads]
        raw = self._raw_losses(heads, labels)
        synced = distributed.all_reduce_mean(raw)
        # The weighting sees the mean over ranks (its running means and logged values agree
        # everywhere) with the gradient of the local losses.
        weighted_input = raw - raw.detach() + synced if distributed.is_distributed() else raw
        shared = feats if getattr(self.weighting, "needs_shared_tensor", False) else None
        total, info = self.weighting(weighted_input, shared=shared)
        if self.diversity > 0 and len(heads) > 1:
            from lossensemble.losses import diversity_penalty

            div = diversity_penalty([F.normalize(h, dim=1) for h in heads], self.diversity_margin)
            total = total + self.diversity * div
            info["diversity"] = float(all_reduce_mean_float(div))
        return feats, heads, synced, total, info

    def _raw_losses(self, heads: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """One raw loss per head; gathered across ranks for the losses without parameters."""
        sizes = all_labels = None
        if distributed.is_distributed() and any(self.gathered):
            sizes = distributed.batch_sizes(labels.shape[0], labels.device)
            all_labels = distributed.all_gather_labels(labels, sizes)
        values = []
        for head, loss, gathered in zip(heads, self.losses, self.gathered):
            x = F.normalize(head, dim=1) if loss.normalize else head
            if sizes is not None and gathered:
                values.append(loss(distributed.gather_with_grad(x, sizes), all_labels))
            else:
                values.append(loss(x, labels))
        return torch.stack(values)


def all_reduce_mean_float(x: torch.Tensor) -> float:
    """A scalar's mean over ranks as a float (the value itself on one process)."""
    return float(distributed.all_reduce_mean(x.detach()))


class Trainer:
    """Train an ensemble (or single-loss) model described by a :class:`Config` into a run folder."""

    def __init__(self, cfg: Config, run_dir: str | Path, *, resume: bool = False, progress: bool | None = None):
        self.paths = RunPaths(Path(run_dir))
        if resume:
            if not self.paths.last.is_file():
                raise UserError(f"--resume: no checkpoint in {self.paths.root} (expected {self.paths.last})")
            cfg = load_config(self.paths.config)
        elif self.paths.last.is_file():
            raise UserError(
                f"{self.paths.root} already holds a run; resume it with --resume or choose another output folder"
            )
        self.cfg = cfg
        self.resume = resume
        self.dist = distributed.setup_from_env(resolve_device(cfg.train.device))
        self.progress = (cfg.train.progress if progress is None else progress) and self.dist.is_main
        if self.dist.is_main:
            check_writable(self.paths.root)
            self.paths.checkpoints.mkdir(parents=True, exist_ok=True)
            if not resume:
                save_config(cfg, self.paths.config)
        else:
            logging.getLogger("lossensemble").setLevel(logging.WARNING)  # only rank 0 logs progress
        self._stop_signal: int | None = None
        self._partial: dict[str, dict] | None = None  # running sums of an interrupted epoch
        self._resume_rng: torch.Tensor | None = None
        self.history: list[dict[str, Any]] = []
        self.epoch = 0  # epochs completed
        self.step_in_epoch = 0
        self.global_step = 0
        self.best_score = -math.inf
        self.best_epoch = -1
        self.train_seconds = 0.0
        self.skipped_images = 0
        self.skipped_steps = 0
        self._setup()

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        from lossensemble.data import MPerClassBatchSampler, build_dataset

        cfg = self.cfg
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.device = self.dist.device
        _seed_everything(cfg.seed)  # the same on every rank: identical initial models
        from lossensemble.losses import validate_losses

        validate_losses(cfg.losses, cfg.model.embedding_dim)  # fail fast, before data is built
        d = cfg.data
        common = dict(root=d.root, image_size=d.image_size, val_fraction=d.val_fraction, **d.options)
        self.train_set = build_dataset(d.name, "train", **common)
        self.test_set = build_dataset(d.name, "test", **common)
        self.val_set = build_dataset(d.name, "val", **common) if d.val_fraction > 0 else None
        if self.train_set.num_classes * d.m_per_class < d.batch_size:
            raise UserError(
                f"data.batch_size: {d.batch_size} needs {d.batch_size // d.m_per_class} classes per batch but the "
                f"training split has only {self.train_set.num_classes}"
            )
        self.sampler = MPerClassBatchSampler(
            self.train_set.labels, d.m_per_class, d.batch_size, num_batches=cfg.train.steps_per_epoch, seed=cfg.seed,
            rank=self.dist.rank, world_size=self.dist.world_size,
        )
        self.steps_per_epoch = len(self.sampler)
        self.model, self.losses, self.weighting = build_components(cfg, self.train_set.num_classes)
        self.model.to(self.device)
        self.losses.to(self.device)
        self.weighting.to(self.device)
        self.optimizer = self._build_optimizer()
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=cfg.train.lr_decay)
        self.compression = None
        if cfg.compression.enabled:
            from lossensemble.compression import JointCompression

            self.compression = JointCompression(self.model, cfg, self.device)
        if self.resume:
            self._load_state(self.paths.last)
        self.use_amp = cfg.train.amp and self.device.type == "cuda"
        self.train_module = self._wrap_for_training()
        n_params = sum(p.numel() for p in self.model.parameters())
        log.info(
            "data %s: %d train classes / %d images, %d test classes / %d images%s; model %s with %d heads "
            "(%.2fM parameters) on %s",
            d.name, self.train_set.num_classes, len(self.train_set), self.test_set.num_classes, len(self.test_set),
            f", {self.val_set.num_classes} val classes" if self.val_set is not None else "",
            cfg.model.backbone, len(cfg.losses), n_params / 1e6, self.device,
        )

    def _wrap_for_training(self) -> nn.Module:
        """The module whose forward gives the objective: a :class:`TrainingModule`, DDP-wrapped on several ranks.

        Called after a resume has loaded the state, so DDP's broadcast from rank 0 and
        the compressor's broadcast copy the same values everywhere.
        """
        w = self.cfg.weighting
        module = TrainingModule(self.model, self.losses, self.weighting, w.diversity, w.diversity_margin)
        if not self.dist.active:
            return module
        if self.compression is not None:
            distributed.broadcast_module(self.model.compressor)
            distributed.average_gradients_hooks(self.model.compressor)
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def _build_optimizer(self) -> torch.optim.Optimizer:
        t = self.cfg.train
        groups = [
            {"name": "backbone", "params": [p for p in self.model.backbone.parameters() if p.requires_grad],
             "lr": t.lr.backbone, "weight_decay": t.weight_decay},
            {"name": "heads", "params": list(self.model.heads.parameters()), "lr": t.lr.heads,
             "weight_decay": t.weight_decay},
            {"name": "loss_params", "params": list(self.losses.parameters()), "lr": t.lr.loss_params,
             "weight_decay": t.weight_decay},
            {"name": "weights", "params": list(self.weighting.parameters()), "lr": t.lr.weights, "weight_decay": 0.0},
        ]
        groups = [g for g in groups if g["params"]]
        if t.optimizer == "adam":
            return torch.optim.Adam(groups, eps=t.eps)
        if t.optimizer == "adamw":
            return torch.optim.AdamW(groups, eps=t.eps)
        return torch.optim.SGD(groups, momentum=t.momentum)

    # ------------------------------------------------------------------ state
    def _state_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"losses.{k}": v for k, v in self.losses.state_dict().items()})
        tensors.update({f"weighting.{k}": v for k, v in self.weighting.state_dict().items()})
        return tensors

    def _save_state(self, path: Path, rng_state: torch.Tensor | None = None) -> None:
        # With a process group every rank must call this (the RNG states are gathered); rank 0 writes.
        rng_states = distributed.gather_object_to_main(rng_state) if rng_state is not None else None
        if not self.dist.is_main:
            return
        tensors = self._state_tensors()
        opt_tensors, opt_meta = flatten_optimizer_state(self.optimizer)
        tensors.update(opt_tensors)
        if self.compression is not None:
            tensors.update(self.compression.state_tensors())
        if rng_states is not None:
            tensors["rng.torch"] = rng_states[0]
            tensors.update({f"rng.torch.rank{r}": st for r, st in enumerate(rng_states) if r > 0})
        state = {
            "version": __version__,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "best_score": self.best_score if math.isfinite(self.best_score) else None,
            "best_epoch": self.best_epoch,
            "train_seconds": self.train_seconds,
            "skipped_images": self.skipped_images,
            "skipped_steps": self.skipped_steps,
            "history": self.history,
            "partial": self._partial,
            "optimizer": opt_meta,
            "scheduler": self.scheduler.state_dict(),
            "head_names": self.model.head_names,
            "num_classes": self.train_set.num_classes,
            "compressor": self.compression.meta() if self.compression is not None else None,
            "weights": self.weighting.weights().tolist(),
        }
        save_checkpoint(path, tensors, state)

    def _load_state(self, path: Path) -> None:
        tensors, state = load_checkpoint(path)
        self._load_modules(tensors)
        self.optimizer.load_state_dict(unflatten_optimizer_state(tensors, state["optimizer"]))
        self.scheduler.load_state_dict(state["scheduler"])
        if self.compression is not None:
            self.compression.load_state_tensors(tensors)
        self.epoch = state["epoch"]
        self.step_in_epoch = state["step_in_epoch"]
        self.global_step = state["global_step"]
        self.best_score = state["best_score"] if state["best_score"] is not None else -math.inf
        self.best_epoch = state["best_epoch"]
        self.train_seconds = state["train_seconds"]
        self.skipped_images = state["skipped_images"]
        self.skipped_steps = state.get("skipped_steps", 0)
        self.history = state["history"]
        self._partial = state.get("partial")
        self._resume_rng = tensors.get(f"rng.torch.rank{self.dist.rank}", tensors.get("rng.torch"))
        log.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.step_in_epoch)

    def _load_modules(self, tensors: dict[str, torch.Tensor]) -> None:
        load_modules({"model.": self.model, "losses.": self.losses, "weighting.": self.weighting}, tensors,
                     str(self.paths.last))

    # ------------------------------------------------------------------ signals
    @contextmanager
    def _signals(self):
        """Turn SIGINT/SIGTERM into a flag checked between steps (main thread only)."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self._stop_signal is not None:  # second signal: stop now
                raise KeyboardInterrupt
            self._stop_signal = signum
            log.warning("received %s: finishing the current step, then saving a checkpoint",
                        signal.Signals(signum).name)

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    # ------------------------------------------------------------------ training
    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float] | None:
        """One optimisation step; returns per-step values for logging, None when the step was skipped."""
        cfg = self.cfg
        names = self.model.head_names
        feats, heads, raw, total, info = self.train_module(images, labels, amp=self.use_amp)
        bad = [n for n, v in zip(names, raw.tolist()) if not math.isfinite(v)]
        if bad:
            raise TrainingDiverged(
                f"loss {', '.join(bad)} became non-finite at epoch {self.epoch + 1}, step {self.step_in_epoch + 1}; "
                f"the last good checkpoint is kept in {self.paths.last} (try a lower learning rate or "
                f"gradient clipping)"
            )
        if not torch.isfinite(total):
            raise TrainingDiverged(f"the weighted total loss became non-finite at epoch {self.epoch + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        clip = cfg.train.grad_clip if cfg.train.grad_clip is not None else math.inf
        norm = torch.nn.utils.clip_grad_norm_(params, clip)
        if not torch.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            self._bad_steps += 1
            self.skipped_steps += 1
            log.warning("non-finite gradient at step %d: step skipped (%d in a row)", self.global_step + 1,
                        self._bad_steps)
            if self._bad_steps >= MAX_BAD_STEPS:
                raise TrainingDiverged(
                    f"{MAX_BAD_STEPS} consecutive steps had non-finite gradients; stopped, the last good "
                    f"checkpoint is kept in {self.paths.last}"
                )
            return None
        self._bad_steps = 0
        self.optimizer.step()
        if self.compression is not None:
            info.update(self.compression.step(feats.detach().float(), [h.detach() for h in heads],
                                              self.weighting.weights().detach()))
        out = {f"loss_{n}": float(v) for n, v in zip(names, raw.tolist())}
        out["loss_total"] = all_reduce_mean_float(total)
        out.update(info)
        return out

    def _epoch_loader(self, epoch: int, skip: int):
        from lossensemble.data import collate_batch

        self.sampler.set_epoch(epoch)
        batch_sampler = _SkipFirst(self.sampler, skip) if skip else self.sampler
        return torch.utils.data.DataLoader(
            self.train_set,
            batch_sampler=batch_sampler,
            num_workers=self.cfg.data.num_workers,
            collate_fn=collate_batch,
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
        )

    def fit(self) -> dict[str, dict[str, float]]:
        """Train to the configured number of epochs, evaluating and checkpointing; returns test metrics."""
        root = logging.getLogger("lossensemble")
        file_handler: logging.Handler = logging.NullHandler()
        if self.dist.is_main:
            file_handler = logging.FileHandler(self.paths.log, encoding="utf-8")
            file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            if root.level == logging.NOTSET or root.level > logging.INFO:
                root.setLevel(logging.INFO)
        root.addHandler(file_handler)
        self._bad_steps = 0
        try:
            with self._signals():
                while self.epoch < self.cfg.train.epochs:
                    self._run_epoch()
            return self._finish()
        finally:
            root.removeHandler(file_handler)
            file_handler.close()

    def _run_epoch(self) -> None:
        cfg = self.cfg
        epoch = self.epoch
        skip = self.step_in_epoch
        torch.manual_seed(cfg.seed * 100_003 + epoch + 1_000_003 * self.dist.rank)  # rank 0: as one process
        self.model.train()
        self.losses.train()
        self.weighting.train()
        partial = self._partial or {}
        sums: dict[str, float] = dict(partial.get("sums", {}))
        counts: dict[str, int] = dict(partial.get("counts", {}))
        self._partial = None
        # Creating the iterator draws from the global RNG (worker base seed), so a mid-epoch
        # resume restores the saved RNG state only after it exists.
        loader = iter(self._epoch_loader(epoch, skip))
        if skip and self._resume_rng is not None:
            torch.set_rng_state(self._resume_rng)
        self._resume_rng = None
        bar = tqdm(
            total=self.steps_per_epoch, initial=skip, desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
            disable=not self.progress, leave=False, dynamic_ncols=True,
        )
        start = time.perf_counter()
        epoch_skipped = 0
        try:
            for images, labels, n_skipped in loader:
                epoch_skipped += n_skipped
                n_labels = labels.numel()
                if self.dist.active:  # every rank takes the same decisions
                    n_labels, stop = distributed.agree(n_labels, self._stop_signal is not None, self.device)
                    if stop:
                        self._stop_signal = self._stop_signal or signal.SIGTERM
                        break
                if n_labels < 2:
                    self.step_in_epoch += 1
                    continue
                values = self.train_step(images.to(self.device, non_blocking=True), labels.to(self.device))
                self.step_in_epoch += 1
                self.global_step += 1
                if values is not None:
                    for k, v in values.items():
                        sums[k] = sums.get(k, 0.0) + v
                        counts[k] = counts.get(k, 0) + 1
                    if self.progress:
                        post = {"loss": f"{values['loss_total']:.3f}"}
                        post.update({k[7:]: f"{v:.2f}" for k, v in values.items() if k.startswith("weight_")})
                        bar.set_postfix(post, refresh=False)
                bar.update(1)
                if self._stop_signal is not None:
                    break
        finally:
            bar.close()
            self.train_seconds += time.perf_counter() - start
            self.skipped_images += epoch_skipped
            if epoch_skipped:
                log.warning("epoch %d: %d unreadable images skipped", epoch + 1, epoch_skipped)
        distributed.broadcast_module(self.model, buffers_only=True)  # rank 0's batch-norm statistics everywhere
        if self._should_stop() and self.step_in_epoch < self.steps_per_epoch:
            self._interrupt(sums, counts)
        row: dict[str, Any] = {"epoch": epoch + 1, "step": self.global_step}
        row.update({k: sums[k] / counts[k] for k in sums})
        row["lr_backbone"] = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        self.epoch += 1
        self.step_in_epoch = 0
        last = self.epoch == cfg.train.epochs
        if self.epoch % cfg.train.eval_every == 0 or last:
            self._evaluate_into(row)
        self.history.append(row)
        if self.dist.is_main:
            write_history(self.paths.history, self.history)
        if self.epoch % cfg.train.checkpoint_every == 0 or last:
            self._save_state(self.paths.last)
        log.info("epoch %d/%d: %s", self.epoch, cfg.train.epochs, _short(row))
        if self._should_stop():
            self._interrupt({}, {}, at_epoch_end=True)

    def _should_stop(self) -> bool:
        """Whether a stop signal arrived (on any rank: one collective when distributed)."""
        if not self.dist.active:
            return self._stop_signal is not None
        _, stop = distributed.agree(0, self._stop_signal is not None, self.device)
        if stop and self._stop_signal is None:
            self._stop_signal = signal.SIGTERM
        return stop

    def _interrupt(self, sums, counts, at_epoch_end: bool = False) -> None:
        if not at_epoch_end:
            # Mid-epoch: keep running sums in the metadata so the epoch's means stay right.
            self._partial = {"sums": sums, "counts": counts}
            self._save_state(self.paths.last, rng_state=torch.get_rng_state())
        raise TrainingInterrupted(
            f"interrupted at epoch {self.epoch + (0 if at_epoch_end else 1)}; checkpoint saved. "
            f"Resume with: lossensemble train --resume {self.paths.root}"
        )

    # ------------------------------------------------------------------ evaluation
    def embed_fn(self):
        weights = self.weighting.weights().detach().to(self.device)

        def fn(images: torch.Tensor) -> dict[str, torch.Tensor]:
            amp = torch.autocast("cuda", dtype=torch.bfloat16) if self.use_amp else nullcontext()
            with amp:
                return self.model.embed(images, weights)

        return fn

    def evaluate(self, dataset) -> dict[str, dict[str, float]]:
        """Metrics of every embedding (heads, ensemble, compressed) on ``dataset``.

        On several ranks each embeds every ``world_size``-th item; rank 0 computes the
        metrics once and sends them to all (every rank must call this).
        """
        if not self.dist.active:
            return evaluate_model(self.embed_fn(), dataset, self.cfg, self.device, progress=self.progress)
        return evaluate_model_sharded(self.embed_fn(), dataset, self.cfg, self.device, progress=self.progress)

    def _evaluate_into(self, row: dict[str, Any]) -> None:
        self.model.eval()
        test = self.evaluate(self.test_set)
        for emb, metrics in test.items():
            for k, v in metrics.items():
                row[f"test/{emb}/{k}"] = v
        score = test["ensemble"]["map@r"]
        if self.val_set is not None:
            val = self.evaluate(self.val_set)
            for emb, metrics in val.items():
                for k, v in metrics.items():
                    row[f"val/{emb}/{k}"] = v
            score = val["ensemble"]["map@r"]
        self._last_test = test
        if score > self.best_score:
            self.best_score = score
            self.best_epoch = self.epoch
            self._save_state(self.paths.best)
        self.model.train()

    def _finish(self) -> dict[str, dict[str, float]]:
        test = getattr(self, "_last_test", None)
        if test is None:  # resumed after the last epoch finished: evaluate again
            self.model.eval()
            test = self.evaluate(self.test_set)
        if not self.dist.is_main:
            return test
        write_json(self.paths.metrics, test)
        steps = max(self.global_step - self.skipped_steps, 1)
        summary = {
            "version": __version__,
            "epochs": self.epoch,
            "steps": self.global_step,
            "skipped_steps": self.skipped_steps,
            "skipped_images": self.skipped_images,
            "train_seconds": round(self.train_seconds, 3),
            "seconds_per_step": self.train_seconds / steps,
            "best_epoch": self.best_epoch,
            "selection": "val/ensemble/map@r" if self.val_set is not None else "test/ensemble/map@r",
            "weights": dict(zip(self.model.head_names, self.weighting.weights().tolist())),
            "embedding_sizes": {k: int(v) for k, v in self._embedding_sizes().items()},
            "device": str(self.device),
            "world_size": self.dist.world_size,
            "global_batch_size": self.cfg.data.batch_size * self.dist.world_size,
            # Training throughput over all ranks (unreadable images and skipped steps aside).
            "images_per_second": round(self.cfg.data.batch_size * self.dist.world_size * steps
                                       / max(self.train_seconds, 1e-9), 2),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "config": config_to_dict(self.cfg),
        }
        write_json(self.paths.summary, summary)
        if self.skipped_images:
            log.warning("%d unreadable images were skipped during training", self.skipped_images)
        log.info("finished: results in %s", self.paths.root)
        return test

    def _embedding_sizes(self) -> dict[str, int]:
        d = self.cfg.model.embedding_dim
        sizes = {f"heads.{n}": d for n in self.model.head_names}
        sizes["ensemble"] = d * len(self.model.head_names)
        if self.model.compressor is not None:
            sizes["compressed"] = self.compression.dim if self.compression is not None else d
        return sizes


def evaluate_model(embed_fn, dataset, cfg: Config, device, progress: bool = False) -> dict[str, dict[str, float]]:
    """Embed ``dataset`` and compute the metrics of every named embedding."""
    from lossensemble.evaluation.extract import extract_embeddings

    embeddings, labels, kept = extract_embeddings(
        embed_fn, dataset, batch_size=cfg.eval.batch_size, num_workers=cfg.data.num_workers,
        device=device, progress=progress, max_items=cfg.eval.max_items, seed=cfg.seed,
    )
    return metrics_of_embeddings(embeddings, labels, kept, dataset, cfg)


def evaluate_model_sharded(embed_fn, dataset, cfg: Config, device, progress: bool = False) -> dict[str, dict[str, float]]:
    """:func:`evaluate_model` with the embedding split across ranks; every rank gets rank 0's metrics."""
    from lossensemble.evaluation.extract import extract_embeddings

    indices = _evaluation_indices(len(dataset), cfg.eval.max_items, cfg.seed)
    mine = indices[distributed.rank() :: distributed.world_size()]
    shard = extract_embeddings(
        embed_fn, dataset, batch_size=cfg.eval.batch_size, num_workers=cfg.data.num_workers,
        device=device, progress=progress, indices=mine,
    )
    shards = distributed.gather_object_to_main(shard)
    results = None
    if shards is not None:
        results = metrics_of_embeddings(*_merge_shards(shards), dataset, cfg)
    return distributed.broadcast_object(results)


def _evaluation_indices(n: int, max_items: int | None, seed: int) -> np.ndarray:
    """The dataset items evaluated: all, or the same seeded subset ``extract_embeddings`` draws."""
    if max_items is None or max_items >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_items, replace=False))


def _merge_shards(shards: list[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]]):
    """Concatenate per-rank ``(embeddings, labels, kept)`` back into dataset order."""
    kept = np.concatenate([k for _, _, k in shards])
    order = np.argsort(kept, kind="stable")
    labels = np.concatenate([lab for _, lab, _ in shards])[order]
    names = next((list(e) for e, _, _ in shards if e), [])
    embeddings = {n: np.concatenate([e[n] for e, _, _ in shards if n in e])[order] for n in names}
    return embeddings, labels, kept[order]


def metrics_of_embeddings(embeddings: dict[str, np.ndarray], labels: np.ndarray, kept: np.ndarray, dataset,
                          cfg: Config) -> dict[str, dict[str, float]]:
    """The metrics of every named embedding (query/gallery masks taken from ``dataset`` when it has them)."""
    from lossensemble.evaluation import compute_metrics

    is_query = getattr(dataset, "is_query", None)
    is_gallery = getattr(dataset, "is_gallery", None)
    extra = {}
    if is_query is not None and is_gallery is not None:
        extra = {"is_query": np.asarray(is_query)[kept], "is_gallery": np.asarray(is_gallery)[kept]}
    results = {}
    for name, emb in embeddings.items():
        results[name] = compute_metrics(
            emb, labels, k=tuple(cfg.eval.k), distance=cfg.eval.distance, nmi=cfg.eval.nmi, **extra
        )
    return results


def _short(row: dict[str, Any]) -> str:
    keys = [k for k in row if k.startswith("loss_") or k.startswith("weight_") or k == "test/ensemble/recall@1"
            or k == "test/ensemble/map@r"]
    return ", ".join(f"{k}={row[k]:.4g}" for k in keys)
