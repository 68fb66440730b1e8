"""The demo: a small comparison on the embedded glyph data, run by ``lossensemble demo``.

Trains, with the same data, budget and seed: every loss of the config alone, the
ensemble in the config's weighting, and the paper's exact configuration (learned
weights with running-mean scale normalisation). The best single loss is chosen by the
same rule as ``compare`` (:func:`~lossensemble.experiments.selection.select_best`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lossensemble.config import Config
from lossensemble.experiments.catalogue import paper_config
from lossensemble.experiments.runs import run_or_reuse, single_loss_config
from lossensemble.experiments.selection import Selection, last_validation, select_best
from lossensemble.io import write_json
from lossensemble.training.run import read_history

__all__ = ["DemoMethod", "DemoResult", "demo_methods", "run_demo"]


@dataclass(frozen=True)
class DemoMethod:
    """One row of the demo: display name, run folder name, config, embedding reported."""

    name: str
    folder: str
    cfg: Config
    embedding: str


@dataclass
class DemoResult:
    """Test metrics per method, the best single loss, and training seconds per method."""

    rows: dict[str, dict[str, float]]
    selection: Selection
    train_seconds: dict[str, float]
    val_scores: dict[str, float | None]

    def gains(self, name: str, metrics=("recall@1", "knn_acc", "map@r")) -> dict[str, float]:
        """``name``'s metrics minus the best single loss's."""
        best = self.rows[self.selection.best]
        return {k: self.rows[name][k] - best[k] for k in metrics}


def demo_methods(cfg: Config) -> list[DemoMethod]:
    """Each loss alone, the ensemble as configured, and the paper's configuration."""
    methods = [DemoMethod(f"single: {loss.name}", f"single-{loss.name}", single_loss_config(cfg, loss.name),
                          f"heads.{loss.name}") for loss in cfg.losses]
    w = cfg.weighting
    methods.append(DemoMethod(f"ensemble ({w.scheme}, scale {w.scale})", "ensemble", cfg, "ensemble"))
    methods.append(DemoMethod("paper (learned, scale running_mean)", "paper", paper_config(cfg), "ensemble"))
    return methods


def run_demo(cfg: Config, out: Path, progress: bool = True, say: Callable[[str], None] = print) -> DemoResult:
    """Train (or reuse) every demo method under ``out`` and collect the results (also written as results.json)."""
    methods = demo_methods(cfg)
    rows: dict[str, dict[str, float]] = {}
    val: dict[str, dict[str, float] | None] = {}
    seconds: dict[str, float] = {}
    for i, m in enumerate(methods, 1):
        folder = Path(out) / m.folder
        say(f"[{i}/{len(methods)}] {m.name} -> {folder}")
        res = run_or_reuse(m.name, m.cfg, folder, progress=progress)
        rows[m.name] = res.metrics[m.embedding]
        seconds[m.name] = res.summary.get("train_seconds", 0.0)
        val[m.name] = last_validation(read_history(res.path / "history.csv"), m.embedding)
    singles = [m.name for m in methods if m.folder.startswith("single-")]
    selection = select_best({n: [rows[n]] for n in singles}, {n: [val[n]] for n in singles})
    val_scores = {n: (v or {}).get("map@r") for n, v in val.items()}
    result = DemoResult(rows, selection, seconds, val_scores)
    write_json(Path(out) / "results.json", {"methods": rows, "best_single": selection.best,
                                             "selection": selection.describe(), "train_seconds": seconds,
                                             "validation_map@r": val_scores})
    return result
