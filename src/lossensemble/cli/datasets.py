"""``lossensemble datasets``: the registered datasets, their split sizes, where they are read from, how to get them."""

from __future__ import annotations

import argparse
import json

__all__ = ["register", "run", "format_table"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "datasets",
        help="list the datasets and whether their data is present",
        description=(
            "List every registered dataset: classes/images of its train and test splits (when the data "
            "is present), where it is read from and how to get it. Benchmarks are looked for under "
            "$LOSSENSEMBLE_DATA (default ./data); glyph counts come from the default options, nothing is rendered."
        ),
    )
    parser.add_argument("--root-dir", metavar="DIR", default=None,
                        help="folder holding the dataset folders (default: $LOSSENSEMBLE_DATA or ./data)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.set_defaults(func=run)


def _split(row: dict, part: str) -> str:
    classes, images = row[f"{part}_classes"], row[f"{part}_images"]
    if classes is None:
        return row["status"] if row["status"] in ("not found", "user data") else "-"
    return f"{classes} / {images}"


def format_table(rows: list[dict]) -> str:
    """The rows of :func:`list_datasets` as an aligned text table."""
    header = ["name", "train classes/images", "test classes/images", "read from", "how to get it"]
    body = [[r["name"], _split(r, "train"), _split(r, "test"), r["location"], r["how_to_get"]] for r in rows]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header) - 1)]
    lines = []
    for line in [header, ["-" * w for w in widths] + ["-" * len(header[-1])], *body]:
        cells = [str(c).ljust(w) for c, w in zip(line, widths)] + [str(line[-1])]
        lines.append("  ".join(cells).rstrip())
    notes = [f"{r['name']}: {r['status']}" for r in rows if r["status"] not in ("ok", "not found", "user data")]
    return "\n".join(lines + ([""] + notes if notes else []))


def run(args: argparse.Namespace) -> int:
    from lossensemble.data import list_datasets

    rows = list_datasets(args.root_dir)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows))
    return 0
