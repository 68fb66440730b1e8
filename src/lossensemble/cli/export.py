"""``lossensemble export``: a self-contained inference model from a run."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a run as a self-contained inference model (safetensors or ONNX, Hugging Face layout)",
        description="Write MODEL_DIR/model.safetensors (only the tensors the chosen embedding needs), "
        "MODEL_DIR/config.json (backbone, heads, weights, compressor, image size, preprocessing, test metrics) "
        "and MODEL_DIR/README.md (a model card); with --format onnx also MODEL_DIR/model.onnx (normalised "
        "images (B,3,H,W) -> L2-normalised embeddings, dynamic batch). Load it from Python with "
        "lossensemble.load_model(MODEL_DIR). The default embedding is 'compressed' when the run has a "
        "compressor (post-hoc from 'lossensemble compress', or trained jointly), else 'ensemble'.",
    )
    p.add_argument("run", metavar="RUN", help="run folder written by 'lossensemble train'")
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR", help="folder to write the model into")
    p.add_argument("--embedding", metavar="NAME",
                   help="compressed, ensemble or heads.<loss> (default: compressed if available, else ensemble)")
    p.add_argument("--checkpoint", choices=["last", "best", "compressed"],
                   help="source checkpoint (default: compressed if 'lossensemble compress' wrote one, else last)")
    p.add_argument("--format", choices=["safetensors", "onnx"], default="safetensors",
                   help="safetensors (default) or onnx: the safetensors folder plus model.onnx "
                   "(needs pip install 'lossensemble[onnx]')")
    p.add_argument("--license", default="other", metavar="ID",
                   help="license id for the model card, e.g. mit or apache-2.0 (default: other; "
                   "mind the training data's terms)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lossensemble.inference import export_run, load_model

    out = export_run(args.run, args.output, embedding=args.embedding, checkpoint=args.checkpoint,
                     format=args.format, license=args.license)
    model = load_model(out)  # verify what was written
    spec = model.spec
    size = (out / "model.safetensors").stat().st_size
    print(f"exported embedding '{spec['embedding']}' ({spec['output_dim']}-d, {spec['parameters']:,} parameters, "
          f"{size / 1e6:.1f} MB) from {spec['source'].get('checkpoint')} checkpoint to {out}")
    onnx = spec.get("onnx")
    if onnx:
        diff = onnx.get("max_abs_diff_vs_torch")
        print(f"  + {onnx['file']} ({onnx['exporter']} exporter, opset {onnx['opset']}; "
              + (f"max abs diff vs PyTorch {diff:.1e})" if diff is not None else "not checked: no onnxruntime)"))
    return 0
