"""Plain-text and Markdown tables of metrics, ready to paste into a terminal or a paper."""

from __future__ import annotations

from typing import Iterable, Mapping

from lossensemble.evaluation.metrics import metric_title

__all__ = ["METRIC_ORDER", "metric_columns", "format_table", "markdown_table"]

METRIC_ORDER = ["recall@1", "recall@2", "recall@4", "recall@8", "nmi", "knn_acc", "map@r", "r_precision"]


def metric_columns(rows: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Metric names present in ``rows``, in the conventional order (others after)."""
    present: list[str] = []
    for metrics in rows.values():
        for key in metrics:
            if key not in present:
                present.append(key)
    ordered = [m for m in METRIC_ORDER if m in present]
    return ordered + [m for m in present if m not in ordered]


def _title(metric: str) -> str:
    return metric_title(metric)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def format_table(
    rows: Mapping[str, Mapping[str, float]],
    columns: Iterable[str] | None = None,
    first: str = "embedding",
    marks: Mapping[str, str] | None = None,
) -> str:
    """An aligned plain-text table: one row per name, one column per metric."""
    cols = list(columns) if columns is not None else metric_columns(rows)
    marks = marks or {}
    header = [first] + [_title(c) for c in cols]
    body = [[f"{name}{marks.get(name, '')}"] + [_cell(metrics.get(c)) for c in cols] for name, metrics in rows.items()]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in body:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def markdown_table(
    rows: Mapping[str, Mapping[str, float]], columns: Iterable[str] | None = None, first: str = "method"
) -> str:
    """The same table in GitHub Markdown."""
    cols = list(columns) if columns is not None else metric_columns(rows)
    lines = ["| " + " | ".join([first] + [_title(c) for c in cols]) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * len(cols)) + "|")
    for name, metrics in rows.items():
        lines.append("| " + " | ".join([name] + [_cell(metrics.get(c)) for c in cols]) + " |")
    return "\n".join(lines)
