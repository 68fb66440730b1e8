"""``train.compile`` and ``train.channels_last`` vs the default training step, on CPU (issue 16, point 5).

For each backbone, three real :class:`~lossensemble.training.Trainer` s (the 4-loss ensemble,
64 px, batch 64, one torch thread): ``eager`` (default), ``channels_last`` and ``compile``
(``torch.compile`` of the backbone, inductor). The same random class-balanced batches go
through ``Trainer.train_step`` interleaved (one step of each variant per round, rotating
order; helpers of ``bench_train_step.py``); medians of process CPU time and wall time per
step. The compile variant's first step (the compilation) is reported apart. The rule
(issue 16): a switch becomes the default only where it is >= 1.2x faster with equal
accuracy over seeds.

``--accuracy-seeds N`` also trains the demo's config (``glyphs-demo``: small_cnn, 32 px,
the default ensemble) with N seeds per variant (eager and the variants given by
``--accuracy-variants``) and reports the test metrics' mean and standard deviation
and the training time, which is what "equal accuracy over seeds" asks. The compile
variant runs with an empty inductor cache (a temporary ``TORCHINDUCTOR_CACHE_DIR``), so
its compilation time is a first run's.

    python benchmarks/bench_compile.py            # print the table
    python benchmarks/bench_compile.py --write    # also rewrite the "Compiled step" section of BENCHMARKS.md
    python benchmarks/bench_compile.py --backbones small_cnn --accuracy-seeds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchutil  # noqa: E402
from bench_train_step import LOSSES, build_trainer, make_batches, time_steps  # noqa: E402

VARIANTS = {"eager": ("train.channels_last=false",), "channels_last": ("train.channels_last=true",),
            "compile": ("train.compile=true", "train.channels_last=false")}


def accuracy(args) -> list[str]:
    """Test metrics of the demo config over seeds, eager vs each accuracy variant (mean +- std), and train time."""
    from lossensemble.cli.common import load_run_config
    from lossensemble.training import Trainer

    out = ["", f"Accuracy over seeds: `glyphs-demo` config (small_cnn, 32 px, the default ensemble, "
           f"{args.accuracy_seeds} seeds per variant, 2 torch threads), test classes, ensemble embedding:", "",
           "| variant | R@1 | MAP@R | CPU s per run (fit, evaluations included) |", "|---|---:|---:|---:|"]
    results: dict[str, list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.accuracy_seeds):
            for name in ["eager", *args.accuracy_variants]:
                cfg = load_run_config("glyphs-demo", [f"seed={seed}", "train.progress=false", "train.threads=2",
                                                      *VARIANTS[name]])
                c0 = time.process_time()
                test = Trainer(cfg, Path(tmp) / f"{name}-{seed}", progress=False).fit()
                results.setdefault(name, []).append((test["ensemble"]["recall@1"], test["ensemble"]["map@r"],
                                                     time.process_time() - c0))
    for name, rows in results.items():
        r1, mapr, cpu = zip(*rows)
        out.append(f"| {name} | {statistics.mean(r1):.2f} +- {statistics.stdev(r1):.2f} | "
                   f"{statistics.mean(mapr):.2f} +- {statistics.stdev(mapr):.2f} | {statistics.mean(cpu):.0f} |")
    out.append(f"- Per seed (R@1, MAP@R): {json.dumps({k: [(round(a, 2), round(b, 2)) for a, b, _ in v] for k, v in results.items()})}")
    return out


def run(args) -> str:
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="inductor-"))  # a first compilation
    import torch

    torch.set_num_threads(1)
    rows = []
    load_before = benchutil.load_average()
    for backbone in args.backbones:
        with tempfile.TemporaryDirectory() as tmp:
            trainers = {name: build_trainer(LOSSES, backbone, args.image_size, 64, "cpu", False, 1,
                                            Path(tmp) / name, extra=extra) for name, extra in VARIANTS.items()}
            num_classes = trainers["eager"].train_set.num_classes
            batches = make_batches(4, 64, args.image_size, num_classes, "cpu")
            t0 = time.perf_counter()
            trainers["compile"].train_step(*batches[0])  # the compilation
            first = time.perf_counter() - t0
            wall, cpu = time_steps(trainers, batches, 2, args.rounds, "cpu")
            for name in VARIANTS:
                c, w = statistics.median(cpu[name]), statistics.median(wall[name])
                rows.append((backbone, name, c, w, statistics.median(cpu["eager"]) / c, first if name == "compile"
                             else None))
    lines = [
        f"4-loss ensemble, {args.image_size} px, batch 64, 1 torch thread, CPU; `Trainer.train_step` of the three "
        f"variants interleaved over {args.rounds} rounds (after 2 warm-up rounds); medians per step.",
        "",
        "| backbone | variant | CPU s / step | wall s / step | speed-up vs eager (CPU) | compilation (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for backbone, name, c, w, ratio, first in rows:
        lines.append(f"| {backbone} | {name} | {c:.3f} | {w:.3f} | {ratio:.2f}x | "
                     f"{'' if first is None else f'{first:.0f}'} |")
    if args.accuracy_seeds:
        lines += accuracy(args)
    lines += ["", f"- Load average (1/5/15 min): {load_before} at the start, {benchutil.load_average()} at the end."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbones", nargs="+", default=["small_cnn", "resnet18"])
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--accuracy-seeds", type=int, default=0, help="also train the demo config with N seeds (>= 2)")
    ap.add_argument("--accuracy-variants", nargs="+", default=["channels_last"], choices=["channels_last", "compile"])
    ap.add_argument("--write", action="store_true", help="rewrite the section of BENCHMARKS.md")
    args = ap.parse_args(argv)
    return benchutil.publish("compile", run(args), "bench_compile.py", argv, args.write)


if __name__ == "__main__":
    sys.exit(main())
