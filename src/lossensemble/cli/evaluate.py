"""``lossensemble evaluate``: evaluate a finished (or interrupted) run on its test classes."""

from __future__ import annotations

import argparse
from pathlib import Path

from lossensemble.errors import UserError


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a trained run on unseen classes",
        description="Load a run's checkpoint and compute Recall@K, NMI, kNN accuracy, MAP@R and R-precision "
        "for every head, the ensemble and the compressed embedding on the test split "
        "(or another dataset given with --data).",
    )
    p.add_argument("run", metavar="RUN", help="run folder written by 'lossensemble train'")
    p.add_argument("--checkpoint", choices=["last", "best", "compressed"], default="last",
                   help="which checkpoint: last (default), best, or compressed (after 'lossensemble compress')")
    p.add_argument("--data", metavar="NAME", help="dataset name to evaluate on instead of the run's")
    p.add_argument("--root", help="dataset root folder")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lossensemble.data import build_dataset
    from lossensemble.evaluation import evaluate_model
    from lossensemble.io import write_json
    from lossensemble.reporting import format_table
    from lossensemble.training import load_run

    if args.json:
        check_output_file(Path(args.json), "--json")  # before the (long) evaluation
    loaded = load_run(args.run, checkpoint=args.checkpoint)
    cfg = loaded.cfg
    d = cfg.data
    name = args.data or d.name
    options = d.options if name == d.name else {}
    root = args.root if args.root is not None else (d.root if name == d.name else None)
    dataset = build_dataset(name, args.split, root=root, image_size=d.image_size, val_fraction=d.val_fraction,
                            **options)
    metrics = evaluate_model(loaded.embed_fn(), dataset, device=loaded.device, progress=True, **cfg.eval_options())
    print(format_table(metrics))
    if args.json:
        write_json(args.json, metrics)
    return 0


def check_output_file(path: Path, option: str) -> None:
    """A file path the metrics can be written to: not a folder, not under a file."""
    if path.is_dir():
        raise UserError(f"{option} {path}: is a folder; give a file name (e.g. {path / 'metrics.json'})")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{option} {path}: {parent} is a file, not a folder")
            break
