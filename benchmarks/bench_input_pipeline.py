"""Input pipeline: images/s from a folder of JPEGs, and whether training waits on data (issue 9, point 4).

1. Throughput: ``--images`` fabricated 256x256 JPEGs in ``--classes`` class folders
   (cached under ``$TMPDIR/lossensemble-bench-jpegs``), read through ``build_dataset("folder")``
   with the training transforms (``build_transforms("photo", size, train=True)``: decode,
   RandomResizedCrop, flip, to tensor, normalise) and ``collate_batch``, batch 64, by a
   DataLoader with 0 and with 2 worker processes. Variants alternate, repeated; medians.
   The first batch (worker start-up) is timed separately.
2. Data wait: real :class:`Trainer`\\ s on that folder (``data.name=folder``), one per
   (backbone, workers) variant, each iterating its own training DataLoader, one variant after
   the other; for each the time blocked in ``next(loader)`` (data wait) and in ``train_step``
   is summed over ``--steps`` steps (after 2 warm-up steps).

    python benchmarks/bench_input_pipeline.py            # print
    python benchmarks/bench_input_pipeline.py --write    # also rewrite the BENCHMARKS.md section
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchutil  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

SECTION = "input_pipeline"


def fabricate(root: Path, images: int, classes: int, size: int = 256, seed: int = 0) -> Path:
    """``images`` JPEGs (quality 90) of ``size``x``size`` in ``classes`` folders; reused when complete."""
    from PIL import Image

    stamp = root / f".done-{images}-{classes}-{size}"
    if stamp.is_file():
        return root
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(images):
        c = i % classes
        folder = root / f"class{c:03d}"
        folder.mkdir(exist_ok=True)
        # Smooth colour blobs plus fine noise: compresses and decodes like a photo, not like flat colour.
        low = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(low).resize((size, size), Image.BICUBIC), dtype=np.int16)
        img = np.clip(img + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:05d}.jpg", quality=90)
    stamp.touch()
    return root


def throughput(root: Path, image_size: int, workers_list: list[int], batches: int, repeats: int,
               batch_size: int = 64) -> dict[int, dict[str, float]]:
    from lossensemble.data import build_dataset, build_transforms, collate_batch

    ds = build_dataset("folder", "all", root=str(root), transform=build_transforms("photo", image_size, train=True))
    times: dict[int, list[float]] = {w: [] for w in workers_list}
    first: dict[int, list[float]] = {w: [] for w in workers_list}
    g = torch.Generator().manual_seed(0)
    for r in range(repeats):
        for w in (workers_list if r % 2 == 0 else workers_list[::-1]):
            loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=w,
                                                 collate_fn=collate_batch, generator=g)
            t0 = time.perf_counter()
            it = iter(loader)
            next(it)
            t1 = time.perf_counter()
            n = 0
            for _ in range(batches):
                images, _, _ = next(it)
                n += images.shape[0]
            t2 = time.perf_counter()
            del it
            times[w].append(n / (t2 - t1))
            first[w].append(t1 - t0)
    return {w: {"images_per_s": statistics.median(times[w]), "first_batch_s": statistics.median(first[w]),
                "dataset": len(ds)} for w in workers_list}


def data_wait(root: Path, variants: list[tuple[str, int]], image_size: int, steps: int, threads: int,
              batch: int = 64) -> dict[tuple[str, int], dict[str, float]]:
    from lossensemble.config import load_config
    from lossensemble.training import Trainer

    torch.set_num_threads(threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-wait-"))
    trainers, loaders = {}, {}
    for backbone, workers in variants:
        cfg = load_config(None, [
            "seed=0", "data.name=folder", f"data.root={root}", f"data.image_size={image_size}",
            "data.options.train_ratio=0.9", "data.val_fraction=0", f"data.batch_size={batch}", "data.m_per_class=4",
            f"data.num_workers={workers}", f"model.backbone={backbone}", "train.device=cpu",
            f"train.threads={threads}", "train.progress=false", f"train.steps_per_epoch={steps + 2}",
            "losses=[classification,triplet,binomial,proxy_nca]",
        ])
        tr = Trainer(cfg, tmp / f"{backbone}-w{workers}", progress=False)
        tr._bad_steps = 0
        tr.train_module.train()
        trainers[(backbone, workers)] = tr
        loaders[(backbone, workers)] = iter(tr._epoch_loader(0, 0))
    stats = {k: {"wait": 0.0, "step": 0.0, "max_wait": 0.0} for k in trainers}
    # One variant at a time: in lockstep, one variant's workers would prefetch during the others' steps.
    # The waiting fraction is a ratio within one variant's own loop.
    for k, tr in trainers.items():
        for s in range(steps + 2):
            t0 = time.perf_counter()
            images, labels, _ = next(loaders[k])
            t1 = time.perf_counter()
            tr.train_step(images, labels)
            t2 = time.perf_counter()
            if s >= 2:  # the first two: worker start-up and warm-up
                stats[k]["wait"] += t1 - t0
                stats[k]["step"] += t2 - t1
                stats[k]["max_wait"] = max(stats[k]["max_wait"], t1 - t0)
        loaders[k] = None  # stop this variant's workers before the next one runs
    for k in stats:
        st = stats[k]
        st["wait_fraction"] = st["wait"] / (st["wait"] + st["step"])
        st["steps"] = steps
    del loaders
    return stats


def to_markdown(tp, waits, args, elapsed: float, load: str) -> str:
    w_list = sorted(tp)
    n = next(iter(tp.values()))["dataset"]
    base = tp[w_list[0]]["images_per_s"]
    lines = [
        f"{n:,} fabricated 256x256 JPEGs (quality 90) in {args.classes} class folders, `build_dataset(\"folder\")` "
        f"with `build_transforms(\"photo\", {args.image_size}, train=True)` (decode, RandomResizedCrop, flip, "
        f"normalise) and `collate_batch`, batch 64; {args.batches} batches per pass after the first, "
        f"{args.repeats} alternating passes, median.",
        "",
        "| DataLoader workers | images/s | vs 0 workers | first batch (start-up) |",
        "|---:|---:|---:|---:|",
    ]
    for w in w_list:
        lines.append(f"| {w} | {tp[w]['images_per_s']:.0f} | {tp[w]['images_per_s'] / base:.2f}x | "
                     f"{tp[w]['first_batch_s']:.2f} s |")
    lines += [
        "",
        f"Does training wait on data? Real `Trainer`s on that folder (45 train classes, ensemble of 4 losses, "
        f"{args.image_size} px, batch 64, {args.threads} torch thread(s)), each reading its own training DataLoader, "
        f"one variant after the other; {args.steps} steps after 2 warm-up steps. The waiting share is a ratio "
        "within each variant's own loop.",
        "",
        "| backbone | workers | step time (s, mean) | data wait (s, mean) | longest wait | time waiting |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for (backbone, workers), st in waits.items():
        lines.append(f"| {backbone} | {workers} | {st['step'] / st['steps']:.3f} | {st['wait'] / st['steps']:.3f} | "
                     f"{st['max_wait']:.3f} s | **{100 * st['wait_fraction']:.1f}%** |")
    lines += ["", f"- Load average during the run (1/5/15 min): {load}. Total {elapsed:.0f} s."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(Path(tempfile.gettempdir()) / "lossensemble-bench-jpegs"))
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--classes", type=int, default=50)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--batches", type=int, default=8, help="timed batches per throughput pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=15, help="timed training steps per data-wait variant")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the data-wait loop")
    ap.add_argument("--wait-variants", default="resnet18:0,resnet18:2,small_cnn:0,small_cnn:2",
                    help="BACKBONE:WORKERS list for the data-wait measurement ('' to skip)")
    ap.add_argument("--write", action="store_true", help="rewrite the Input pipeline section of BENCHMARKS.md")
    args = ap.parse_args(argv)
    os.environ.setdefault("LOSSENSEMBLE_CACHE", str(Path(tempfile.gettempdir()) / "le-cache"))
    start = time.perf_counter()
    root = fabricate(Path(args.root), args.images, args.classes)
    torch.set_num_threads(1)
    tp = throughput(root, args.image_size, [int(w) for w in args.workers.split(",")], args.batches, args.repeats)
    for w, v in tp.items():
        print(f"workers {w}: {v['images_per_s']:.0f} images/s (first batch {v['first_batch_s']:.2f} s)", flush=True)
    variants = [(v.split(":")[0], int(v.split(":")[1])) for v in args.wait_variants.split(",") if v]
    waits = data_wait(root, variants, args.image_size, args.steps, args.threads) if variants else {}
    for k, st in waits.items():
        print(f"{k}: step {st['step'] / st['steps']:.3f} s, wait {st['wait'] / st['steps']:.3f} s "
              f"({100 * st['wait_fraction']:.1f}% waiting)", flush=True)
    elapsed = time.perf_counter() - start
    body = to_markdown(tp, waits, args, elapsed, benchutil.load_average())
    return benchutil.publish(SECTION, body, "bench_input_pipeline.py", argv, args.write)


if __name__ == "__main__":
    raise SystemExit(main())
