"""``lossensemble train``: train one model (ensemble or single loss) into a run folder."""

from __future__ import annotations

import argparse
import sys

from pathlib import Path

from lossensemble.cli.common import add_overrides_argument, load_run_config, prepare_process, progress_enabled
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
    from lossensemble import distributed
    from lossensemble.config import load_config
    from lossensemble.reporting import format_table
    from lossensemble.training import NothingToResume, RunExists, Trainer, TrainingInterrupted
    from lossensemble.training.run import RunPaths

    progress = progress_enabled(args)
    try:
        if args.resume:
            if args.config or args.output or args.overrides:
                raise UserError("--resume takes the run folder only; its saved config is used")
            paths = RunPaths(Path(args.resume))
            if not paths.config.is_file():
                raise UserError(f"--resume {args.resume}: not a run folder (no config.yaml)")
            cfg = load_config(paths.config)
            if paths.last.is_file():  # a foreign or hand-edited checkpoint: one line, nothing written
                from lossensemble.training.resume import check_resumable

                check_resumable(paths.last, cfg.train.epochs)
            ctx = prepare_process(cfg)
            trainer = _resume_trainer(args, Trainer, progress, ctx, paths.last)
        else:
            if not args.output:
                raise UserError("-o/--output RUN is required (the run folder to create)")
            cfg = load_run_config(args.config, args.overrides)  # names checked before data is rendered
            ctx = prepare_process(cfg)
            trainer = Trainer(cfg, args.output, progress=progress, dist=ctx)
    except RunExists as exc:
        raise UserError(f"{exc} (continue it with: lossensemble train --resume {args.output})") from None
    except NothingToResume as exc:
        raise UserError(f"--resume: {exc}") from None
    try:
        metrics = trainer.fit()
    except TrainingInterrupted as exc:
        print(f"lossensemble: {exc}. Resume with: lossensemble train --resume {exc.run_dir}", file=sys.stderr)
        return 130
    finally:
        distributed.teardown()  # leave the process group of a torchrun launch (no-op otherwise)
    if trainer.dist.is_main:
        print(format_table(metrics))
        _print_evaluation_warnings(metrics)
        print(f"\nrun folder: {trainer.paths.root}")
    return 0


def _resume_trainer(args, trainer_cls, progress, ctx, last):
    """``Trainer(resume=True)``; a checkpoint whose state the optimiser or scheduler refuses is one line.

    Loading happens before the run folder is touched, so nothing has been written when it fails.
    """
    try:
        return trainer_cls(None, args.resume, resume=True, progress=progress, dist=ctx)
    except UserError:  # already one line that says what is wrong
        raise
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        if getattr(args, "debug", False):
            raise
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--resume {args.resume}: {last} does not fit this run ({type(exc).__name__}: "
                        f"{detail[:200]}); nothing was written") from None


def _print_evaluation_warnings(metrics) -> None:
    """The degenerate-evaluation warnings of the final test metrics, once each, on stderr."""
    from lossensemble.evaluation import metric_warnings

    seen: list[str] = []
    for values in metrics.values():
        seen.extend(w for w in metric_warnings(values) if w not in seen)
    for message in seen:
        print(f"lossensemble: warning: test metrics: {message}", file=sys.stderr)
