"""Experiments: several runs side by side (``compare``, ``demo``), reusing finished runs.

* :mod:`~lossensemble.experiments.runs`: train-or-reuse one run folder.
* :mod:`~lossensemble.experiments.methods` / :mod:`~lossensemble.experiments.catalogue`: the methods a
  comparison can hold.
* :mod:`~lossensemble.experiments.selection`: the one rule for the best single loss (and an ensemble's best head).
* :mod:`~lossensemble.experiments.cost`: the training cost of each row (x one single-loss run).
* :mod:`~lossensemble.experiments.embeddings`: cached test embeddings of a run.
* :mod:`~lossensemble.experiments.derived`: independent ensemble, distillation, compression of runs.
* :mod:`~lossensemble.experiments.comparison`: running a comparison.
* :mod:`~lossensemble.experiments.demo`: the demo, a small comparison.

Submodules are imported on first use, so the CLI's ``--help`` stays fast.
"""

from __future__ import annotations

from lossensemble.lazy import lazy_exports

_LAZY = {
    "Comparison": "comparison",
    "MethodResult": "comparison",
    "run_comparison": "comparison",
    "DEFAULT_METHODS": "methods",
    "METHOD_CHOICES": "methods",
    "METHOD_PRESETS": "methods",
    "expand_methods": "methods",
    "train_costs": "cost",
    "long_config": "runs",
    "best_head": "selection",
    "Method": "catalogue",
    "comparison_methods": "catalogue",
    "RunResult": "runs",
    "run_or_reuse": "runs",
    "single_loss_config": "runs",
    "with_changes": "runs",
    "Selection": "selection",
    "best_single": "selection",
    "select_best": "selection",
    "run_demo": "demo",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
