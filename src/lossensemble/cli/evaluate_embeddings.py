"""``lossensemble evaluate-embeddings``: retrieval metrics for embeddings saved as .npy files.

Works for embeddings from any model: the metrics come from
:func:`lossensemble.evaluation.compute_metrics` (faiss exact search, chunked).
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lossensemble.cli.common import add_json_arguments, check_output_file, emit_json
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
    add_json_arguments(parser)
    parser.add_argument("--query-mask", type=Path, metavar="Q.npy", help="(n,) bool: items used as queries")
    parser.add_argument("--gallery-mask", type=Path, metavar="G.npy", help="(n,) bool: items searched")
    parser.add_argument("--chunk-size", type=int, default=None, metavar="N", help="queries searched at once")
    parser.add_argument("--device", default=None, help="cpu (default) or cuda[:N]")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="faiss threads (default: all cores)")
    parser.set_defaults(func=run)


def load_npy(path: Path, what: str) -> np.ndarray:
    """Load a .npy array without pickles; any problem becomes a one-line :class:`UserError`.

    The message says what the file is when it is not a .npy array (an .npz archive and
    the arrays in it, a pickle, a text file) and how to make the expected one.
    """
    if not path.is_file():
        raise UserError(f"{what} file not found: {path}" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise UserError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    if not head.startswith(b"\x93NUMPY"):
        raise UserError(f"{what} file {path} {_describe_non_npy(path, head)}")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise UserError(f"cannot read {what} file {path}: it holds a pickled object array (dtype object), "
                            "which is not loaded (unsafe); save a numeric or string array, e.g. "
                            "np.save(path, np.asarray(values, dtype=int))") from None
        raise UserError(f"cannot read {what} file {path} as a .npy array: {exc}") from None
    except (OSError, EOFError) as exc:
        raise UserError(f"cannot read {what} file {path} as a .npy array (truncated?): {exc}") from None


def _describe_non_npy(path: Path, head: bytes) -> str:
    """What a file that is not a .npy array is, and how to make one (the end of a one-line error)."""
    save = "save the array with np.save(path, array)"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        import zipfile

        try:
            with zipfile.ZipFile(path) as zf:
                names = [n[:-4] if n.endswith(".npy") else n for n in zf.namelist()]
        except (zipfile.BadZipFile, OSError):
            return f"is a damaged zip/.npz archive, not a .npy array: {save}"
        if not names:
            return "is an empty .npz archive, not a .npy array"
        listed = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        return (f"is an .npz archive holding arrays {listed}: pass one of them as .npy "
                f"(np.save('{names[0]}.npy', np.load('{path}')['{names[0]}']))")
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return f"is a Python pickle, not a .npy array (pickles are not loaded): {save}"
    if not head:
        return f"is empty, not a .npy array: {save}"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:  # maybe a character cut at the end of the sample
        text = head[:-3].decode("utf-8", errors="replace").replace("\ufffd", "\x00")
    if text and all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"is a text file, not a .npy array: convert it with np.save('{path.stem}.npy', np.loadtxt('{path}'))"
    return f"is not a .npy array (no NUMPY header): {save}"


def check_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    """Class labels as a 1-D array of ids or names; a wrong shape or float values are one line."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise UserError(f"labels file {path} holds an array of shape {tuple(labels.shape)}: expected one class "
                        f"label per item, shape (n,)" + (" (is it the embeddings?)" if labels.ndim == 2 else ""))
    if labels.dtype.kind == "f":
        frac = labels[np.isfinite(labels) & (labels != np.round(labels))]
        if len(frac):
            raise UserError(f"labels file {path} holds floats with fractional values (e.g. {frac[0]:g}): "
                            "expected class ids (integers) or class names")
    if labels.dtype.kind not in "biufUS":
        raise UserError(f"labels file {path} has dtype {labels.dtype}: expected integer class ids or strings")
    return labels


def check_mask(mask: np.ndarray, path: Path, option: str, n: int) -> np.ndarray:
    """A boolean (or 0/1) mask of length ``n``; a list of indices or a wrong length is one line."""
    if mask.ndim != 1 or len(mask) != n:
        raise UserError(f"{option} {path}: shape {tuple(mask.shape)}, expected a 1-D mask of length {n} "
                        "(one True/False per item)")
    if mask.dtype != np.bool_:
        if mask.dtype.kind not in "iuf" or not np.isin(mask, (0, 1)).all():
            hint = (" (it looks like a list of indices: build a mask with m = np.zeros(n, bool); m[idx] = True)"
                    if mask.dtype.kind in "iu" else "")
            raise UserError(f"{option} {path}: dtype {mask.dtype} with values other than 0/1: "
                            f"expected a boolean mask{hint}")
        mask = mask.astype(bool)
    return mask


def format_table(metrics: dict[str, float]) -> str:
    """A two-column text table of the metrics (percentages with two decimals)."""
    width = max(len("metric"), *(len(key) for key in metrics))
    lines = [f"{'metric':<{width}}  {'value':>7}", f"{'-' * width}  {'-' * 7}"]
    for key, value in metrics.items():
        text = "n/a" if math.isnan(value) else f"{value:.2f}"
        lines.append(f"{key:<{width}}  {text:>7}")
    return "\n".join(lines)


def _load_masks(args: argparse.Namespace, n: int) -> tuple[Any, Any]:
    if (args.query_mask is None) != (args.gallery_mask is None):
        raise UserError("give both --query-mask and --gallery-mask, or neither")
    if args.query_mask is None:
        return None, None
    return (check_mask(load_npy(args.query_mask, "query mask"), args.query_mask, "--query-mask", n),
            check_mask(load_npy(args.gallery_mask, "gallery mask"), args.gallery_mask, "--gallery-mask", n))


def run(args: argparse.Namespace) -> int:
    """Load the arrays, compute the metrics, print the table (or JSON), optionally write JSON."""
    check_output_file(args.output)
    embeddings = load_npy(args.embeddings, "embeddings")
    labels = check_labels(load_npy(args.labels, "labels"), args.labels)
    is_query, is_gallery = _load_masks(args, len(embeddings) if embeddings.ndim else len(labels))
    from lossensemble.evaluation import EvaluationWarning, compute_metrics, metrics_to_json

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
    table = f"{len(embeddings)} items, {len(np.unique(labels))} classes, {args.distance} distance\n"
    emit_json(args, metrics_to_json(metrics), table + format_table(metrics))
    return 0
