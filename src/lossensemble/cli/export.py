"""``lossensemble export``: a self-contained inference model from a run."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a run as a self-contained inference model (safetensors + JSON)",
        description="Write MODEL_DIR/model.safetensors (only the tensors the chosen embedding needs) and "
        "MODEL_DIR/model.json (backbone, heads, weights, compressor, image size, transforms). Load it from "
        "Python with lossensemble.load_model(MODEL_DIR). The default embedding is 'compressed' when the run "
        "has a compressor (post-hoc from 'lossensemble compress', or trained jointly), else 'ensemble'.",
    )
    p.add_argument("run", metavar="RUN", help="run folder written by 'lossensemble train'")
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR", help="folder to write the model into")
    p.add_argument("--embedding", metavar="NAME",
                   help="compressed, ensemble or heads.<loss> (default: compressed if available, else ensemble)")
    p.add_argument("--checkpoint", choices=["last", "best", "compressed"],
                   help="source checkpoint (default: compressed if 'lossensemble compress' wrote one, else last)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lossensemble.inference import export_run, load_model

    out = export_run(args.run, args.output, embedding=args.embedding, checkpoint=args.checkpoint)
    model = load_model(out)  # verify what was written
    spec = model.spec
    size = (out / "model.safetensors").stat().st_size
    print(f"exported embedding '{spec['embedding']}' ({spec['output_dim']}-d, {spec['parameters']:,} parameters, "
          f"{size / 1e6:.1f} MB) from {spec['source'].get('checkpoint')} checkpoint to {out}")
    return 0
