"""Turning per-seed results into comparison rows: mean and std over seeds, best single loss, gains.

Pure functions on plain data (no torch, no files), so they are easy to test and
reuse. Conventions:

* ``std`` is the sample standard deviation over seeds (``ddof=1``); with one seed it
  is ``None`` (JSON ``null``), since one number has no spread.
* The best single loss is chosen by validation MAP@R (mean over seeds) when every
  single-loss run has validation metrics, else by test MAP@R; the selection says which.
* A gain is paired by seed: ``method(seed) - best_single(seed)`` over the seeds both
  have, then mean and std of those differences.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from lossensemble.experiments.selection import Selection, mean_std, select_best

__all__ = [
    "GAIN_METRICS",
    "Selection",
    "mean_std",
    "aggregate_metrics",
    "select_best",
    "paired_gain",
]

#: Metrics whose gain over the best single loss is shown in the tables.
GAIN_METRICS = ("recall@1", "knn_acc", "map@r")


def aggregate_metrics(per_seed: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float | None]]:
    """Mean/std over seeds of every metric present in any seed's mapping (order of first appearance)."""
    keys: list[str] = []
    for metrics in per_seed:
        keys.extend(k for k in metrics if k not in keys)
    return {k: mean_std(m[k] for m in per_seed if k in m) for k in keys}


def paired_gain(
    method: Mapping[int, Mapping[str, float]], reference: Mapping[int, Mapping[str, float]],
    metrics: Sequence[str] = GAIN_METRICS,
) -> dict[str, dict[str, float | None]]:
    """Per-seed differences ``method - reference`` (seed -> metrics), as mean/std per metric."""
    seeds = [s for s in method if s in reference]
    return {k: mean_std(method[s][k] - reference[s][k] for s in seeds if k in method[s] and k in reference[s])
            for k in metrics}
