"""Running several training runs side by side (demo, compare), reusing finished ones.

Each method is a normal run folder under the experiment folder. A run that has
already finished is read back instead of trained again; one that was interrupted
is resumed from its last checkpoint. So an interrupted experiment continues where
it stopped.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from lossensemble.config import Config, config_to_dict, load_config
from lossensemble.errors import UserError
from lossensemble.training.run import RunPaths, read_history, read_json, write_json
from lossensemble.training.trainer import Trainer

__all__ = [
    "Comparison", "DEFAULT_METHODS", "METHOD_CHOICES", "Method", "MethodResult", "PAPER_PRIOR", "RunResult",
    "TestEmbeddings", "comparison_methods", "evaluate_independent", "independent_embedding", "method_folder",
    "paper_config", "run_comparison", "run_or_reuse", "run_test_embeddings", "single_loss_config", "with_changes",
]

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


# ======================================================================================
# The comparison (``lossensemble compare``): every single loss, the ensemble's weighting
# schemes, ablations, the compressed embedding and the independent ensemble.
# ======================================================================================

#: The paper's prior weights for its four losses (DESIGN.md §1); other losses get 1.
PAPER_PRIOR = {"classification": 2.0, "triplet": 1.0, "binomial": 2.0, "proxy_nca": 3.0}

#: Method families accepted by ``compare --methods``, in table order.
METHOD_CHOICES = ("single", "equal", "learned", "uncertainty", "compressed", "equal-scaled", "learned-noscale",
                  "gradnorm", "independent", "heads")
#: What ``compare`` runs when no ``--methods`` is given (``gradnorm`` is opt-in).
DEFAULT_METHODS = tuple(m for m in METHOD_CHOICES if m != "gradnorm")


@dataclass(frozen=True)
class Method:
    """One row of a comparison and how its embedding is obtained.

    ``kind``: ``train`` (a run folder trained from ``cfg``), ``heads`` (one head of the
    ``source`` run, read from its metrics.json), ``compressed`` (the ``source`` run's
    compressed embedding, post hoc unless trained jointly) or ``independent`` (the single-loss
    runs' embeddings concatenated, no training). ``embedding`` is the key in metrics.json.
    """

    name: str
    kind: str
    embedding: str
    group: str
    description: str
    cfg: Config | None = None
    source: str | None = None


def paper_config(cfg: Config, scale: str = "running_mean") -> Config:
    """The paper's weighting on ``cfg``'s losses: learned weights, the paper's prior, ``scale``."""
    prior = [PAPER_PRIOR.get(loss.name, 1.0) for loss in cfg.losses]
    return with_changes(cfg, weighting=dict(scheme="learned", scale=scale, prior=prior))


def weighting_config(cfg: Config, scheme: str, scale: str) -> Config:
    """``cfg`` with another weighting scheme/scale (prior and fixed weights cleared)."""
    return with_changes(cfg, weighting=dict(scheme=scheme, scale=scale, prior=None, weights=None))


def _single_methods(cfg: Config) -> list[Method]:
    return [Method(f"single-{loss.name}", "train", f"heads.{loss.name}", "single",
                   f"{loss.name} alone (one head, same backbone and budget)", single_loss_config(cfg, loss.name))
            for loss in cfg.losses]


def _ensemble_methods(cfg: Config) -> dict[str, Method]:
    """The trained ensemble variants by family name."""
    return {
        "equal": Method("equal", "train", "ensemble", "ensemble", "ensemble, fixed equal weights, no scale "
                        "normalisation", weighting_config(cfg, "equal", "none")),
        "learned": Method("learned", "train", "ensemble", "ensemble", "ensemble, the paper: learned weights, "
                          "running-mean scale normalisation, the paper's prior", paper_config(cfg)),
        "uncertainty": Method("uncertainty", "train", "ensemble", "ensemble", "ensemble, uncertainty weighting "
                              "(Kendall et al.), no scale normalisation", weighting_config(cfg, "uncertainty", "none")),
        "equal-scaled": Method("equal-scaled", "train", "ensemble", "ablation", "ablation: equal weights with "
                               "running-mean scale normalisation", weighting_config(cfg, "equal", "running_mean")),
        "learned-noscale": Method("learned-noscale", "train", "ensemble", "ablation", "ablation: the paper's "
                                  "learned weights without scale normalisation", paper_config(cfg, scale="none")),
        "gradnorm": Method("gradnorm", "train", "ensemble", "ensemble", "ensemble, GradNorm-style gradient "
                           "balancing", None),
    }


def comparison_methods(cfg: Config, families: list[str] | tuple[str, ...] = DEFAULT_METHODS) -> list[Method]:
    """The rows of a comparison of ``cfg``'s losses, in table order.

    Single-loss runs are always included (the gains are measured against the best of
    them). ``compressed`` needs ``learned`` and ``heads`` needs ``equal``: those runs are
    trained too. Raises :class:`UserError` for an unknown family.
    """
    unknown = [f for f in families if f not in METHOD_CHOICES]
    if unknown:
        raise UserError(f"--methods: unknown {', '.join(unknown)} (choose from {', '.join(METHOD_CHOICES)})")
    if len(cfg.losses) < 2:
        raise UserError("compare needs a config with at least two losses (an ensemble)")
    wanted = set(families) | {"single"}
    if "compressed" in wanted:
        wanted.add("learned")
    if "heads" in wanted:
        wanted.add("equal")
    ensembles = _ensemble_methods(cfg)
    if "gradnorm" in wanted:
        ensembles["gradnorm"] = _gradnorm_method(ensembles["gradnorm"], cfg)
    out: list[Method] = []
    for family in METHOD_CHOICES:
        if family not in wanted:
            continue
        if family == "single":
            out.extend(_single_methods(cfg))
        elif family in ensembles:
            out.append(ensembles[family])
        elif family == "compressed":
            out.append(Method("learned-compressed", "compressed", "compressed", "compressed",
                              "the learned ensemble compressed to one head's size (distance matching)",
                              source="learned"))
        elif family == "independent":
            out.append(Method("independent", "independent", "independent", "baseline",
                              f"the {len(cfg.losses)} single-loss models' embeddings concatenated, equal weights "
                              f"({len(cfg.losses)}x training and inference cost)"))
            out.append(Method("independent-compressed", "independent-compressed", "independent-compressed",
                              "compressed", "the independent ensemble distilled into one linear head on the best "
                              "single model's backbone (1x inference cost)"))
        elif family == "heads":
            out.extend(Method(f"equal-head-{loss.name}", "heads", f"heads.{loss.name}", "heads",
                              f"the {loss.name} head of the equal-weight ensemble, alone", source="equal")
                       for loss in cfg.losses)
    return out


def _gradnorm_method(method: Method, cfg: Config) -> Method:
    """The gradnorm row with its config, or a clear error when this build has no such scheme."""
    try:
        mcfg = weighting_config(cfg, "gradnorm", "none")
    except UserError as exc:
        raise UserError(f"--methods gradnorm: this build has no 'gradnorm' weighting ({exc})") from None
    return Method(method.name, method.kind, method.embedding, method.group, method.description, mcfg)


def seed_config(cfg: Config, seed: int) -> Config:
    """``cfg`` with another seed (initialisation and batch order; the data split stays the same)."""
    return with_changes(cfg, seed=int(seed))


def method_folder(out: Path, method: str, seed: int) -> Path:
    """Where a method's run for one seed lives: ``OUT/<method>/seed<k>``."""
    return Path(out) / method / f"seed{seed}"


# --------------------------------------------------------------------------------------
# test-set embeddings of a run (cached beside its checkpoints)
# --------------------------------------------------------------------------------------


@dataclass
class TestEmbeddings:
    """Embeddings of a run's test split: by name, with labels, dataset indices and query/gallery masks."""

    embeddings: dict[str, np.ndarray]
    labels: np.ndarray
    kept: np.ndarray
    is_query: np.ndarray | None = None
    is_gallery: np.ndarray | None = None

    def masks(self) -> dict[str, np.ndarray]:
        """``is_query``/``is_gallery`` keyword arguments for ``compute_metrics`` (empty without such masks)."""
        if self.is_query is None or self.is_gallery is None:
            return {}
        return {"is_query": self.is_query, "is_gallery": self.is_gallery}


def test_split(cfg: Config, transform: Any = "auto"):
    """The test split of ``cfg``'s dataset, built exactly as the trainer builds it (``transform=None``: PIL images)."""
    from lossensemble.data import build_dataset

    d = cfg.data
    return build_dataset(d.name, "test", root=d.root, image_size=d.image_size, val_fraction=d.val_fraction,
                         transform=transform, **d.options)


def embeddings_cache_path(run_dir: Path, checkpoint: str) -> Path:
    """Where the test embeddings of ``run_dir`` with ``checkpoint`` ("last" or "compressed") are cached."""
    return Path(run_dir) / f"test-embeddings-{checkpoint}.npz"


def save_test_embeddings(path: Path, emb: TestEmbeddings) -> None:
    """Write :class:`TestEmbeddings` as a compressed npz (atomically)."""
    arrays = {f"emb:{k}": v for k, v in emb.embeddings.items()}
    arrays.update(labels=emb.labels, kept=emb.kept)
    if emb.is_query is not None and emb.is_gallery is not None:
        arrays.update(is_query=emb.is_query, is_gallery=emb.is_gallery)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_test_embeddings(path: Path) -> TestEmbeddings:
    """Read what :func:`save_test_embeddings` wrote."""
    with np.load(path) as z:
        embeddings = {k[4:]: z[k] for k in z.files if k.startswith("emb:")}
        return TestEmbeddings(embeddings, z["labels"], z["kept"],
                              z["is_query"] if "is_query" in z.files else None,
                              z["is_gallery"] if "is_gallery" in z.files else None)


def _checkpoint_file(run_dir: Path, checkpoint: str) -> Path:
    if checkpoint == "compressed":
        from lossensemble.compression.posthoc import compressed_checkpoint_path

        return compressed_checkpoint_path(run_dir)
    return RunPaths(Path(run_dir)).last


def run_test_embeddings(run_dir: Path, checkpoint: str = "last", progress: bool = False) -> TestEmbeddings:
    """Every embedding (heads, ensemble, compressed) of a run's test split, cached in the run folder.

    ``checkpoint`` is ``last`` (the model whose metrics are in metrics.json) or
    ``compressed`` (the post-hoc compressed checkpoint). The cache is reused while it is
    newer than the checkpoint file.
    """
    from lossensemble.evaluation.extract import extract_embeddings
    from lossensemble.training.loading import load_run

    cache = embeddings_cache_path(run_dir, checkpoint)
    ckpt = _checkpoint_file(run_dir, checkpoint)
    if cache.is_file() and (not ckpt.is_file() or cache.stat().st_mtime >= ckpt.stat().st_mtime):
        return load_test_embeddings(cache)
    loaded = load_run(run_dir, checkpoint="last" if checkpoint == "last" else str(ckpt))
    cfg = loaded.cfg
    dataset = test_split(cfg)
    embeddings, labels, kept = extract_embeddings(
        loaded.embed_fn(), dataset, batch_size=cfg.eval.batch_size, num_workers=cfg.data.num_workers,
        device=loaded.device, progress=progress, max_items=cfg.eval.max_items, seed=cfg.seed,
    )
    q, g = getattr(dataset, "is_query", None), getattr(dataset, "is_gallery", None)
    result = TestEmbeddings(embeddings, labels, kept,
                            None if q is None else np.asarray(q)[kept], None if g is None else np.asarray(g)[kept])
    save_test_embeddings(cache, result)
    return result


# --------------------------------------------------------------------------------------
# the independent ensemble and the compressed embedding
# --------------------------------------------------------------------------------------


def independent_embedding(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate separately trained embeddings: each row L2-normalised, each part scaled by sqrt(1/m).

    Its squared Euclidean distance is the average of the parts' squared distances,
    exactly like the ensemble embedding with equal weights.
    """
    if not parts:
        raise ValueError("independent_embedding needs at least one part")
    scale = np.sqrt(1.0 / len(parts))
    out = []
    for p in parts:
        p = np.asarray(p, dtype=np.float32)
        norms = np.linalg.norm(p, axis=1, keepdims=True)
        out.append(p / np.maximum(norms, 1e-12) * scale)
    return np.concatenate(out, axis=1).astype(np.float32)


def evaluate_independent(single_runs: Sequence[Path], embeddings: Sequence[str], cfg: Config, folder: Path,
                         progress: bool = False) -> RunResult:
    """The independent ensemble of ``single_runs`` (embedding ``embeddings[i]`` of run i), evaluated on test.

    Nothing is trained: each run embeds the test split (cached), the vectors are joined
    by :func:`independent_embedding` and scored like any embedding. The result goes to
    ``folder`` (metrics.json, summary.json, the embedding cache) and is reused while
    its sources are the same runs.
    """
    from lossensemble.evaluation import compute_metrics

    paths = RunPaths(Path(folder))
    sources = [str(Path(p)) for p in single_runs]
    if paths.is_finished() and read_json(paths.summary).get("sources") == sources:
        return RunResult("independent", paths.root, read_json(paths.metrics), read_json(paths.summary), True)
    parts = [run_test_embeddings(Path(p), "last", progress) for p in single_runs]
    for p, name in zip(parts[1:], sources[1:]):
        if not np.array_equal(p.kept, parts[0].kept) or not np.array_equal(p.labels, parts[0].labels):
            raise UserError(f"{name}: its test split differs from {sources[0]}'s; cannot concatenate embeddings")
    joined = independent_embedding([p.embeddings[e] for p, e in zip(parts, embeddings)])
    first = parts[0]
    metrics = compute_metrics(joined, first.labels, k=tuple(cfg.eval.k), distance=cfg.eval.distance,
                              nmi=cfg.eval.nmi, **first.masks())
    paths.root.mkdir(parents=True, exist_ok=True)
    save_test_embeddings(embeddings_cache_path(paths.root, "last"),
                         TestEmbeddings({"independent": joined}, first.labels, first.kept, first.is_query,
                                        first.is_gallery))
    summaries = [read_json(RunPaths(Path(p)).summary) for p in single_runs]
    summary = {
        "sources": sources,
        "embedding_sizes": {"independent": int(joined.shape[1])},
        "seconds_per_step": float(sum(s.get("seconds_per_step", 0.0) for s in summaries)),
        "train_seconds": float(sum(s.get("train_seconds", 0.0) for s in summaries)),
        "device": summaries[0].get("device"),
    }
    write_json(paths.metrics, {"independent": metrics})
    write_json(paths.summary, summary)
    return RunResult("independent", paths.root, {"independent": metrics}, summary, False)


def best_single(single_runs: Sequence[Path], embeddings: Sequence[str]) -> int:
    """Index of the best single-loss run: by validation MAP@R when recorded, else by test MAP@R."""
    scores = []
    for run, emb in zip(single_runs, embeddings):
        paths = RunPaths(Path(run))
        val = last_validation(read_history(paths.history), emb) if paths.history.is_file() else None
        scores.append(val["map@r"] if val else read_json(paths.metrics)[emb]["map@r"])
    return int(np.argmax(scores))


def evaluate_independent_compressed(single_runs: Sequence[Path], embeddings: Sequence[str], cfg: Config,
                                    folder: Path, progress: bool = False) -> RunResult:
    """The independent ensemble distilled into one head, evaluated on test (reused while its sources are the same).

    The student is the best single run (:func:`best_single`): its frozen backbone plus
    one linear head trained by :func:`lossensemble.compression.distill_independent`.
    """
    from lossensemble.compression import distill_independent
    from lossensemble.evaluation import compute_metrics
    from lossensemble.evaluation.extract import extract_embeddings

    name = "independent-compressed"
    paths = RunPaths(Path(folder))
    sources = [str(Path(p)) for p in single_runs]
    if paths.is_finished() and read_json(paths.summary).get("sources") == sources:
        return RunResult(name, paths.root, read_json(paths.metrics), read_json(paths.summary), True)
    student_idx = best_single(single_runs, embeddings)
    student, facts = distill_independent(single_runs[student_idx], list(single_runs), progress=progress)
    dataset = test_split(cfg)
    out, labels, kept = extract_embeddings(student.embed_fn(), dataset, batch_size=cfg.eval.batch_size,
                                           num_workers=cfg.data.num_workers, device=student.device,
                                           progress=progress, max_items=cfg.eval.max_items, seed=cfg.seed)
    q, g = getattr(dataset, "is_query", None), getattr(dataset, "is_gallery", None)
    emb = TestEmbeddings({name: out["compressed"]}, labels, kept,
                         None if q is None else np.asarray(q)[kept], None if g is None else np.asarray(g)[kept])
    metrics = compute_metrics(emb.embeddings[name], labels, k=tuple(cfg.eval.k), distance=cfg.eval.distance,
                              nmi=cfg.eval.nmi, **emb.masks())
    paths.root.mkdir(parents=True, exist_ok=True)
    save_test_embeddings(embeddings_cache_path(paths.root, "last"), emb)
    student_summary = read_json(RunPaths(Path(single_runs[student_idx])).summary)
    summary = {
        "sources": sources,
        "student": sources[student_idx],
        "embedding_sizes": {name: int(out["compressed"].shape[1])},
        "seconds_per_step": student_summary.get("seconds_per_step"),
        "device": student_summary.get("device"),
        "distillation": facts,
    }
    write_json(paths.metrics, {name: metrics})
    write_json(paths.summary, summary)
    return RunResult(name, paths.root, {name: metrics}, summary, False)


def compression_available() -> str | None:
    """None when post-hoc compression can run in this build, else the reason it cannot."""
    try:
        from lossensemble.compression import compress_run  # noqa: F401
    except ImportError as exc:
        return f"compression is not available in this build ({exc})"
    return None


def compress_or_reuse(run_dir: Path, progress: bool = False) -> tuple[dict[str, dict[str, float]], str, bool]:
    """The metrics of a run with its ``compressed`` embedding: the joint one, an earlier post-hoc one, or a new one.

    Returns ``(metrics, checkpoint, reused)`` where ``checkpoint`` says which checkpoint
    holds the compressor (``last`` when trained jointly, else ``compressed``).
    """
    paths = RunPaths(Path(run_dir))
    metrics = read_json(paths.metrics)
    posthoc = _checkpoint_file(paths.root, "compressed")
    if "compressed" in metrics:
        return metrics, "compressed" if posthoc.is_file() else "last", True
    from lossensemble.compression import compress_run

    log.info("compressing the ensemble of %s (post hoc)", paths.root)
    compress_run(paths.root, progress=progress)
    return read_json(paths.metrics), "compressed", False


# --------------------------------------------------------------------------------------
# running a comparison
# --------------------------------------------------------------------------------------


@dataclass
class MethodResult:
    """One method on one seed: the test (and last validation) metrics of its embedding, and its costs."""

    method: str
    seed: int
    path: Path
    checkpoint: str  # which cached embeddings hold it: "last" or "compressed"
    embedding: str
    metrics: dict[str, float]
    val_metrics: dict[str, float] | None
    seconds_per_step: float | None
    embedding_size: int | None
    reused: bool


@dataclass
class Comparison:
    """Everything a comparison produced: methods in table order, results per method and seed, skipped methods."""

    cfg: Config
    out: Path
    seeds: list[int]
    methods: list[Method]
    results: dict[str, list[MethodResult]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def method(self, name: str) -> Method:
        return next(m for m in self.methods if m.name == name)

    def first(self, name: str) -> MethodResult | None:
        """The method's result on the first seed that has one."""
        rows = self.results.get(name) or []
        return rows[0] if rows else None


def last_validation(history: list[dict[str, Any]], embedding: str) -> dict[str, float] | None:
    """The last epoch's validation metrics of ``embedding`` in a run's history (None without a val split)."""
    prefix = f"val/{embedding}/"
    for row in reversed(history):
        vals = {k[len(prefix):]: float(v) for k, v in row.items() if k.startswith(prefix)}
        if vals:
            return vals
    return None


def _result(method: Method, seed: int, res: RunResult, checkpoint: str = "last") -> MethodResult:
    """A :class:`MethodResult` read from a run's metrics, history and summary."""
    if method.embedding not in res.metrics:
        raise UserError(f"{res.path}: metrics.json has no {method.embedding!r} embedding")
    hist_path = RunPaths(res.path).history
    val = last_validation(read_history(hist_path), method.embedding) if hist_path.is_file() else None
    sizes = res.summary.get("embedding_sizes", {})
    return MethodResult(method.name, seed, res.path, checkpoint, method.embedding, res.metrics[method.embedding], val,
                        res.summary.get("seconds_per_step"), sizes.get(method.embedding), res.reused)


def run_comparison(
    cfg: Config,
    out: Path,
    seeds: Sequence[int],
    methods: Sequence[Method],
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> Comparison:
    """Train or reuse every (seed, method) run under ``out``/<method>/seed<k> and collect their results.

    Seeds are the outer loop, so an interrupted comparison has complete seeds first.
    Derived methods (heads, compressed, independent) read the runs they come from. A
    method that cannot run in this build (compression missing) is skipped with a reason
    in ``Comparison.skipped``, never faked.
    """
    comp = Comparison(cfg, Path(out), [int(s) for s in seeds], list(methods))
    total = len(comp.seeds) * len(comp.methods)
    step = 0
    for seed in comp.seeds:
        runs: dict[str, RunResult] = {}
        for method in comp.methods:
            step += 1
            if method.name in comp.skipped:
                continue
            folder = method_folder(comp.out, method.name, seed)
            say(f"[{step}/{total}] seed {seed}: {method.name}")
            result = _run_method(method, seed, folder, runs, comp, progress)
            if result is not None:
                comp.results.setdefault(method.name, []).append(result)
    return comp


def _run_method(method: Method, seed: int, folder: Path, runs: dict[str, RunResult], comp: Comparison,
                progress: bool) -> MethodResult | None:
    """Train, reuse or derive one method for one seed (``runs``: this seed's trained runs so far)."""
    if method.kind == "train":
        res = run_or_reuse(method.name, seed_config(method.cfg, seed), folder, progress)
        runs[method.name] = res
        return _result(method, seed, res)
    if method.kind == "heads":
        return _result(method, seed, runs[method.source])
    if method.kind in ("compressed", "independent-compressed"):
        reason = compression_available()
        if reason is not None:
            comp.skipped[method.name] = reason
            log.warning("%s left out: %s", method.name, reason)
            return None
    if method.kind == "compressed":
        src = runs[method.source]
        metrics, checkpoint, reused = compress_or_reuse(src.path, progress)
        res = RunResult(method.name, src.path, metrics, src.summary, reused and src.reused)
        result = _result(method, seed, res, checkpoint)
        result.embedding_size = result.embedding_size or _compressed_size(src.path)
        return result
    if method.kind in ("independent", "independent-compressed"):
        singles = [m for m in comp.methods if m.group == "single"]
        evaluate = evaluate_independent if method.kind == "independent" else evaluate_independent_compressed
        res = evaluate([runs[m.name].path for m in singles], [m.embedding for m in singles], comp.cfg, folder,
                       progress)
        return _result(method, seed, res)
    raise UserError(f"unknown method kind {method.kind!r}")  # pragma: no cover


def _compressed_size(run_dir: Path) -> int | None:
    """The compressed embedding's size recorded by post-hoc compression (compression.json)."""
    meta = Path(run_dir) / "compression.json"
    if not meta.is_file():
        return None
    return read_json(meta).get("compressor", {}).get("dim")
