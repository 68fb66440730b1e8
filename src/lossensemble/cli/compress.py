"""``lossensemble compress``: post-hoc distance-based compression of a finished run."""

from __future__ import annotations

import argparse

from lossensemble.cli.common import add_progress_argument, show_progress


def register(sub) -> None:
    p = sub.add_parser(
        "compress",
        help="train a compact embedding that mimics the ensemble's distances",
        description="Train a compressor for a finished run (see docs/method.md, Compression): the paper's MLP on the weighted "
        "ensemble embedding ('mlp') or one linear head on the backbone features ('direct'), so that its batch "
        "distances match the ensemble's. The run's training split is embedded once with the evaluation "
        "transforms; the ensemble is never changed. Writes checkpoints/compressed.safetensors, adds "
        "'compressed' to metrics.json, and prints the test metrics of every embedding.",
    )
    p.add_argument("run", metavar="RUN", help="run folder written by 'lossensemble train'")
    p.add_argument("--variant", help="compressor: mlp (the paper) or direct (default: the run's compression.variant)")
    p.add_argument("--dim", type=int, help="size of the compressed embedding (default: one head's size)")
    p.add_argument("--objective", metavar="NAME",
                   help="distance-matching loss: frobenius (the paper) or softmax (default: the run's compression.objective)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the run's compression.epochs)")
    p.add_argument("--lr", type=float, help="learning rate (default: the run's train.lr.compressor)")
    p.add_argument("--checkpoint", choices=["last", "best"], default="last",
                   help="which checkpoint's ensemble to compress (default last)")
    p.add_argument("--device", help="cpu, cuda, ... (default: the run's train.device)")
    add_progress_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lossensemble.compression import compress_run, compressed_checkpoint_path
    from lossensemble.reporting import format_table

    metrics = compress_run(args.run, variant=args.variant, dim=args.dim, objective=args.objective,
                           epochs=args.epochs, lr=args.lr, checkpoint=args.checkpoint, device=args.device,
                           progress=show_progress(args))
    order = ["compressed", "ensemble"] + sorted(k for k in metrics if k.startswith("heads."))
    print(format_table({k: metrics[k] for k in order if k in metrics}))
    print(f"\nsaved {compressed_checkpoint_path(args.run)}; 'compressed' added to {args.run}/metrics.json")
    return 0
