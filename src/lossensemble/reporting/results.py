"""The comparison's result table: rows per method (mean ± std over seeds), written as JSON, CSV and Markdown.

A row is a plain dict::

    {"method": "equal", "group": "ensemble", "description": "...", "seeds": [0, 1],
     "recall@1": {"mean": 71.2, "std": 0.4}, ...,              # every metric
     "embedding_size": 256, "seconds_per_step": {"mean": ..., "std": ...},
     "query_ms": 0.012,                                        # faiss search per query
     "train_cost": 1.0,                                        # backbone compute trained, x one single-loss run
     "query_cost": 1.0,                                        # backbone compute per query, x one backbone
     "gain": {"recall@1": {"mean": 1.3, "std": 0.5}, ...},     # paired, vs the best single loss
     "best_single": false}
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from lossensemble.reporting.aggregate import GAIN_METRICS, Selection, aggregate_metrics, mean_std, paired_gain
from lossensemble.reporting.tables import METRIC_ORDER, _title

__all__ = [
    "TABLE_METRICS",
    "comparison_rows",
    "measure_query_seconds",
    "rows_to_csv",
    "rows_to_markdown",
    "format_mean_std",
    "table_cells",
    "terminal_table",
    "format_cost",
    "strip_counts",
]

#: Metrics of the table, in order (NMI after the recalls, as in the papers).
TABLE_METRICS = tuple(METRIC_ORDER)


def measure_query_seconds(embeddings: np.ndarray, k: int, distance: str = "cosine", repeats: int = 3) -> float:
    """Seconds per query to search ``embeddings`` against themselves (exact faiss, k neighbours, self excluded).

    The best of ``repeats`` timings, so other processes on a shared machine disturb it less.
    """
    from lossensemble.evaluation import knn_search

    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        knn_search(x, x, k=k, distance=distance, exclude_self=True)
        best = min(best, time.perf_counter() - start)
    return best / max(len(x), 1)


def strip_counts(stats: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{"mean", "std"}`` per key (the ``n`` of :func:`mean_std` left out)."""
    return {k: {"mean": v["mean"], "std": v["std"]} for k, v in stats.items()}


def comparison_rows(
    methods: Sequence[Mapping[str, Any]],
    test: Mapping[str, Mapping[int, Mapping[str, float]]],
    selection: Selection,
    seconds_per_step: Mapping[str, Sequence[float | None]],
    embedding_size: Mapping[str, int | None],
    query_ms: Mapping[str, float | None],
    train_cost: Mapping[str, float | None] | None = None,
    query_cost: Mapping[str, float | None] | None = None,
) -> list[dict[str, Any]]:
    """One row per method (``methods``: dicts with name, group, description), in the given order.

    ``test[method][seed]`` are the test metrics of that method on that seed; gains are
    paired by seed against ``selection.best``. ``train_cost``: backbone images processed
    in training (weighted by backbone FLOPs for a branched model), as a multiple of one single-loss run
    (:func:`lossensemble.experiments.cost.train_costs`); ``query_cost``: backbone compute to
    embed one query, as a multiple of one backbone (:func:`~lossensemble.experiments.cost.query_costs`).
    """
    train_cost = train_cost or {}
    query_cost = query_cost or {}
    reference = test[selection.best]
    rows = []
    for m in methods:
        name = m["name"]
        per_seed = test.get(name)
        if not per_seed:
            continue
        stats = aggregate_metrics([per_seed[s] for s in sorted(per_seed)])
        ordered = {k: stats[k] for k in TABLE_METRICS if k in stats}
        ordered.update({k: v for k, v in stats.items() if k not in ordered})
        row: dict[str, Any] = {"method": name, "group": m.get("group", ""), "description": m.get("description", ""),
                               "seeds": sorted(per_seed)}
        row.update(strip_counts(ordered))
        row["embedding_size"] = embedding_size.get(name)
        sps = mean_std(v for v in seconds_per_step.get(name, []) if v is not None)
        row["seconds_per_step"] = {"mean": sps["mean"], "std": sps["std"]}
        row["query_ms"] = query_ms.get(name)
        row["train_cost"] = train_cost.get(name)
        row["query_cost"] = query_cost.get(name)
        row["gain"] = strip_counts(paired_gain(per_seed, reference, GAIN_METRICS))
        row["best_single"] = name == selection.best
        rows.append(row)
    return rows


def format_mean_std(stat: Mapping[str, Any] | None, digits: int = 2, signed: bool = False) -> str:
    """``"71.20 ± 0.40"`` (``"71.20"`` without a std, ``"-"`` without a mean)."""
    if not stat or stat.get("mean") is None:
        return "-"
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    text = fmt.format(stat["mean"])
    if stat.get("std") is not None:
        text += f" ± {stat['std']:.{digits}f}"
    return text


def format_cost(cost: float | None) -> str:
    """A training cost as ``"4x"`` (``"1.94x"`` when not whole, ``"-"`` when unknown)."""
    if cost is None:
        return "-"
    return f"{cost:.0f}x" if abs(cost - round(cost)) < 1e-9 else f"{cost:.3g}x"


def _metric_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    present = {k for r in rows for k, v in r.items() if isinstance(v, dict) and "mean" in v}
    present.discard("seconds_per_step")
    return [k for k in TABLE_METRICS if k in present] + sorted(present - set(TABLE_METRICS))


def table_cells(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and body cells of the comparison table (shared by Markdown, HTML and the terminal)."""
    metrics = _metric_keys(rows)
    header = ["method"] + [_title(k) for k in metrics] + ["dim", "train cost", "query cost", "s/step", "query ms"]
    header += [f"Δ {_title(k)}" for k in GAIN_METRICS]
    body = []
    for r in rows:
        name = r["method"] + (" *" if r.get("best_single") else "")
        cells = [name] + [format_mean_std(r.get(k)) for k in metrics]
        cells.append(str(r["embedding_size"]) if r.get("embedding_size") else "-")
        cells.append(format_cost(r.get("train_cost")))
        cells.append(format_cost(r.get("query_cost")))
        sps = r.get("seconds_per_step") or {}
        cells.append(f"{sps['mean']:.3f}" if sps.get("mean") is not None else "-")
        cells.append(f"{r['query_ms']:.4f}" if r.get("query_ms") is not None else "-")
        gains = r.get("gain", {})
        cells += ["" if r.get("best_single") else format_mean_std(gains.get(k), signed=True) for k in GAIN_METRICS]
        body.append(cells)
    return header, body


#: Columns of the terminal table, most important first (the full table is in results.md).
_TERMINAL_METRICS = ("recall@1", "map@r")


def terminal_table(rows: Sequence[Mapping[str, Any]], width: int = 100) -> str:
    """The comparison table for a terminal, at most ``width`` characters wide.

    Method, Recall@1, MAP@R, dim, train cost, query ms and the gains in Recall@1/MAP@R;
    the ``± std`` parts go first when too wide, then query ms, dim, Δ Recall@1, cost, ...,
    then long method names are shortened with ``…``.
    """
    gain_keys = [k for k in GAIN_METRICS if k in _TERMINAL_METRICS]
    metrics = [k for k in _TERMINAL_METRICS if any(isinstance(r.get(k), dict) for r in rows)]
    header = ["method"] + [_title(k) for k in metrics] + ["dim", "cost", "query ms"]
    header += [f"Δ {_title(k)}" for k in gain_keys]

    def body(with_std: bool) -> list[list[str]]:
        out = []
        for r in rows:
            strip = (lambda st: st) if with_std else (lambda st: {"mean": (st or {}).get("mean")})
            cells = [r["method"] + (" *" if r.get("best_single") else "")]
            cells += [format_mean_std(strip(r.get(k))) for k in metrics]
            cells.append(str(r["embedding_size"]) if r.get("embedding_size") else "-")
            cells.append(format_cost(r.get("train_cost")))
            cells.append(f"{r['query_ms']:.4f}" if r.get("query_ms") is not None else "-")
            gains = r.get("gain") or {}
            cells += ["" if r.get("best_single") else format_mean_std(strip(gains.get(k)), signed=True)
                      for k in gain_keys]
            out.append(cells)
        return out

    def render(head: list[str], cells: list[list[str]]) -> list[str]:
        widths = [max(len(c[i]) for c in [head] + cells) for i in range(len(head))]
        return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                for line in [head, ["-" * w for w in widths]] + cells]

    def fits(head: list[str], cells: list[list[str]]) -> bool:
        return max(map(len, render(head, cells))) <= width

    head, cells = list(header), body(True)
    if not fits(head, cells):
        cells = body(False)
    drop = ["query ms", "dim", f"Δ {_title('recall@1')}", "cost", f"Δ {_title('map@r')}", _title("recall@1")]
    for name in drop:
        if fits(head, cells):
            break
        if name in head:
            i = head.index(name)
            head, cells = head[:i] + head[i + 1:], [c[:i] + c[i + 1:] for c in cells]
    if not fits(head, cells):
        excess = max(map(len, render(head, cells))) - width
        keep = max(4, max(len(c[0]) for c in cells) - excess)
        cells = [[c[0] if len(c[0]) <= keep else c[0][:keep - 1] + "…"] + c[1:] for c in cells]
    return "\n".join(line[:width] for line in render(head, cells))


def rows_to_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The comparison table in GitHub Markdown (mean ± std over seeds)."""
    header, body = table_cells(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def rows_to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """Flat CSV: ``<metric>_mean``/``<metric>_std`` columns, gains as ``gain_<metric>_mean``/``_std``."""
    metrics = _metric_keys(rows)
    fields = ["method", "group", "seeds"]
    for k in metrics:
        fields += [f"{k}_mean", f"{k}_std"]
    fields += ["embedding_size", "train_cost", "query_cost", "seconds_per_step_mean", "seconds_per_step_std",
               "query_ms"]
    for k in GAIN_METRICS:
        fields += [f"gain_{k}_mean", f"gain_{k}_std"]
    fields += ["best_single", "description"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        flat: dict[str, Any] = {"method": r["method"], "group": r.get("group", ""),
                                "seeds": " ".join(str(s) for s in r.get("seeds", [])),
                                "embedding_size": r.get("embedding_size"), "train_cost": r.get("train_cost"),
                                "query_cost": r.get("query_cost"),
                                "query_ms": r.get("query_ms"),
                                "best_single": r.get("best_single", False), "description": r.get("description", "")}
        for k in metrics:
            flat[f"{k}_mean"] = (r.get(k) or {}).get("mean")
            flat[f"{k}_std"] = (r.get(k) or {}).get("std")
        flat["seconds_per_step_mean"] = (r.get("seconds_per_step") or {}).get("mean")
        flat["seconds_per_step_std"] = (r.get("seconds_per_step") or {}).get("std")
        for k in GAIN_METRICS:
            g = (r.get("gain") or {}).get(k) or {}
            flat[f"gain_{k}_mean"] = g.get("mean")
            flat[f"gain_{k}_std"] = g.get("std")
        writer.writerow({k: ("" if v is None else v) for k, v in flat.items()})
    return buf.getvalue()


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (UTF-8) and return the path."""
    path = Path(path)
    path.write_text(text, encoding="utf-8")
    return path
