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

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

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


def mean_std(values: Iterable[float]) -> dict[str, float | None]:
    """``{"mean", "std", "n"}`` of finite ``values``; std is the sample std (None for fewer than 2)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "n": n}


def aggregate_metrics(per_seed: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float | None]]:
    """Mean/std over seeds of every metric present in any seed's mapping (order of first appearance)."""
    keys: list[str] = []
    for metrics in per_seed:
        keys.extend(k for k in metrics if k not in keys)
    return {k: mean_std(m[k] for m in per_seed if k in m) for k in keys}


@dataclass(frozen=True)
class Selection:
    """Which single loss is the reference, and on which split/metric it was chosen."""

    best: str
    split: str  # "validation" or "test"
    metric: str
    scores: dict[str, float]

    def describe(self) -> str:
        how = ("validation classes (held out of the training classes)" if self.split == "validation"
               else "test classes, since the config has no validation split")
        return f"{self.best}, chosen by mean {_metric_title(self.metric)} on the {how}"


def select_best(
    test: Mapping[str, Sequence[Mapping[str, float]]],
    val: Mapping[str, Sequence[Mapping[str, float] | None]],
    metric: str = "map@r",
) -> Selection:
    """The best of the single-loss methods in ``test`` (method -> per-seed metrics).

    Uses ``val`` (method -> per-seed validation metrics or None) when every method has
    validation ``metric`` on every seed; otherwise the test metrics.
    """
    if not test:
        raise ValueError("select_best needs at least one method")
    use_val = all(val.get(name) and all(v is not None and metric in v for v in val[name]) for name in test)
    source = val if use_val else test
    scores = {name: mean_std(m[metric] for m in source[name] if m is not None and metric in m)["mean"]
              for name in test}
    ranked = {k: v for k, v in scores.items() if v is not None}
    if not ranked:
        raise ValueError(f"no single-loss method has {metric!r}")
    best = max(ranked, key=lambda k: ranked[k])
    return Selection(best, "validation" if use_val else "test", metric, dict(ranked))


def paired_gain(
    method: Mapping[int, Mapping[str, float]], reference: Mapping[int, Mapping[str, float]],
    metrics: Sequence[str] = GAIN_METRICS,
) -> dict[str, dict[str, float | None]]:
    """Per-seed differences ``method - reference`` (seed -> metrics), as mean/std per metric."""
    seeds = [s for s in method if s in reference]
    return {k: mean_std(method[s][k] - reference[s][k] for s in seeds if k in method[s] and k in reference[s])
            for k in metrics}


def _metric_title(metric: str) -> str:
    from lossensemble.reporting.tables import _title

    return _title(metric)
