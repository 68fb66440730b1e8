"""``lossensemble evaluate``: evaluate a finished (or interrupted) run on its test classes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lossensemble.cli.common import (add_json_arguments, add_progress_argument, check_output_file, emit_json,
                                     show_progress)

__all__ = ["register", "run", "check_output_file", "pick_checkpoint"]


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a trained run on unseen classes",
        description="Load a run's checkpoint and compute Recall@K, NMI, kNN accuracy, MAP@R and R-precision "
        "for every head, the ensemble and, when the run has one (trained with compression, or after "
        "'lossensemble compress' of that checkpoint), the compressed embedding, on the test split "
        "(or another dataset given with --data).",
    )
    p.add_argument("run", metavar="RUN", help="run folder written by 'lossensemble train'")
    p.add_argument("--checkpoint", choices=["last", "best", "compressed"], default="last",
                   help="which checkpoint: last (default), best, or compressed (after 'lossensemble compress')")
    p.add_argument("--data", metavar="NAME", help="dataset name to evaluate on instead of the run's")
    p.add_argument("--root", help="dataset root folder")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    add_json_arguments(p, "the metrics (by embedding, with a 'warnings' list each)")
    add_progress_argument(p)
    p.set_defaults(func=run)


def pick_checkpoint(run_dir: str | Path, checkpoint: str) -> tuple[str, str | None]:
    """The checkpoint to load for ``checkpoint`` (last/best/compressed), and a note when it was switched.

    ``lossensemble compress`` writes the compressor next to the run's own checkpoints
    (``checkpoints/compressed.safetensors``, a copy of the source checkpoint plus the
    compressor). When that copy was made from the requested checkpoint and the checkpoint
    has not changed since (same epoch and step), it is loaded instead, so the compressed
    embedding is evaluated too.
    """
    from lossensemble.training.checkpoint import read_checkpoint_header
    from lossensemble.training.loading import compressed_checkpoint_path
    from lossensemble.training.run import RunPaths

    if checkpoint not in ("last", "best"):
        return checkpoint, None
    paths = RunPaths(Path(run_dir))
    source = paths.last if checkpoint == "last" else paths.best
    compressed = compressed_checkpoint_path(paths.root)
    if not (source.is_file() and compressed.is_file()):
        return checkpoint, None
    _, src = read_checkpoint_header(source)
    if src.get("compressor"):
        return checkpoint, None  # trained with a compressor: the checkpoint has it already
    _, comp = read_checkpoint_header(compressed)
    same = all(comp.get(key) == src.get(key) for key in ("epoch", "step_in_epoch", "global_step"))
    if comp.get("compressed_from") == checkpoint and same:
        return "compressed", f"evaluating {compressed} (the {checkpoint} checkpoint with its compressor)"
    return checkpoint, (f"{compressed} was made from another checkpoint than the current {checkpoint} one: "
                        "the compressed embedding is left out (use --checkpoint compressed for it)")


def run(args: argparse.Namespace) -> int:
    import warnings

    from lossensemble.data import build_dataset, build_transforms
    from lossensemble.evaluation import EvaluationWarning, evaluate_model, metric_warnings, metrics_to_json
    from lossensemble.reporting import format_table
    from lossensemble.training import load_run

    check_output_file(args.output)  # before the (long) evaluation
    checkpoint, note = pick_checkpoint(args.run, args.checkpoint)
    loaded = load_run(args.run, checkpoint=checkpoint)
    if note:
        print(f"lossensemble: {note}", file=sys.stderr)
    cfg = loaded.cfg
    d = cfg.data
    name = args.data or d.name
    options = d.options if name == d.name else {}
    root = args.root if args.root is not None else (d.root if name == d.name else None)
    dataset = build_dataset(name, args.split, root=root, image_size=d.image_size, val_fraction=d.val_fraction,
                            normalisation=loaded.normalisation, transform=None, **options)
    # every split is scored with the evaluation transform (a training split would otherwise be augmented)
    dataset.transform = build_transforms(dataset.kind, d.image_size, train=False, normalisation=loaded.normalisation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EvaluationWarning)  # printed once each below, not once per embedding
        metrics = evaluate_model(loaded.embed_fn(), dataset, device=loaded.device,
                                 progress=show_progress(args), **cfg.eval_options())
    shown: list[str] = []
    for emb, values in metrics.items():
        shown.extend(w for w in metric_warnings(values) if w not in shown)
    for message in shown:
        print(f"lossensemble: warning: {message}", file=sys.stderr)
    emit_json(args, {emb: metrics_to_json(values) for emb, values in metrics.items()}, format_table(metrics))
    return 0
