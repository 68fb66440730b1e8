"""Methods derived from trained runs without training a new ensemble: the independent ensemble,
its distillation into one head, the compressed embedding of a run, and a new one-head network
distilled end to end from a teacher ensemble (:func:`evaluate_distilled`).

Each writes its result folder (metrics.json, summary.json, the embedding cache) and
is reused while its sources are the same runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from lossensemble.compression import Teacher, compress_run, distill_independent, train_student
from lossensemble.config import Config
from lossensemble.evaluation import compute_metrics
from lossensemble.experiments.embeddings import (
    TestEmbeddings,
    embed_test_split,
    embeddings_cache_path,
    run_test_embeddings,
    save_test_embeddings,
)
from lossensemble.experiments.runs import RunResult, single_loss_config
from lossensemble.experiments.selection import best_single
from lossensemble.errors import UserError
from lossensemble.io import read_json, write_json
from lossensemble.models import independent_embedding
from lossensemble.training.loading import compressed_checkpoint_path
from lossensemble.training.run import RunPaths

import numpy as np

__all__ = ["evaluate_independent", "evaluate_independent_compressed", "evaluate_distilled", "compress_or_reuse"]

log = logging.getLogger("lossensemble.experiments")


def _reused(name: str, paths: RunPaths, sources: list[str]) -> RunResult | None:
    """The earlier result in ``paths`` when it was derived from the same ``sources``."""
    if paths.is_finished() and read_json(paths.summary).get("sources") == sources:
        return RunResult(name, paths.root, read_json(paths.metrics), read_json(paths.summary), True)
    return None


def _score_and_write(name: str, paths: RunPaths, emb: TestEmbeddings, cfg: Config, summary: dict) -> RunResult:
    """Score ``emb``'s one embedding on the test split and write metrics, summary and embedding cache."""
    metrics = compute_metrics(emb.embeddings[name], emb.labels, k=tuple(cfg.eval.k), distance=cfg.eval.distance,
                              nmi=cfg.eval.nmi, **emb.masks())
    paths.root.mkdir(parents=True, exist_ok=True)
    save_test_embeddings(embeddings_cache_path(paths.root, "last"), emb)
    summary = {**summary, "embedding_sizes": {name: int(emb.embeddings[name].shape[1])}}
    write_json(paths.metrics, {name: metrics})
    write_json(paths.summary, summary)
    return RunResult(name, paths.root, {name: metrics}, summary, False)


def evaluate_independent(single_runs: Sequence[Path], embeddings: Sequence[str], cfg: Config, folder: Path,
                         progress: bool = False) -> RunResult:
    """The independent ensemble of ``single_runs`` (embedding ``embeddings[i]`` of run i), evaluated on test.

    Nothing is trained: each run embeds the test split (cached), the vectors are joined
    by :func:`independent_embedding` and scored like any embedding. The result goes to
    ``folder`` (metrics.json, summary.json, the embedding cache) and is reused while
    its sources are the same runs.
    """
    paths = RunPaths(Path(folder))
    sources = [str(Path(p)) for p in single_runs]
    reused = _reused("independent", paths, sources)
    if reused is not None:
        return reused
    parts = [run_test_embeddings(Path(p), "last", progress) for p in single_runs]
    for p, name in zip(parts[1:], sources[1:]):
        if not np.array_equal(p.kept, parts[0].kept) or not np.array_equal(p.labels, parts[0].labels):
            raise UserError(f"{name}: its test split differs from {sources[0]}'s; cannot concatenate embeddings")
    joined = independent_embedding([p.embeddings[e] for p, e in zip(parts, embeddings)])
    first = parts[0]
    emb = TestEmbeddings({"independent": joined}, first.labels, first.kept, first.is_query, first.is_gallery)
    summaries = [read_json(RunPaths(Path(p)).summary) for p in single_runs]
    summary = {
        "sources": sources,
        "seconds_per_step": float(sum(s.get("seconds_per_step", 0.0) for s in summaries)),
        "train_seconds": float(sum(s.get("train_seconds", 0.0) for s in summaries)),
        "device": summaries[0].get("device"),
    }
    return _score_and_write("independent", paths, emb, cfg, summary)


def evaluate_independent_compressed(single_runs: Sequence[Path], embeddings: Sequence[str], cfg: Config,
                                    folder: Path, progress: bool = False) -> RunResult:
    """The independent ensemble distilled into one head, evaluated on test (reused while its sources are the same).

    The student is the best single run (:func:`best_single`): its frozen backbone plus
    one linear head trained by :func:`lossensemble.compression.distill_independent`.
    """
    name = "independent-compressed"
    paths = RunPaths(Path(folder))
    sources = [str(Path(p)) for p in single_runs]
    reused = _reused(name, paths, sources)
    if reused is not None:
        return reused
    student_idx = best_single(single_runs, embeddings)
    student, facts = distill_independent(single_runs[student_idx], list(single_runs), progress=progress)
    emb = embed_test_split(student.embed_fn(names=["compressed"]), cfg, student.device, progress,
                           normalisation=student.normalisation)
    emb.embeddings = {name: emb.embeddings["compressed"]}
    student_summary = read_json(RunPaths(Path(single_runs[student_idx])).summary)
    summary = {
        "sources": sources,
        "student": sources[student_idx],
        "seconds_per_step": student_summary.get("seconds_per_step"),
        "device": student_summary.get("device"),
        "distillation": facts,
    }
    return _score_and_write(name, paths, emb, cfg, summary)


def evaluate_distilled(name: str, teacher_runs: Sequence[Path], teacher_embeddings: Sequence[str],
                       single_runs: Sequence[Path], single_embeddings: Sequence[str], cfg: Config, folder: Path,
                       factor: float = 1.0, progress: bool = False, labels: float = 0.0) -> RunResult:
    """A new one-head network trained end to end on a teacher's distances, evaluated on test.

    The teacher is embedding ``teacher_embeddings[i]`` of ``teacher_runs[i]`` (several runs:
    the independent ensemble); the student is the single-loss config (``cfg``: this seed's
    config) of the best single loss (:func:`best_single` over ``single_runs``), trained by
    :func:`lossensemble.compression.train_student` for ``factor`` times a single run's steps
    (with ``labels`` > 0 also on the labels with that loss, at that weight) into ``folder``,
    a run folder whose embedding is ``heads.<loss>`` (``summary.json``'s ``embedding``). Reused while its teacher runs, single-loss runs and settings are the same.
    """
    paths = RunPaths(Path(folder))
    sources = [str(Path(p)) for p in teacher_runs] + [str(Path(p)) for p in single_runs]
    settings = {"factor": float(factor), "objective": cfg.compression.objective, "seed": int(cfg.seed)}
    if labels:  # absent at 0, so students trained before this setting existed are reused
        settings["label_weight"] = float(labels)
    reused = _reused(name, paths, sources)
    if reused is not None and reused.summary.get("settings") == settings:
        return reused
    for stale in (paths.metrics, paths.summary):  # a run with other settings is trained again
        stale.unlink(missing_ok=True)
    idx = best_single(single_runs, single_embeddings)
    loss = single_embeddings[idx].removeprefix("heads.")
    student_cfg = single_loss_config(cfg, loss)
    student, facts = train_student(Teacher.load(teacher_runs, teacher_embeddings), paths.root, student_cfg,
                                   factor=factor, label_weight=float(labels))
    key = f"heads.{loss}"
    emb = embed_test_split(student.embed_fn(names=[key]), student_cfg, student.device, progress,
                           normalisation=student.normalisation)
    summary = {"sources": sources, "settings": settings, "embedding": key, "student_loss": loss,
               "seconds_per_step": facts["seconds_per_step"], "train_seconds": facts["train_seconds"],
               "steps": facts["steps"], "device": facts["device"], "distillation": facts}
    return _score_and_write(key, paths, emb, student_cfg, summary)


def compress_or_reuse(run_dir: Path, progress: bool = False) -> tuple[dict[str, dict[str, float]], str, bool]:
    """The metrics of a run with its ``compressed`` embedding: the joint one, an earlier post-hoc one, or a new one.

    Returns ``(metrics, checkpoint, reused)`` where ``checkpoint`` says which checkpoint
    holds the compressor (``last`` when trained jointly, else ``compressed``).
    """
    paths = RunPaths(Path(run_dir))
    metrics = read_json(paths.metrics)
    posthoc = compressed_checkpoint_path(paths.root)
    if "compressed" in metrics:
        return metrics, "compressed" if posthoc.is_file() else "last", True
    log.info("compressing the ensemble of %s (post hoc)", paths.root)
    compress_run(paths.root, progress=progress)
    return read_json(paths.metrics), "compressed", False
