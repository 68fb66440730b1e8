"""``lossensemble evaluate-embeddings``: retrieval metrics for embeddings saved as .npy files.

Works for embeddings from any model: the metrics come from
:func:`lossensemble.evaluation.compute_metrics` (faiss exact search, chunked).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lossensemble.errors import UserError

__all__ = ["register", "run", "load_npy", "format_table", "DISTANCE_CHOICES"]

#: ``lossensemble.evaluation.DISTANCES``, written out so that ``--help`` does not import faiss
#: (a test checks that the two agree).
DISTANCE_CHOICES = ("cosine", "euclidean")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate-embeddings`` parser."""
    parser = subparsers.add_parser(
        "evaluate-embeddings",
        help="Recall@K, kNN accuracy, MAP@R, R-precision and NMI of saved embeddings",
        description=(
            "Evaluate embeddings (an (n, d) .npy file) against their class labels (an (n,) .npy "
            "file): each query is searched against all other items, or against the gallery only "
            "when query/gallery masks are given. Values are percentages."
        ),
    )
    parser.add_argument("--embeddings", required=True, type=Path, metavar="E.npy", help="(n, d) float array")
    parser.add_argument("--labels", required=True, type=Path, metavar="y.npy", help="(n,) class labels")
    parser.add_argument("--k", nargs="+", type=int, default=[1, 2, 4, 8], metavar="K", help="Recall@K values (default: 1 2 4 8)")
    parser.add_argument("--distance", choices=DISTANCE_CHOICES, default="cosine", help="default: cosine")
    parser.add_argument("--no-nmi", action="store_true", help="skip k-means NMI (the slowest metric on big sets)")
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="also write the metrics as JSON")
    parser.add_argument("--query-mask", type=Path, metavar="Q.npy", help="(n,) bool: items used as queries")
    parser.add_argument("--gallery-mask", type=Path, metavar="G.npy", help="(n,) bool: items searched")
    parser.add_argument("--chunk-size", type=int, default=None, metavar="N", help="queries searched at once")
    parser.add_argument("--device", default=None, help="cpu (default) or cuda[:N]")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="faiss threads (default: all cores)")
    parser.set_defaults(func=run)


def load_npy(path: Path, what: str) -> np.ndarray:
    """Load a .npy array without pickles; any problem becomes a one-line :class:`UserError`."""
    if not path.is_file():
        raise UserError(f"{what} file not found: {path}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"cannot read {what} file {path} as a .npy array: {exc}") from None


def format_table(metrics: dict[str, float]) -> str:
    """A two-column text table of the metrics (percentages with two decimals)."""
    width = max(len("metric"), *(len(key) for key in metrics))
    lines = [f"{'metric':<{width}}  {'value':>7}", f"{'-' * width}  {'-' * 7}"]
    for key, value in metrics.items():
        text = "n/a" if math.isnan(value) else f"{value:.2f}"
        lines.append(f"{key:<{width}}  {text:>7}")
    return "\n".join(lines)


def _write_json(path: Path, metrics: dict[str, float]) -> None:
    clean = {key: (None if math.isnan(value) else value) for key, value in metrics.items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(clean, indent=2) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


def _load_masks(args: argparse.Namespace) -> tuple[Any, Any]:
    if (args.query_mask is None) != (args.gallery_mask is None):
        raise UserError("give both --query-mask and --gallery-mask, or neither")
    if args.query_mask is None:
        return None, None
    return load_npy(args.query_mask, "query mask"), load_npy(args.gallery_mask, "gallery mask")


def run(args: argparse.Namespace) -> int:
    """Load the arrays, compute the metrics, print the table, optionally write JSON."""
    from lossensemble.evaluation import EvaluationWarning, compute_metrics

    embeddings = load_npy(args.embeddings, "embeddings")
    labels = load_npy(args.labels, "labels")
    is_query, is_gallery = _load_masks(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EvaluationWarning)
        metrics = compute_metrics(
            embeddings,
            labels,
            k=args.k,
            distance=args.distance,
            nmi=not args.no_nmi,
            is_query=is_query,
            is_gallery=is_gallery,
            progress=sys.stderr.isatty(),
            chunk_size=args.chunk_size,
            device=args.device,
            threads=args.threads,
        )
    for warning in caught:
        print(f"lossensemble: warning: {warning.message}", file=sys.stderr)
    print(f"{len(embeddings)} items, {len(np.unique(labels))} classes, {args.distance} distance")
    print(format_table(metrics))
    if args.json is not None:
        _write_json(args.json, metrics)
        print(f"wrote {args.json}")
    return 0
