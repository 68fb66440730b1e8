"""The comparison table: the train-cost column everywhere, and a terminal table that fits 100 columns."""

from __future__ import annotations

import csv
import io

from lossensemble.reporting.aggregate import select_best
from lossensemble.reporting.results import (
    comparison_rows,
    format_cost,
    rows_to_csv,
    rows_to_markdown,
    table_cells,
    terminal_table,
)

NAMES = ["single-classification", "single-proxy_nca", "learned-noscale", "learned-long", "independent-compressed",
         "learned-noscale-best-head", "learned-long-best-head", "equal-head-classification"]
COSTS = [1.0, 1.0, 1.0, 4.0, 2.0, 1.0, 4.0, 1.0]


def rows():
    metrics = ("recall@1", "recall@2", "recall@4", "recall@8", "nmi", "knn_acc", "map@r", "r_precision")
    test = {n: {s: {m: 50.0 + 3.3 * i + 1.7 * s + j for j, m in enumerate(metrics)} for s in (0, 1, 2)}
            for i, n in enumerate(NAMES)}
    selection = select_best({n: list(test[n].values()) for n in NAMES[:2]}, {})
    methods = [{"name": n, "group": "g", "description": "d"} for n in NAMES]
    return comparison_rows(methods, test, selection, {n: [0.1234, 0.2] for n in NAMES}, {n: 128 for n in NAMES},
                           {n: 0.0123 for n in NAMES}, dict(zip(NAMES, COSTS)))


def test_train_cost_in_every_table():
    table = rows()
    assert [r["train_cost"] for r in table] == COSTS
    header, body = table_cells(table)
    col = header.index("train cost")
    assert [cells[col] for cells in body] == ["1x", "1x", "1x", "4x", "2x", "1x", "4x", "1x"]
    assert "| train cost |" in rows_to_markdown(table)
    parsed = list(csv.DictReader(io.StringIO(rows_to_csv(table))))
    assert [float(r["train_cost"]) for r in parsed] == COSTS
    assert format_cost(1.5) == "1.5x" and format_cost(None) == "-"


def test_terminal_table_fits_100_columns_and_keeps_every_row():
    table = rows()
    full = rows_to_markdown(table).splitlines()
    assert max(map(len, full)) > 100  # the full table would not fit
    text = terminal_table(table, width=100)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 100
    assert len(lines) == 2 + len(NAMES)
    for name, line in zip(NAMES, lines[2:]):
        assert line.startswith(name)
    header = lines[0]
    assert header.split() == ["method", "R@1", "MAP@R", "dim", "cost", "query", "ms", "Δ", "R@1", "Δ", "MAP@R"]
    assert "4x" in lines[2 + NAMES.index("learned-long")]
    # narrower still: columns go, rows and names stay readable
    narrow = terminal_table(table, width=60).splitlines()
    assert max(map(len, narrow)) <= 60 and len(narrow) == 2 + len(NAMES)
    assert "MAP@R" in narrow[0] and "cost" in narrow[0]
    assert all(line.startswith(name) for name, line in zip(NAMES, narrow[2:]))
