"""Running a comparison (``lossensemble compare``): every (seed, method) run, trained, reused or derived.

Each method is a normal run folder under the experiment folder (``OUT/<method>/seed<k>``;
``single-long``: ``OUT/single-long-<loss>/seed<k>``, one folder per chosen loss);
see :mod:`lossensemble.experiments.runs` for reuse and resume.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from lossensemble.config import Config
from lossensemble.errors import UserError
from lossensemble.experiments.catalogue import Method, concrete_single_long
from lossensemble.experiments.embeddings import run_test_embeddings
from lossensemble.experiments.derived import (
    compress_or_reuse,
    evaluate_distilled,
    evaluate_independent,
    evaluate_independent_compressed,
)
from lossensemble.experiments.runs import RunResult, method_folder, run_or_reuse, seed_config
from lossensemble.experiments.selection import best_head, last_validation, select_best
from lossensemble.io import read_json
from lossensemble.training.run import RunPaths, read_history

__all__ = ["MethodResult", "Comparison", "run_comparison"]

log = logging.getLogger("lossensemble.experiments")


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
    """Train or reuse every (seed, method) run under ``out``/<method>/seed<k> (``single-long``:
    ``out``/single-long-<loss>/seed<k>) and collect their results.

    Seeds are the outer loop, so an interrupted comparison has complete seeds first.
    Derived methods (heads, compressed, independent) read the runs they come from. A
    method that cannot run in this build (compression missing) is skipped with a reason
    in ``Comparison.skipped``, never faked. ``single-long`` runs last, once every seed's
    single-loss runs are there: its loss is the best single loss on the validation classes.
    """
    comp = Comparison(cfg, Path(out), [int(s) for s in seeds], list(methods))
    total = len(comp.seeds) * len(comp.methods)
    step = 0
    deferred = [m for m in comp.methods if m.kind == "single-long"]
    for seed in comp.seeds:
        runs: dict[str, RunResult] = {}
        for method in comp.methods:
            if method.kind == "single-long":
                continue
            step += 1
            if method.name in comp.skipped:
                continue
            folder = method_folder(comp.out, method.name, seed)
            say(f"[{step}/{total}] seed {seed}: {method.name}")
            result = _run_method(method, seed, folder, runs, comp, progress)
            if result is not None:
                comp.results.setdefault(method.name, []).append(result)
    for method in deferred:
        method = _choose_single_long(comp, method)
        loss = method.embedding.removeprefix("heads.")
        for seed in comp.seeds:
            step += 1
            say(f"[{step}/{total}] seed {seed}: {method.name} ({loss})")
            # one folder per chosen loss: a choice that changes as seeds are added never meets the other's runs
            res = run_or_reuse(method.name, seed_config(method.cfg, seed),
                               method_folder(comp.out, f"{method.name}-{loss}", seed), progress)
            comp.results.setdefault(method.name, []).append(_result(method, seed, res))
    for method in comp.methods:  # what the report reads: the first seed's test embeddings, cached
        first = comp.first(method.name)
        if first is not None:
            run_test_embeddings(first.path, first.checkpoint, progress=bool(progress))
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
    if method.kind == "best-head":
        src = runs[method.source]
        chosen = best_head(src.path)
        return _result(dataclasses.replace(method, embedding=chosen.best), seed, src)
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
    if method.kind == "distilled":
        singles = [m for m in comp.methods if m.group == "single"]
        single_runs, single_embeddings = [runs[m.name].path for m in singles], [m.embedding for m in singles]
        teacher = ([runs[method.source].path], ["ensemble"]) if method.source else (single_runs, single_embeddings)
        res = evaluate_distilled(method.name, *teacher, single_runs, single_embeddings, seed_config(comp.cfg, seed),
                                 folder, method.student_factor, progress, labels=method.student_labels)
        return _result(dataclasses.replace(method, embedding=res.summary["embedding"]), seed, res)
    raise UserError(f"unknown method kind {method.kind!r}")  # pragma: no cover


def _choose_single_long(comp: Comparison, method: Method) -> Method:
    """``method`` (``single-long``) made concrete with the best single loss on the validation classes.

    The same rule as the report's reference (:func:`select_best`, mean over seeds), but
    it refuses rather than fall back to the test classes. ``comp.methods`` gets the
    concrete row (its config, embedding and description).
    """
    singles = [m for m in comp.methods if m.group == "single" and comp.results.get(m.name)]
    test = {m.name: [r.metrics for r in comp.results[m.name]] for m in singles}
    val = {m.name: [r.val_metrics for r in comp.results[m.name]] for m in singles}
    if not singles:
        raise UserError("single-long: no single-loss results to choose from")
    selection = select_best(test, val)
    if selection.split != "validation":
        raise UserError("single-long chooses the best single loss on validation classes, and the runs have no "
                        "validation metrics: set data.val_fraction (e.g. data.val_fraction=0.2)")
    loss = comp.method(selection.best).embedding.removeprefix("heads.")
    concrete = concrete_single_long(method, comp.cfg, loss)
    comp.methods[comp.methods.index(method)] = concrete
    log.info("single-long: %s (%s)", loss, selection.describe())
    return concrete


def _compressed_size(run_dir: Path) -> int | None:
    """The compressed embedding's size recorded by post-hoc compression (compression.json)."""
    meta = Path(run_dir) / "compression.json"
    if not meta.is_file():
        return None
    return read_json(meta).get("compressor", {}).get("dim")
