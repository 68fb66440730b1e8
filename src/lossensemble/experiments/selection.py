"""The one rule for "the best single loss": the reference every gain is measured against.

Chosen by mean validation MAP@R over seeds when every single-loss run has validation
metrics (validation classes are held out of the training classes, never test
classes), else by mean test MAP@R; the :class:`Selection` says which. The demo,
``compare`` and the report all use :func:`select_best`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from lossensemble.evaluation.metrics import metric_title
from lossensemble.io import read_json
from lossensemble.training.run import RunPaths, read_history

__all__ = ["mean_std", "Selection", "select_best", "last_validation", "run_scores", "best_single", "best_head"]


def mean_std(values: Iterable[float]) -> dict[str, float | None]:
    """``{"mean", "std", "n"}`` of finite ``values``; std is the sample std (None for fewer than 2)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "n": n}


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
        return f"{self.best}, chosen by mean {metric_title(self.metric)} on the {how}"


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


def last_validation(history: list[dict[str, Any]], embedding: str) -> dict[str, float] | None:
    """The last epoch's validation metrics of ``embedding`` in a run's history (None without a val split)."""
    prefix = f"val/{embedding}/"
    for row in reversed(history):
        vals = {k[len(prefix):]: float(v) for k, v in row.items() if k.startswith(prefix)}
        if vals:
            return vals
    return None


def run_scores(run: str | Path, embedding: str) -> tuple[dict[str, float], dict[str, float] | None]:
    """``(test metrics, last validation metrics or None)`` of ``embedding`` in a finished run folder."""
    paths = RunPaths(Path(run))
    val = last_validation(read_history(paths.history), embedding) if paths.history.is_file() else None
    return read_json(paths.metrics)[embedding], val


def best_single(single_runs: Sequence[Path], embeddings: Sequence[str]) -> int:
    """Index of the best single-loss run (one seed each) by :func:`select_best`."""
    names = [str(i) for i in range(len(single_runs))]
    scores = [run_scores(run, emb) for run, emb in zip(single_runs, embeddings)]
    selection = select_best({n: [t] for n, (t, _) in zip(names, scores)},
                            {n: [v] for n, (_, v) in zip(names, scores)})
    return int(selection.best)


def best_head(run: str | Path, metric: str = "map@r") -> Selection:
    """The head (``heads.<loss>`` embedding) of a finished run with the best last validation ``metric``.

    Reads the run's metrics.json (which heads it has) and history.csv (their validation
    metrics). Never looks at test metrics: raises :class:`~lossensemble.errors.UserError`
    when the run has no validation metrics for every head (no validation classes).
    """
    from lossensemble.errors import UserError

    paths = RunPaths(Path(run))
    heads = [k for k in read_json(paths.metrics) if k.startswith("heads.")]
    history = read_history(paths.history) if paths.history.is_file() else []
    val = {h: last_validation(history, h) for h in heads}
    missing = [h for h, v in val.items() if not v or metric not in v]
    if not heads or missing:
        raise UserError(f"{paths.root}: no validation {metric_title(metric)} for "
                        f"{', '.join(missing) or 'its heads'}; choosing a head needs validation classes "
                        "(set data.val_fraction)")
    scores = {h: float(v[metric]) for h, v in val.items()}
    return Selection(max(scores, key=lambda h: scores[h]), "validation", metric, scores)
