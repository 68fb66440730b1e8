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
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from lossensemble import distributed
from lossensemble.config import Config, config_to_dict, load_config
from lossensemble.data import MPerClassBatchSampler, build_split, collate_batch
from lossensemble.errors import UserError
from lossensemble.evaluation import evaluate_model, evaluate_model_sharded
from lossensemble.models import build_components, check_components
from lossensemble.runtime import resolve_device, seed_everything
from lossensemble.training import state as training_state
from lossensemble.training.acceleration import accelerate, evaluation_format
from lossensemble.training.exceptions import NothingToResume, RunExists, TrainingDiverged, TrainingInterrupted
from lossensemble.training.features import frozen_feature_set
from lossensemble.training.loading import apply_model_normalisation
from lossensemble.training.loggers import LoggerContext, build_loggers, epoch_extras, evaluate_keeping
from lossensemble.training.optim import build_optimizer
from lossensemble.training.module import TrainingModule, all_reduce_mean_float
from lossensemble.training.run import (RunPaths, check_run_folder, merge_metrics, prepare_run_folder, run_lock,
                                       write_json)
from lossensemble.training.resume import SkipFirstBatches
from lossensemble.training.signals import StopFlag, catch_stop_signals
from lossensemble.training.summary import run_summary, setup_message, short_row

__all__ = ["Trainer", "TrainingDiverged", "TrainingInterrupted", "RunExists", "NothingToResume"]

log = logging.getLogger("lossensemble.training")

# Consecutive steps with non-finite gradients tolerated (skipped) before giving up.
MAX_BAD_STEPS = 10


class Trainer:
    """Train an ensemble (or single-loss) model described by a :class:`Config` into a run folder.

    Constructing a trainer builds the data, the model and the optimiser and writes the
    run folder's config; it changes no process-wide state (threads, process group, log
    levels, global RNG): those are the caller's (:mod:`lossensemble.runtime`). Under
    ``torchrun``, join the process group first (``runtime.prepare_process``) or pass
    ``dist``.
    """

    def __init__(self, cfg: Config | None, run_dir: str | Path, *, resume: bool = False,
                 progress: bool | None = None, dist: distributed.DistContext | None = None):
        self.paths = RunPaths(Path(run_dir))
        if resume:
            if not self.paths.last.is_file():
                raise NothingToResume(f"no checkpoint to resume in {self.paths.root} (expected {self.paths.last})")
            cfg = load_config(self.paths.config)
        elif self.paths.last.is_file():
            raise RunExists(f"{self.paths.root} already holds a run; resume it or choose another output folder")
        check_run_folder(self.paths)  # a folder of other files is never overwritten
        if cfg is None:
            raise UserError("Trainer needs a config (or resume=True with a run folder)")
        self.cfg = cfg
        self.resume = resume
        self.dist = dist if dist is not None else distributed.current_context(resolve_device(cfg.train.device))
        self.progress = (cfg.train.progress if progress is None else progress) and self.dist.is_main
        self._stop = StopFlag()
        self._bad_steps = 0
        self._partial: dict[str, dict] | None = None  # running sums of an interrupted epoch
        self._resume_rng: torch.Tensor | None = None
        self._last_test: dict | None = None
        self._test_embeddings = None  # (embeddings, labels) of the final test evaluation, for the loggers
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
        if self.dist.is_main:  # only after a successful setup: a failed one leaves no half-made folder
            prepare_run_folder(self.paths, None if resume else cfg)

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        cfg = self.cfg
        d = cfg.data
        self.device = self.dist.device
        self.loggers = build_loggers(cfg.train.logger_entries(), enabled=self.dist.is_main)  # checked up front
        # Components are initialised from cfg.seed (the same on every rank) on a forked RNG:
        # the caller's random state is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            check_components(cfg)  # names and options, before any data is built (its random draws are part
            # of the seeded sequence: the initial models are those of every earlier version)
            self.train_set = build_split(d, d.train_split)
            self.test_set = build_split(d, "test")
            self.val_set = build_split(d, "val") if d.val_fraction > 0 else None
            if self.train_set.num_classes * d.m_per_class < d.batch_size:
                raise UserError(
                    f"data.batch_size: {d.batch_size} needs {d.batch_size // d.m_per_class} classes per batch but "
                    f"the training split has only {self.train_set.num_classes}"
                )
            self.sampler = MPerClassBatchSampler(
                self.train_set.labels, d.m_per_class, d.batch_size, num_batches=cfg.train.steps_per_epoch,
                seed=cfg.seed, rank=self.dist.rank, world_size=self.dist.world_size,
            )
            self.steps_per_epoch = len(self.sampler)
            self.model, self.losses, self.weighting = build_components(cfg, self.train_set.num_classes)
            apply_model_normalisation(self.model, cfg, {d.train_split: self.train_set, "test": self.test_set,
                                                        "val": self.val_set})  # a timm backbone's own mean/std
            self.model.to(self.device)
            self.losses.to(self.device)
            self.weighting.to(self.device)
            self.prepare_batch = accelerate(self.model, cfg.train, cfg.model.backbone)  # channels_last, compile
            self.optimizer = build_optimizer(cfg.train, self.model, self.losses, self.weighting)
            self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=cfg.train.lr_decay)
            self.compression = None
            if cfg.compression.enabled:
                from lossensemble.training.joint import JointCompression

                self.compression = JointCompression(self.model, cfg, self.device)
        if self.resume:
            training_state.load_state(self, self.paths.last)
        self.use_amp = cfg.train.amp and self.device.type == "cuda"
        self.loader_set = frozen_feature_set(self) or self.train_set  # cached features of a frozen backbone
        self.train_module = self._wrap_for_training()
        log.info(setup_message(self))

    # ------------------------------------------------------------------ state
    def _state_tensors(self) -> dict[str, torch.Tensor]:
        return training_state.state_tensors(self)

    def _save_state(self, path: Path, rng_state: torch.Tensor | None = None) -> None:
        training_state.save_state(self, path, rng_state)

    def _wrap_for_training(self) -> nn.Module:
        """The module whose forward gives the objective: a :class:`TrainingModule`, DDP-wrapped on several ranks.

        Called after a resume has loaded the state, so DDP's broadcast from rank 0 and
        the compressor's broadcast copy the same values everywhere.
        """
        w = self.cfg.weighting
        module = TrainingModule(self.model, self.losses, self.weighting, w.diversity, w.diversity_margin,
                                features_in=self.loader_set is not self.train_set)
        if not self.dist.active:
            return module
        if self.compression is not None:
            distributed.broadcast_module(self.model.compressor)
            distributed.average_gradients_hooks(self.model.compressor)
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    # ------------------------------------------------------------------ training
    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float] | None:
        """One optimisation step; returns per-step values for logging, None when the step was skipped."""
        cfg = self.cfg
        names = self.model.head_names
        feats, heads, raw, total, info = self.train_module(self.prepare_batch(images), labels, amp=self.use_amp)
        bad = [n for n, v in zip(names, raw.tolist()) if not math.isfinite(v)]
        if bad:
            raise TrainingDiverged(
                f"loss {', '.join(bad)} became non-finite at epoch {self.epoch + 1}, step {self.step_in_epoch + 1}; "
                f"{self._kept_checkpoint()} (try a lower learning rate or gradient clipping)"
            )
        if not torch.isfinite(total):
            raise TrainingDiverged(f"the weighted total loss became non-finite at epoch {self.epoch + 1}; "
                                   f"{self._kept_checkpoint()}")
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
                    f"{MAX_BAD_STEPS} consecutive steps had non-finite gradients; stopped, {self._kept_checkpoint()}"
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

    def _kept_checkpoint(self) -> str:
        """Where the last good state is, in words (only what really exists)."""
        if self.paths.last.is_file():
            return f"the last good checkpoint is kept in {self.paths.last}"
        return "no checkpoint had been written yet (the run stopped before its first checkpoint)"

    def _epoch_loader(self, epoch: int, skip: int):
        self.sampler.set_epoch(epoch)
        batch_sampler = SkipFirstBatches(self.sampler, skip) if skip else self.sampler
        return torch.utils.data.DataLoader(
            self.loader_set,
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
        root.addHandler(file_handler)
        self._bad_steps = 0
        seed_everything(self.cfg.seed)
        level = root.level
        if self.dist.is_main and (level == logging.NOTSET or level > logging.INFO):
            root.setLevel(logging.INFO)  # train.log gets the progress lines; restored below
        elif not self.dist.is_main:
            root.setLevel(logging.WARNING)  # only rank 0 logs progress
        status = "failed"
        try:
            with run_lock(self.paths, self.dist.is_main):  # one writer per run folder
                self.loggers.open(LoggerContext(self.paths.root.resolve(), self.paths.root.resolve().name,
                                                config_to_dict(self.cfg), self.resume, self.global_step))
                with catch_stop_signals(self._stop):
                    while self.epoch < self.cfg.train.epochs:
                        self._run_epoch()
                test, status = self._finish(), "finished"
                return test
        except (TrainingInterrupted, KeyboardInterrupt):
            status = "interrupted"
            raise
        finally:
            root.removeHandler(file_handler)
            root.setLevel(level)
            file_handler.close()
            self.loggers.close(status)  # last: a logger that fails to close leaves the rest restored

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
            disable=None if self.progress else True, leave=False, dynamic_ncols=True,
        )
        start = time.perf_counter()
        epoch_skipped = 0
        try:
            for images, labels, n_skipped in loader:
                epoch_skipped += n_skipped
                n_labels = labels.numel()
                if self.dist.active:  # every rank takes the same decisions
                    n_labels, stop = distributed.agree(n_labels, bool(self._stop), self.device)
                    if stop:
                        self._stop.set()
                        break
                if n_labels < 2:
                    self.step_in_epoch += 1
                    continue
                values = self.train_step(images.to(self.device, non_blocking=True), labels.to(self.device))
                self.step_in_epoch += 1
                self.global_step += 1
                if values is not None:
                    self.loggers.log_step(self.global_step, values)
                    for k, v in values.items():
                        sums[k] = sums.get(k, 0.0) + v
                        counts[k] = counts.get(k, 0) + 1
                    if self.progress:
                        post = {"loss": f"{values['loss_total']:.3f}"}
                        post.update({k[7:]: f"{v:.2f}" for k, v in values.items() if k.startswith("weight_")})
                        bar.set_postfix(post, refresh=False)
                bar.update(1)
                if self._stop:
                    break
        finally:
            bar.close()
            epoch_seconds = time.perf_counter() - start
            self.train_seconds += epoch_seconds
            self.skipped_images += epoch_skipped
            if epoch_skipped:
                log.warning("epoch %d: %d unreadable images skipped", epoch + 1, epoch_skipped)
        distributed.broadcast_module(self.model, buffers_only=True)  # rank 0's batch-norm statistics everywhere
        if self._should_stop() and self.step_in_epoch < self.steps_per_epoch:
            self._interrupt(sums, counts)
        row: dict[str, Any] = {"epoch": epoch + 1, "step": self.global_step}
        row.update({k: sums[k] / counts[k] for k in sums})
        row["lr_backbone"] = self.optimizer.param_groups[0]["lr"]
        extras = epoch_extras(self.optimizer, epoch_seconds, self.step_in_epoch - skip, self.train_seconds)
        self.scheduler.step()
        self.epoch += 1
        self.step_in_epoch = 0
        last = self.epoch == cfg.train.epochs
        if self.epoch % cfg.train.eval_every == 0 or last:
            self._evaluate_into(row)
        self.history.append(row)
        self.loggers.log_epoch(self.history, extras)  # history.csv is the csv logger's
        if self.epoch % cfg.train.checkpoint_every == 0 or last:
            self._save_state(self.paths.last)
        log.info("epoch %d/%d: %s", self.epoch, cfg.train.epochs, short_row(row))
        if self._should_stop():
            self._interrupt({}, {}, at_epoch_end=True)

    def _should_stop(self) -> bool:
        """Whether a stop signal arrived (on any rank: one collective when distributed)."""
        if not self.dist.active:
            return bool(self._stop)
        _, stop = distributed.agree(0, bool(self._stop), self.device)
        if stop:
            self._stop.set()
        return stop

    def _interrupt(self, sums, counts, at_epoch_end: bool = False) -> None:
        if not at_epoch_end:
            # Mid-epoch: keep running sums in the metadata so the epoch's means stay right.
            self._partial = {"sums": sums, "counts": counts}
            self._save_state(self.paths.last, rng_state=torch.get_rng_state())
        raise TrainingInterrupted(
            f"interrupted at epoch {self.epoch + (0 if at_epoch_end else 1)}; checkpoint saved in {self.paths.last}",
            self.paths.root,
        )

    # ------------------------------------------------------------------ evaluation
    def embed_fn(self):
        """``images -> {name: embedding}`` with the current weights (what evaluation calls)."""
        return self.model.embed_fn(self.weighting.weights().detach().to(self.device), amp=self.use_amp)

    def evaluate(self, dataset, keep: bool = False) -> dict[str, dict[str, float]]:
        """Metrics of every embedding (heads, ensemble, compressed) on ``dataset``.

        On several ranks each embeds every ``world_size``-th item; rank 0 computes the
        metrics once and sends them to all (every rank must call this). ``keep`` keeps
        the embeddings for the loggers (one process only; they are not recomputed).
        """
        with evaluation_format(self.model):  # what a loaded or exported model computes
            if keep and not self.dist.active and self.loggers.wants_embeddings:
                test, self._test_embeddings = evaluate_keeping(self.embed_fn(), dataset, device=self.device,
                                                               progress=self.progress, **self.cfg.eval_options())
                return test
            evaluate = evaluate_model_sharded if self.dist.active else evaluate_model
            return evaluate(self.embed_fn(), dataset, device=self.device, progress=self.progress,
                            **self.cfg.eval_options())

    def _evaluate_into(self, row: dict[str, Any]) -> None:
        self.model.eval()
        test = self.evaluate(self.test_set, keep=self.epoch == self.cfg.train.epochs)
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
        test = self._last_test
        if test is None:  # resumed after the last epoch finished: evaluate again
            self.model.eval()
            self._last_test = test = self.evaluate(self.test_set, keep=True)
        if not self.dist.is_main:
            return test
        write_json(self.paths.metrics, merge_metrics(self.paths, test, self.compression is not None))
        summary = run_summary(self)
        write_json(self.paths.summary, summary)
        self.loggers.log_final(self.global_step, test, summary, self._test_embeddings)
        if self.skipped_images:
            log.warning("%d unreadable images were skipped during training", self.skipped_images)
        log.info("finished: results in %s", self.paths.root)
        return test
