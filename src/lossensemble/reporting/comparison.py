"""The report of a comparison: results tables, plots and report.html from a finished :class:`Comparison`.

Reads what the runs wrote (metrics.json, history.csv, summary.json) and their cached
test embeddings (for query timing, the 2-D maps and the retrieval grid; written by
:func:`~lossensemble.experiments.comparison.run_comparison`): it runs no model. Writes into
the comparison's output folder::

    results.json  results.csv  results.md  comparison.json  report.html  learning_curves.png
    plots/recall_at_k.png  plots/weights.png  plots/losses.png  plots/recall1_over_epochs.png
    plots/embedding_map.png  plots/retrieval_grid.png
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lossensemble.config import config_to_dict
from lossensemble.reporting.aggregate import GAIN_METRICS, Selection, select_best
from lossensemble.reporting.html import Figure, ReportContent, render_report
from lossensemble.reporting.results import (
    comparison_rows,
    format_mean_std,
    measure_query_seconds,
    rows_to_csv,
    rows_to_markdown,
    table_cells,
    write_text,
)
from lossensemble.reporting.tables import _title
from lossensemble.data import build_split
from lossensemble.experiments.comparison import Comparison, MethodResult
from lossensemble.experiments.cost import query_costs, train_costs
from lossensemble.experiments.embeddings import TestEmbeddings, cached_test_embeddings
from lossensemble.io import read_json, write_json
from lossensemble.training.run import read_history

__all__ = ["ComparisonReport", "report_comparison"]

log = logging.getLogger("lossensemble.compare")

#: Weighting schemes whose weights change during training (plotted over epochs).
_LEARNING_SCHEMES = ("learned", "uncertainty", "gradnorm")


@dataclass
class ComparisonReport:
    """What :func:`report_comparison` wrote and decided."""

    rows: list[dict[str, Any]]
    selection: Selection
    ensemble_selection: Selection | None
    files: dict[str, Path] = field(default_factory=dict)
    plots: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# gathering
# --------------------------------------------------------------------------------------


def _per_seed(comp: Comparison, names: list[str], val: bool = False) -> dict[str, Any]:
    """method -> {seed: metrics} (test) or method -> [val metrics per seed]."""
    if val:
        return {n: [r.val_metrics for r in comp.results.get(n, [])] for n in names}
    return {n: {r.seed: r.metrics for r in comp.results.get(n, [])} for n in names}


def _selection(comp: Comparison, group: tuple[str, ...]) -> Selection | None:
    names = [m.name for m in comp.methods if m.group in group and comp.results.get(m.name)]
    if not names:
        return None
    test = {n: [r.metrics for r in comp.results[n]] for n in names}
    return select_best(test, _per_seed(comp, names, val=True))


def _embedding(result: MethodResult, progress: bool) -> tuple[np.ndarray, TestEmbeddings]:
    cached = cached_test_embeddings(result.path, result.checkpoint)
    return cached.embeddings[result.embedding], cached


def _query_and_sizes(comp: Comparison, progress: bool) -> tuple[dict[str, float], dict[str, int]]:
    """Measured faiss query time (ms per query) and embedding size of each method's first-seed embedding."""
    k = max(comp.cfg.eval.k)
    query_ms: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for method in comp.methods:
        first = comp.first(method.name)
        if first is None:
            continue
        emb, _ = _embedding(first, progress)
        sizes[method.name] = int(emb.shape[1])
        query_ms[method.name] = 1000.0 * measure_query_seconds(emb, k, comp.cfg.eval.distance)
    return query_ms, sizes


# --------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------


def _histories(comp: Comparison, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """First-seed history.csv rows of each named method that has one."""
    out = {}
    for name in names:
        first = comp.first(name)
        if first is not None and (first.path / "history.csv").is_file():
            out[name] = read_history(first.path / "history.csv")
    return out


def _recall_curves(comp: Comparison) -> dict[str, list[tuple[float, float]]]:
    """Test Recall@1 per epoch of every method whose embedding is evaluated during training (first seed)."""
    series = {}
    for method in comp.methods:
        first = comp.first(method.name)
        if first is None or not (first.path / "history.csv").is_file():
            continue
        key = f"test/{first.embedding}/recall@1"
        series[method.name] = [(r["epoch"], r[key]) for r in read_history(first.path / "history.csv") if key in r]
    return series


#: The learning-curve panels: (split in history.csv, metric, panel title).
LEARNING_CURVES = (("val", "map@r", "validation MAP@R"), ("val", "recall@1", "validation Recall@1"),
                   ("test", "map@r", "test MAP@R"), ("test", "recall@1", "test Recall@1"))


def learning_curves(comp: Comparison) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Validation and test MAP@R and Recall@1 against the training step, per trained row (first seed).

    From each run's history.csv (one row per evaluation, with its ``step``); a trained
    row is one with a training run of its own (single losses, ensembles, long runs).
    """
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for method in comp.methods:
        first = comp.first(method.name)
        if method.kind not in ("train", "single-long") or first is None:
            continue
        hist = first.path / "history.csv"
        if not hist.is_file():
            continue
        rows = read_history(hist)
        out[method.name] = {
            title: [(r["step"], r[f"{split}/{first.embedding}/{metric}"]) for r in rows
                    if "step" in r and f"{split}/{first.embedding}/{metric}" in r]
            for split, metric, title in LEARNING_CURVES}
    return out


def _neighbours(cached: TestEmbeddings, emb: np.ndarray, queries: np.ndarray, k: int, distance: str,
                ) -> tuple[np.ndarray, np.ndarray]:
    """Dataset indices of the top-``k`` neighbours of the query rows and whether each is of the query's class."""
    from lossensemble.evaluation import knn_search

    gallery_rows = np.flatnonzero(cached.is_gallery) if cached.is_gallery is not None else np.arange(len(emb))
    position = np.full(len(emb), -1, dtype=np.int64)
    position[gallery_rows] = np.arange(len(gallery_rows))
    _, idx = knn_search(emb[queries], emb[gallery_rows], k=k, distance=distance, exclude_self=True,
                        query_ids=position[queries])
    rows = np.where(idx >= 0, gallery_rows[np.maximum(idx, 0)], -1)
    correct = (rows >= 0) & (cached.labels[np.maximum(rows, 0)] == cached.labels[queries][:, None])
    dataset_idx = np.where(rows >= 0, cached.kept[np.maximum(rows, 0)], -1)
    return dataset_idx, correct


def _retrieval_grid(comp: Comparison, names: list[str], path: Path, progress: bool, num_queries: int = 6,
                    k: int = 5) -> Path:
    """The retrieval grid of the first-seed embeddings of ``names`` on the same seeded random queries."""
    from lossensemble.reporting.plots import plot_retrieval_grid

    loaded = {n: _embedding(comp.first(n), progress) for n in names}
    cached = next(iter(loaded.values()))[1]
    query_rows = np.flatnonzero(cached.is_query) if cached.is_query is not None else np.arange(len(cached.labels))
    rng = np.random.default_rng(comp.cfg.seed)
    queries = np.sort(rng.choice(query_rows, size=min(num_queries, len(query_rows)), replace=False))
    panels = {n: _neighbours(c, e, queries, k, comp.cfg.eval.distance) for n, (e, c) in loaded.items()}
    images = build_split(comp.cfg.data, "test", transform=None)
    return plot_retrieval_grid(panels, cached.kept[queries], images.get_image, path)


def make_plots(comp: Comparison, rows: list[dict[str, Any]], selection: Selection, ensemble: Selection | None,
               folder: Path, progress: bool = False, projection: str = "tsne") -> dict[str, Figure]:
    """Every plot of the report, by key, with its caption (plots that have no data are left out)."""
    from lossensemble.reporting.plots import plot_curves, plot_embedding_map, plot_history, plot_loss_curves
    from lossensemble.reporting.plots import plot_cost_accuracy, plot_learning_curves, plot_recall_at_k

    folder.mkdir(parents=True, exist_ok=True)
    n_seeds = len(comp.seeds)
    figures: dict[str, Figure] = {}
    means = {r["method"]: {k: v["mean"] for k, v in r.items() if k.startswith("recall@")} for r in rows}
    stds = {r["method"]: {k: (v["std"] or 0.0) for k, v in r.items() if k.startswith("recall@")} for r in rows}
    figures["recall"] = Figure(plot_recall_at_k(means, folder / "recall_at_k.png", errors=stds),
                               f"Recall@K per method on the unseen classes (mean over {n_seeds} seed(s); "
                               "error bars: std over seeds).")
    trained = [m.name for m in comp.methods if m.kind in ("train", "single-long")]
    learning = [m.name for m in comp.methods if m.kind == "train" and m.cfg.weighting.scheme in _LEARNING_SCHEMES]
    seed0 = f"seed {comp.seeds[0]}"
    path = plot_history(_histories(comp, learning), "weight_", folder / "weights.png", "weight w_k",
                        title=f"Loss weights over training ({seed0})")
    if path is not None:
        figures["weights"] = Figure(path, f"Weights of the learned schemes per loss over training ({seed0}).")
    path = plot_loss_curves(_histories(comp, trained), folder / "losses.png",
                            title=f"Raw losses over training ({seed0})")
    if path is not None:
        figures["losses"] = Figure(path, f"Each raw (unweighted, unscaled) loss over training, per method "
                                   f"({seed0}).")
    path = plot_curves(_recall_curves(comp), folder / "recall1_over_epochs.png", "test Recall@1 (%)",
                       title=f"Test Recall@1 over epochs ({seed0})", percent=True)
    if path is not None:
        figures["recall_curves"] = Figure(path, f"Test Recall@1 after each epoch ({seed0}; methods evaluated "
                                          "during training).")
    path = plot_learning_curves(learning_curves(comp), comp.out / "learning_curves.png",
                                title=f"Learning curves ({seed0})")
    if path is not None:
        figures["learning_curves"] = Figure(path, f"Validation and test MAP@R and Recall@1 against training steps, "
                                            f"for every trained row ({seed0}; validation classes are held out of "
                                            "the training classes, test classes are unseen).")
    path = plot_cost_accuracy({r["method"]: r for r in rows}, folder / "cost_accuracy.png")
    if path is not None:
        figures["cost"] = Figure(path, f"Recall@1 and MAP@R on the unseen classes against training cost (mean ± std "
                                 f"over {n_seeds} seed(s)); filled markers need one backbone per query, hollow ones "
                                 "more (see the query cost column).")
    ens = ensemble.best if ensemble is not None else None
    if ens is not None:
        panels = {}
        for name in (selection.best, ens):
            emb, cached = _embedding(comp.first(name), progress)
            panels[name] = (emb, cached.labels)
        figures["map"] = Figure(plot_embedding_map(panels, folder / "embedding_map.png", method=projection,
                                                   seed=comp.cfg.seed),
                                f"{'t-SNE' if projection == 'tsne' else 'PCA'} of test embeddings of 10 unseen "
                                f"classes: best single loss ({selection.best}) vs best ensemble ({ens}) ({seed0}).")
    other = "learned-compressed" if comp.first("learned-compressed") is not None else ens
    if other is not None:
        figures["grid"] = Figure(_retrieval_grid(comp, [selection.best, other], folder / "retrieval_grid.png",
                                                 progress),
                                 f"Random test queries and their top-5 neighbours: best single loss "
                                 f"({selection.best}) vs {other} ({seed0}); red frame = wrong class.")
    return figures


# --------------------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------------------


def _gain_sentence(row: dict[str, Any], best: str) -> str:
    gains = ", ".join(f"{_title(k)} {format_mean_std(row['gain'].get(k), signed=True)}" for k in GAIN_METRICS)
    return f"{row['method']} vs {best}: {gains}"


def summary_notes(comp: Comparison, rows: list[dict[str, Any]], selection: Selection,
                  ensemble: Selection | None) -> list[str]:
    """Plain sentences for the report: how the reference was chosen, the key gains, what was left out."""
    notes = [f"Mean ± sample std over seeds {', '.join(map(str, comp.seeds))}; metrics in % on the test classes, "
             "never seen in training.",
             f"* best single loss: {selection.describe()}. Δ columns: gain over it, paired by seed."]
    if ensemble is not None:
        notes.append(f"Best ensemble variant: {ensemble.describe()}.")
    by_name = {r["method"]: r for r in rows}
    for name in ("equal", "learned", "learned-compressed", "single-long", "learned-long", "independent",
                 "independent-compressed"):
        if name in by_name:
            notes.append(_gain_sentence(by_name[name], selection.best))
    for method in comp.methods:
        if method.kind in ("best-head", "single-long") and comp.results.get(method.name):
            chosen = ", ".join(f"{r.embedding.removeprefix('heads.')} (seed {r.seed})"
                               for r in comp.results[method.name])
            what = "head" if method.kind == "best-head" else "loss"
            notes.append(f"{method.name}: the {what} with the best validation MAP@R: {chosen}.")
    notes.append("train cost: backbone images processed in training (steps x batch size x backbones trained), as "
                 "a multiple of one single-loss run; the independent ensemble is the sum of its single-loss runs; "
                 "heads, best-head, compressed and independent-compressed rows cost what their source run cost "
                 "(their own training uses cached embeddings of frozen backbones); distilled-* students add their "
                 "own end-to-end training and the teachers' forward passes on its batches to their teachers' cost; "
                 "a branched run's images count its backbone compute per image (trunk once, every branch), "
                 "in forward FLOPs relative to one backbone.")
    notes.append("query cost: backbone compute to embed one query, as a multiple of one backbone (a head alone, "
                 "also of a branched model, is one backbone; the independent ensemble is its m models).")
    notes.append("dim: embedding size searched at test time; s/step: training seconds per step (independent: the "
                 "sum over its single-loss models); query ms: measured exact faiss search of the test set against "
                 "itself, per query (first seed, best of 3).")
    for name, reason in comp.skipped.items():
        notes.append(f"{name} left out: {reason}")
    return notes


def _row_classes(rows: list[dict[str, Any]]) -> list[str]:
    out, prev = [], None
    for r in rows:
        cls = ["best-single"] if r.get("best_single") else []
        if prev is not None and r.get("group") != prev:
            cls.append("group-start")
        prev = r.get("group")
        out.append(" ".join(cls))
    return out


def _markdown(comp: Comparison, rows: list[dict[str, Any]], notes: list[str]) -> str:
    lines = [f"# Comparison: {comp.cfg.data.name}", "", rows_to_markdown(rows), ""]
    lines += [f"- {n}" for n in notes]
    lines += ["", "Methods:", ""]
    lines += [f"- `{m.name}`: {m.description}" for m in comp.methods if m.name in {r['method'] for r in rows}]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------


def report_comparison(comp: Comparison, command: str = "", progress: bool = False, plots: bool = True,
                      elapsed_seconds: float | None = None, projection: str = "tsne") -> ComparisonReport:
    """Write results.{json,csv,md}, comparison.json, the plots and report.html for ``comp``.

    ``projection`` ("tsne" or "pca") makes the 2-D embedding maps; ``plots=False`` leaves
    the plots out (tables and the page only).
    """
    out = comp.out
    selection = _selection(comp, ("single",))
    if selection is None:
        raise ValueError("no single-loss results to compare against")
    ensemble = _selection(comp, ("ensemble", "ablation"))
    query_ms, sizes = _query_and_sizes(comp, progress)
    seconds = {name: [r.seconds_per_step for r in res] for name, res in comp.results.items()}
    methods = [{"name": m.name, "group": m.group, "description": m.description} for m in comp.methods]
    rows = comparison_rows(methods, _per_seed(comp, [m.name for m in comp.methods]), selection, seconds, sizes,
                           query_ms, train_costs(comp.methods, comp.cfg), query_costs(comp.methods, comp.cfg))
    notes = summary_notes(comp, rows, selection, ensemble)
    report = ComparisonReport(rows, selection, ensemble, notes=notes)
    write_json(out / "results.json", rows)
    report.files["results.json"] = out / "results.json"
    report.files["results.csv"] = write_text(out / "results.csv", rows_to_csv(rows))
    report.files["results.md"] = write_text(out / "results.md", _markdown(comp, rows, notes))
    meta = {"command": command, "seeds": comp.seeds, "methods": [m.name for m in comp.methods],
            "best_single": selection.best, "selection": selection.split, "selection_scores": selection.scores,
            "best_ensemble": ensemble.best if ensemble else None, "skipped": comp.skipped,
            "elapsed_seconds": elapsed_seconds}
    write_json(out / "comparison.json", meta)
    report.files["comparison.json"] = out / "comparison.json"
    figures = make_plots(comp, rows, selection, ensemble, out / "plots", progress, projection) if plots else {}
    report.plots = {k: f.path for k, f in figures.items()}
    report.files["report.html"] = _write_html(comp, rows, notes, list(figures.values()), command)
    return report


def _write_html(comp: Comparison, rows: list[dict[str, Any]], notes: list[str], figures: list[Figure],
                command: str) -> Path:
    from lossensemble.reporting.environment import environment_info

    header, body = table_cells(rows)
    first = next((r for res in comp.results.values() for r in res), None)
    device = None
    if first is not None and (first.path / "summary.json").is_file():
        device = read_json(first.path / "summary.json").get("device")
    subtitle = (f"lossensemble compare on {comp.cfg.data.name}, seeds {', '.join(map(str, comp.seeds))}, "
                f"written {time.strftime('%Y-%m-%d %H:%M')}" + (f". Command: {command}" if command else ""))
    content = ReportContent(
        title=f"Ensemble of losses vs single losses: {comp.cfg.data.name}",
        subtitle=subtitle, header=header, body=body, row_classes=_row_classes(rows), notes=notes,
        methods={m.name: m.description for m in comp.methods if m.name in {r["method"] for r in rows}},
        figures=figures, config_yaml=yaml.safe_dump(config_to_dict(comp.cfg), sort_keys=False),
        environment=environment_info(device),
    )
    return write_text(comp.out / "report.html", render_report(content))
