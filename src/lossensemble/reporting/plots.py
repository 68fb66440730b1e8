"""Plots (PNG, matplotlib, headless) of experiment results."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_recall_at_k", "plot_history"]


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
    low = min((v for m in results.values() for k, v in m.items() if k.startswith("recall@")), default=0.0)
    ax.set_ylim(max(0.0, low - 10), 100)
    ax.legend(ncol=len(ks), fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
