"""``lossensemble compare``: the paper's experiment as one command, with a report to look at.

Trains, on the same data, backbone, budget, batch composition and seeds: each loss
alone, the ensemble with equal / learned (the paper) / uncertainty weights, the
scale-normalisation ablations, the learned ensemble compressed to one head's size,
and the independent ensemble of the single-loss models; then writes results tables,
plots and a self-contained report.html. Finished runs in OUT are reused and
interrupted ones resumed, so an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from lossensemble.cli.common import add_overrides_argument, load_run_config, prepare_process, progress_enabled
from lossensemble.errors import UserError
from lossensemble.experiments.methods import DEFAULT_LONG_FACTOR, methods_help

def register(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="compare the ensemble (several weightings, compressed) with every single loss over seeds; "
        "write tables, plots and report.html",
        description=__doc__.split("\n\n", 1)[1].replace("\n", " "),
    )
    p.add_argument("-c", "--config", required=True, help="config file or packaged name (e.g. glyphs-compare)")
    p.add_argument("-o", "--output", required=True,
                   help="output folder (runs in OUT/<method>/seed<k>/; single-long in OUT/single-long-<loss>/seed<k>/)")
    p.add_argument("--seeds", nargs="+", default=["0", "1", "2"], metavar="SEED",
                   help="seeds to train each method with (default: 0 1 2)")
    p.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help=f"method families or a preset to run (default: all but the opt-in ones): {methods_help()}")
    p.add_argument("--long-factor", type=int, default=DEFAULT_LONG_FACTOR, metavar="M",
                   help=f"single-long and learned-long train M times the steps of the other runs, with the same "
                        f"schedule shape (default: {DEFAULT_LONG_FACTOR})")
    p.add_argument("--student-factor", type=float, default=1.0, metavar="F",
                   help="distilled-independent and distilled-shared train their student network F times the steps "
                        "of a single-loss run (default: 1)")
    p.add_argument("--student-labels", type=float, default=0.0, metavar="W",
                   help="the distilled students also train on the labels with the seed's best single loss "
                        "(validation MAP@R), weighted W against the distance matching (default: 0, distances only)")
    p.add_argument("--no-plots", action="store_true", help="tables only (no plots in the report)")
    p.add_argument("--map", choices=("tsne", "pca"), default="tsne",
                   help="2-D projection of the embedding maps (default: tsne; pca is instantaneous)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_overrides_argument(p)
    p.set_defaults(func=run)


def split_overrides(values: list[str]) -> tuple[list[str], list[str]]:
    """Split a list option's values into its own values and ``key=value`` overrides that followed it.

    ``--seeds 0 1 train.epochs=3`` makes argparse put the override into the seeds; it belongs
    to the overrides.
    """
    own = [v for v in values if "=" not in v]
    return own, [v for v in values if "=" in v]


def parse_seeds(values: list[str]) -> list[int]:
    """Seeds as distinct non-negative integers, in the given order."""
    seeds: list[int] = []
    for v in values:
        try:
            s = int(v)
        except ValueError:
            raise UserError(f"--seeds: expected integers, got {v!r}") from None
        if s < 0:
            raise UserError(f"--seeds: must be >= 0, got {s}")
        if s not in seeds:
            seeds.append(s)
    return seeds


def reproduce_command(config: str, out: Path, seeds: list[int], methods: list[str], overrides: list[str],
                      long_factor: int | None = None, student_factor: float | None = None,
                      student_labels: float | None = None) -> str:
    """The command line that reproduces this comparison (for the report)."""
    parts = ["lossensemble", "compare", "-c", config, "-o", str(out), "--seeds", *map(str, seeds)]
    if methods:
        parts += ["--methods", *methods]
    if long_factor is not None:
        parts += ["--long-factor", str(long_factor)]
    if student_factor is not None:
        parts += ["--student-factor", f"{student_factor:g}"]
    if student_labels is not None:
        parts += ["--student-labels", f"{student_labels:g}"]
    parts += overrides
    return " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace) -> int:
    from lossensemble.experiments.catalogue import comparison_methods
    from lossensemble.experiments.comparison import run_comparison
    from lossensemble.experiments.methods import DEFAULT_METHODS
    from lossensemble.reporting.comparison import report_comparison
    from lossensemble.experiments.methods import expand_methods
    from lossensemble.reporting.results import terminal_table
    from lossensemble.training import TrainingInterrupted
    from lossensemble.training.run import check_writable

    seed_values, extra = split_overrides(list(args.seeds))
    method_values, extra2 = split_overrides(list(args.methods or []))
    seeds = parse_seeds(seed_values)
    if not seeds:
        raise UserError("--seeds: give at least one seed")
    cfg = load_run_config(args.config, list(args.overrides) + extra + extra2)
    if args.long_factor < 1:
        raise UserError(f"--long-factor: must be >= 1, got {args.long_factor}")
    if not 0 < args.student_factor < float("inf"):
        raise UserError(f"--student-factor: must be a number > 0, got {args.student_factor:g}")
    if not 0 <= args.student_labels < float("inf"):
        raise UserError(f"--student-labels: must be a number >= 0, got {args.student_labels:g}")
    families = expand_methods(method_values or list(DEFAULT_METHODS))
    methods = comparison_methods(cfg, families, long_factor=args.long_factor, student_factor=args.student_factor,
                                 student_labels=args.student_labels)
    long_used = any(m.factor != 1 or m.kind == "single-long" for m in methods)
    distilled = any(m.kind == "distilled" for m in methods)
    if args.student_labels and not distilled:
        raise UserError("--student-labels: applies to the distilled students; add distilled-independent or "
                        "distilled-shared to --methods")
    student_used = args.student_factor != 1 and distilled
    out = Path(args.output)
    check_writable(out)
    prepare_process(cfg)
    start = time.perf_counter()
    print(f"compare: {len(methods)} methods x {len(seeds)} seed(s) -> {out}/<method>/seed<k>/", flush=True)
    try:
        comp = run_comparison(cfg, out, seeds, methods, progress=progress_enabled(args))
    except TrainingInterrupted:
        print(f"lossensemble: compare interrupted; a checkpoint was saved. Run the same command again to resume "
              f"(finished runs in {out} are reused).", file=sys.stderr)
        return 130
    print("writing tables, plots and report...", flush=True)
    command = reproduce_command(args.config, out, seeds, method_values, list(args.overrides) + extra + extra2,
                                args.long_factor if long_used else None,
                                args.student_factor if student_used else None,
                                args.student_labels or None)
    report = report_comparison(comp, command=command, plots=not args.no_plots,
                               elapsed_seconds=time.perf_counter() - start, projection=args.map)
    print()
    print(terminal_table(report.rows, width=100))
    print(f"(the full table, every metric with its spread: {out / 'results.md'})")
    print()
    for note in report.notes:
        print(note)
    elapsed = (time.perf_counter() - start) / 60
    print(f"\nresults: {out / 'results.md'}, {out / 'results.csv'}, {out / 'results.json'}; "
          f"report: {out / 'report.html'} ({elapsed:.1f} min)")
    return 0
