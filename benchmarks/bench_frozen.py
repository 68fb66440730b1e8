"""Frozen-backbone fast mode: a training epoch on cached features vs with the backbone (issue 16, point 4).

Three real :class:`~lossensemble.training.Trainer` s on the embedded glyphs at
``--image-size`` px with ``--backbone`` (random init: the timing does not depend on the
weights), four losses, batch 64, ``data.augment=none``, one torch thread:

* ``full``: the usual run, backbone trained;
* ``frozen``: ``model.freeze_backbone=true model.feature_cache=false`` (the backbone runs
  forward only, every step);
* ``cached``: ``model.freeze_backbone=true`` (features computed once; the one-off cost
  of computing them is reported apart).

Epochs (``--steps`` steps each) are interleaved over ``--rounds`` rounds, rotating the
order; medians of CPU time (this process) and wall time per epoch. Goal: cached >= 20x
faster than full at 64 px with resnet18.

    python benchmarks/bench_frozen.py            # print the table
    python benchmarks/bench_frozen.py --write    # also rewrite the "Frozen backbone" section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchutil  # noqa: E402


def make_trainer(folder: Path, args, *extra: str):
    from lossensemble.config import load_config
    from lossensemble.training import Trainer

    overrides = [
        "data.name=glyphs", f"data.image_size={args.image_size}", "data.options.progress=false",
        "data.batch_size=64", "data.m_per_class=4", "data.augment=none", f"model.backbone={args.backbone}",
        "losses=[classification,triplet,binomial,proxy_nca]", f"train.steps_per_epoch={args.steps}",
        "train.epochs=1000", "train.eval_every=1000", "train.checkpoint_every=1000", "train.device=cpu",
        "train.threads=1", "train.progress=false", *extra,
    ]
    return Trainer(load_config(None, overrides), folder, progress=False)


def run(args) -> str:
    import torch

    torch.set_num_threads(1)
    # a fresh cache: the glyphs are rendered by the first trainer, the features computed by the cached one
    os.environ["LOSSENSEMBLE_CACHE"] = tempfile.mkdtemp(prefix="le-bench-frozen-")
    variants = {"full": (), "frozen": ("model.freeze_backbone=true", "model.feature_cache=false")}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in [*variants, "cached"]}
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {name: make_trainer(Path(tmp) / name, args, *extra) for name, extra in variants.items()}
        t0, c0 = time.perf_counter(), time.process_time()
        trainers["cached"] = make_trainer(Path(tmp) / "cached", args, "model.freeze_backbone=true", "seed=1")
        setup_wall, setup_cpu = time.perf_counter() - t0, time.process_time() - c0
        n_images = len(trainers["cached"].train_set)
        load_before = benchutil.load_average()
        names = list(times)
        for r in range(args.rounds + 1):  # round 0 warms up
            for name in names[r % len(names):] + names[: r % len(names)]:
                t, c = time.perf_counter(), time.process_time()
                trainers[name]._run_epoch()
                if r:
                    times[name].append((time.process_time() - c, time.perf_counter() - t))
    med = {name: np.median(np.asarray(v), axis=0) for name, v in times.items()}
    lines = [
        f"Glyphs at {args.image_size} px, {args.backbone} (random init), 4 losses, batch 64, `data.augment=none`, "
        f"1 torch thread; epochs of {args.steps} steps interleaved over {args.rounds} rounds; medians per epoch.",
        "",
        "| variant | CPU s / epoch | wall s / epoch | speed-up vs full (CPU) |",
        "|---|---:|---:|---:|",
    ]
    for name in names:
        cpu, wall = med[name]
        lines.append(f"| {name} | {cpu:.2f} | {wall:.2f} | {med['full'][0] / cpu:.1f}x |")
    lines += [
        "",
        f"- `cached`: computing the {n_images:,} training images' features once (trainer set-up, written to the "
        f"cache) took {setup_cpu:.1f} s CPU ({setup_wall:.1f} s wall), the cost of "
        f"{setup_cpu / med['full'][0]:.1f} timed epochs of `full` ({args.steps} steps each; one pass over the "
        f"{n_images:,} images is {n_images // 64} steps); every later epoch, seed or run with the same backbone "
        "and data reads them back. Goal: cached >= 20x faster per epoch than full.",
        f"- Load average (1/5/15 min): {load_before} at the start, {benchutil.load_average()} at the end.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10, help="steps per timed epoch (default 10)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--write", action="store_true", help="rewrite the section of BENCHMARKS.md")
    args = ap.parse_args(argv)
    return benchutil.publish("frozen", run(args), "bench_frozen.py", argv, args.write)


if __name__ == "__main__":
    sys.exit(main())
