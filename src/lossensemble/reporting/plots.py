"""Plots (PNG, matplotlib, headless) of experiment results."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

__all__ = [
    "line_style",
    "plot_learning_curves",
    "plot_recall_at_k",
    "plot_history",
    "plot_curves",
    "plot_loss_curves",
    "plot_embedding_map",
    "project_2d",
    "plot_retrieval_grid",
]


#: Ten colours (tab10) x four line styles: 40 distinct (colour, line style) pairs; the markers
#: cycle with another period, so (colour, line style, marker) stays distinct for 280 lines.
_COLOURS = tuple(plt.get_cmap("tab10").colors)
_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def line_style(i: int) -> dict[str, object]:
    """Keyword arguments of ``ax.plot`` for the ``i``-th line of a figure: colour, line style and marker.

    Line ``i`` and ``j`` differ in colour or line style for ``i != j`` below 40 (and in the
    triple below 280), so a legend names every line unambiguously.
    """
    return {"color": _COLOURS[i % len(_COLOURS)], "linestyle": _LINESTYLES[(i // len(_COLOURS)) % len(_LINESTYLES)],
            "marker": _MARKERS[i % len(_MARKERS)], "markersize": 3.5, "linewidth": 1.4}


def _legend_outside(ax, fontsize: int = 7) -> None:
    """The legend to the right of the axes (never over the data), in columns of at most 20 entries."""
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
              ncol=max(1, (len(handles) + 19) // 20), frameon=False)


def _figure_legend(fig, axes) -> None:
    """One legend for panels that share their lines (by label), right of all panels."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False,
                   ncol=max(1, (len(labels) + 19) // 20))


def _integer_x(ax) -> None:
    """Integer ticks on an epoch/step axis."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _percent_y(ax) -> None:
    """A percentage axis from 0 to 100, so gaps between methods look as large as they are."""
    ax.set_ylim(0.0, 100.0)


def plot_recall_at_k(
    results: Mapping[str, Mapping[str, float]], path: str | Path, errors: Mapping[str, Mapping[str, float]] | None = None
) -> Path:
    """Grouped bars of Recall@K per method (``results[method]['recall@K']``), optional error bars."""
    ks = sorted({int(k.split("@")[1]) for m in results.values() for k in m if k.startswith("recall@")})
    methods = list(results)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(methods) + 3), 4.0))
    width = 0.8 / max(len(ks), 1)
    for j, k in enumerate(ks):
        xs = [i + (j - (len(ks) - 1) / 2) * width for i in range(len(methods))]
        ys = [results[m].get(f"recall@{k}", float("nan")) for m in methods]
        err = [errors[m].get(f"recall@{k}", 0.0) for m in methods] if errors else None
        ax.bar(xs, ys, width=width, yerr=err, capsize=2, label=f"R@{k}")
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels(methods, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("Recall@K on unseen classes (%)")
    _percent_y(ax)
    ax.legend(ncol=len(ks), fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path, dpi=120)


def plot_history(
    histories: Mapping[str, Sequence[Mapping[str, float]]], prefix: str, path: str | Path, ylabel: str,
    title: str | None = None,
) -> Path | None:
    """One line per (method, column starting with ``prefix``) over epochs; None when no such column."""
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    drawn = 0
    for method, rows in histories.items():
        cols = sorted({k for r in rows for k in r if k.startswith(prefix)})
        for col in cols:
            pts = [(r["epoch"], r[col]) for r in rows if col in r and "epoch" in r]
            if not pts:
                continue
            xs, ys = zip(*pts)
            label = method if len(cols) == 1 else f"{method}: {col[len(prefix):]}"
            ax.plot(xs, ys, label=label, **line_style(drawn))
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("epoch")
    _integer_x(ax)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    fig.tight_layout()
    return _save(fig, path, dpi=120)


def _save(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` as PNG at ``path`` (grown to hold legends outside the axes) and close it."""
    path = Path(path)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_curves(
    series: Mapping[str, Sequence[tuple[float, float]]], path: str | Path, ylabel: str, title: str | None = None,
    xlabel: str = "epoch", percent: bool = False,
) -> Path | None:
    """One line per name through its ``(x, y)`` points (e.g. test Recall@1 per epoch); None when all are empty.

    ``percent``: the y axis runs from 0 to 100. The x axis (epochs, steps) has integer ticks.
    """
    drawn = {name: pts for name, pts in series.items() if pts}
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    for i, (name, pts) in enumerate(drawn.items()):
        xs, ys = zip(*pts)
        ax.plot(xs, ys, label=name, **line_style(i))
    ax.set_xlabel(xlabel)
    _integer_x(ax)
    ax.set_ylabel(ylabel)
    if percent:
        _percent_y(ax)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    fig.tight_layout()
    return _save(fig, path)


def plot_learning_curves(
    curves: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]], path: str | Path, title: str | None = None,
) -> Path | None:
    """One panel per curve key (e.g. ``validation MAP@R``), one line per method, against training steps.

    ``curves[method][key]`` are ``(step, value in %)`` points; every method keeps its
    style in every panel; y axes run from 0 to 100. None when there are no points.
    """
    keys: list[str] = []
    for per_key in curves.values():
        keys.extend(k for k, pts in per_key.items() if pts and k not in keys)
    if not keys:
        return None
    def decorate(ax, key: str) -> None:
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"{key.split()[-1]} (%)")
        _percent_y(ax)

    return _panels(keys, lambda key: [(m, per_key.get(key) or []) for m, per_key in curves.items()], decorate,
                   path, (5.2, 3.4), title)


def plot_cost_accuracy(points: Mapping[str, Mapping[str, object]], path: str | Path,
                       title: str | None = None) -> Path | None:
    """Recall@1 and MAP@R against training cost, one marker per method (mean ± std over seeds).

    ``points[method]`` holds ``train_cost``, ``query_cost`` and ``recall@1``/``map@r`` as
    ``{"mean", "std"}``; filled markers need one backbone per query, hollow ones more. The
    x axis is logarithmic (costs from 1x to tens of x). None when no method has a cost.
    """
    usable = {m: p for m, p in points.items() if p.get("train_cost") and isinstance(p.get("map@r"), Mapping)}
    if not usable:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10.4, 3.8), squeeze=False)
    for ax, (key, label) in zip(axes.flat, (("recall@1", "Recall@1 (%)"), ("map@r", "MAP@R (%)"))):
        for i, (method, p) in enumerate(usable.items()):
            stat = p.get(key) or {}
            if stat.get("mean") is None:
                continue
            style = line_style(i)
            one = (p.get("query_cost") or 1.0) <= 1.0 + 1e-9
            ax.errorbar([float(p["train_cost"])], [stat["mean"]], yerr=[stat.get("std") or 0.0], label=method,
                        color=style["color"], marker=style["marker"], markersize=6, linestyle="none",
                        markerfacecolor=style["color"] if one else "none", capsize=2)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.set_xlabel("train cost (x one single-loss run)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    _figure_legend(fig, axes.flat)
    fig.suptitle(title or "Accuracy against training cost (filled: one backbone per query)")
    fig.tight_layout()
    return _save(fig, path)


def plot_loss_curves(
    histories: Mapping[str, Sequence[Mapping[str, float]]], path: str | Path, title: str | None = None
) -> Path | None:
    """One panel per raw loss (``loss_<name>`` columns, total excluded), one line per method, over epochs."""
    losses: list[str] = []
    for rows in histories.values():
        for r in rows:
            losses.extend(k for k in r if k.startswith("loss_") and k != "loss_total" and k not in losses)
    if not losses:
        return None
    def decorate(ax, col: str) -> None:
        ax.set_title(col[len("loss_"):], fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("raw loss (epoch mean)")

    def lines(col: str) -> list:
        return [(m, [(r["epoch"], r[col]) for r in rows if col in r and "epoch" in r]) for m, rows in histories.items()]

    return _panels(losses, lines, decorate, path, (6.0, 3.2), title)


def _panels(keys: Sequence[str], lines_of, decorate, path: str | Path, panel_size: tuple[float, float],
            title: str | None) -> Path:
    """One panel per key (two columns), one line per method in a style it keeps in every panel; saves the figure.

    ``lines_of(key)`` lists ``(method, [(x, y), ...])`` for every method, in the same order for
    every key; ``decorate(ax, key)`` sets the panel's titles and axes.
    """
    cols = min(len(keys), 2)
    nrows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(panel_size[0] * cols, panel_size[1] * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for i, (method, pts) in enumerate(lines_of(key)):
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, label=method, **line_style(i))
        decorate(ax, key)
        _integer_x(ax)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    _figure_legend(fig, axes.flat)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def project_2d(x: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """A 2-D map of the rows of ``x``: t-SNE (PCA-initialised) or PCA, both from scikit-learn."""
    from sklearn.decomposition import PCA

    x = np.asarray(x, dtype=np.float32)
    if method == "pca" or len(x) < 8:
        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method != "tsne":
        raise ValueError(f"unknown projection {method!r} (tsne or pca)")
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    # Exact gradients are faster than Barnes-Hut for the few hundred points a map shows.
    exact = "exact" if len(x) <= 1000 else "barnes_hut"
    return TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed, method=exact,
                max_iter=500).fit_transform(x)


def choose_classes(labels: np.ndarray, num_classes: int, seed: int = 0) -> np.ndarray:
    """A seeded random subset of the classes present in ``labels`` (sorted)."""
    classes = np.unique(labels)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(classes, size=min(num_classes, len(classes)), replace=False))


def plot_embedding_map(
    panels: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path, num_classes: int = 10,
    method: str = "tsne", seed: int = 0,
) -> Path:
    """Side-by-side 2-D maps of embeddings (``panels[name] = (embeddings, labels)``) coloured by class.

    The same ``num_classes`` classes (seeded choice) are shown in every panel.
    """
    first_labels = next(iter(panels.values()))[1]
    classes = choose_classes(first_labels, num_classes, seed)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.8), squeeze=False)
    for ax, (name, (emb, labels)) in zip(axes.flat, panels.items()):
        keep = np.isin(labels, classes)
        xy = project_2d(emb[keep], method, seed)
        for i, c in enumerate(classes):
            sel = labels[keep] == c
            ax.scatter(xy[sel, 0], xy[sel, 1], s=12, color=cmap(i % cmap.N), label=str(c))
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{'t-SNE' if method == 'tsne' else 'PCA'} of test embeddings, {len(classes)} unseen classes "
                 "(colour = class)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _show_image(ax, image, border: str | None) -> None:
    """Draw ``image`` (PIL or None) without ticks; a coloured frame when ``border`` is given."""
    if image is not None:
        ax.imshow(np.asarray(image), cmap="gray" if np.asarray(image).ndim == 2 else None)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(border is not None)
        if border is not None:
            spine.set_edgecolor(border)
            spine.set_linewidth(3.5)


def plot_retrieval_grid(
    panels: Mapping[str, tuple[np.ndarray, np.ndarray]],
    queries: Sequence[int],
    get_image: Callable[[int], object],
    path: str | Path,
) -> Path:
    """Queries (one per row) and their top neighbours under each embedding; wrong neighbours framed red.

    ``panels[name] = (neighbours, correct)``: arrays (len(queries), k) of dataset indices and
    booleans. ``get_image(i)`` returns dataset item ``i`` as a PIL image. Right neighbours
    get a green frame, wrong ones a red frame.
    """
    names = list(panels)
    k = next(iter(panels.values()))[0].shape[1]
    widths = [1.0] + sum(([0.25] + [1.0] * k for _ in names), [])
    fig = plt.figure(figsize=(0.95 * sum(widths) + 0.3, 1.05 * len(queries) + 0.7))
    grid = fig.add_gridspec(len(queries), len(widths), width_ratios=widths, wspace=0.08, hspace=0.12)
    for row, q in enumerate(queries):
        ax = fig.add_subplot(grid[row, 0])
        _show_image(ax, get_image(int(q)), "black")
        if row == 0:
            ax.set_title("query", fontsize=9)
        for p, name in enumerate(names):
            neighbours, correct = panels[name]
            for j in range(k):
                ax = fig.add_subplot(grid[row, 1 + p * (k + 1) + 1 + j])
                idx = int(neighbours[row, j])
                _show_image(ax, get_image(idx) if idx >= 0 else None, "tab:green" if correct[row, j] else "red")
                if row == 0 and j == 0:
                    ax.set_title(f"{name}: top {k}", fontsize=9, loc="left")
    fig.suptitle("Retrieval on unseen classes (green frame: same class as the query, red: wrong)", fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.55 / (1.05 * len(queries) + 0.7))
    return _save(fig, path)
