"""``lossensemble train``: train one model (ensemble or single loss) into a run folder."""

from __future__ import annotations

import argparse
import sys

from lossensemble.cli.common import add_overrides_argument, resolve_config
from lossensemble.errors import UserError


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train an ensemble (or single-loss) model",
        description="Train a model described by a YAML config (plus KEY=VALUE overrides) into a run folder "
        "holding the resolved config, checkpoints, history.csv, metrics.json and a log. "
        "Example: lossensemble train -c configs/glyphs-demo.yaml -o runs/demo train.epochs=3",
    )
    p.add_argument("-c", "--config", help="YAML config file or packaged config name (default: built-in defaults)")
    p.add_argument("-o", "--output", help="run folder to create")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_overrides_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lossensemble.config import load_config
    from lossensemble.losses import validate_losses
    from lossensemble.reporting import format_table
    from lossensemble.training import Trainer, TrainingInterrupted, distributed

    if args.resume:
        if args.config or args.output or args.overrides:
            raise UserError("--resume takes the run folder only; its saved config is used")
        trainer = Trainer(None, args.resume, resume=True, progress=False if args.no_progress else None)
    else:
        if not args.output:
            raise UserError("-o/--output RUN is required (the run folder to create)")
        cfg = load_config(resolve_config(args.config), args.overrides)
        validate_losses(cfg.losses, cfg.model.embedding_dim)  # fail fast, before data is rendered
        trainer = Trainer(cfg, args.output, progress=False if args.no_progress else None)
    try:
        metrics = trainer.fit()
    except TrainingInterrupted as exc:
        print(f"lossensemble: {exc}", file=sys.stderr)
        return 130
    finally:
        distributed.teardown()  # leave the process group of a torchrun launch (no-op otherwise)
    if trainer.dist.is_main:
        print(format_table(metrics))
        print(f"\nrun folder: {trainer.paths.root}")
    return 0
