"""``lossensemble index``: build a faiss index of an image folder with an exported model."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "index",
        help="build a searchable faiss index of an image folder",
        description="Embed every image under IMAGE_FOLDER (recursively) with an exported model and write "
        "INDEX_DIR: index.faiss (exact inner-product index on the L2-normalised embeddings), paths.txt, "
        "index.json, and a copy of the model in INDEX_DIR/model so the index is self-contained. "
        "Search it with 'lossensemble search INDEX_DIR QUERY_IMAGE'.",
    )
    p.add_argument("model", metavar="MODEL_DIR", help="exported model folder")
    p.add_argument("folder", metavar="IMAGE_FOLDER", help="folder of images (searched recursively)")
    p.add_argument("-o", "--output", required=True, metavar="INDEX_DIR", help="folder to write the index into")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lossensemble.cli.embed import report_skipped
    from lossensemble.inference import build_index

    info = build_index(args.model, args.folder, args.output, batch_size=args.batch_size, progress=True,
                       device=args.device)
    report_skipped(info["skipped"])
    print(f"indexed {info['count']} images ({info['dim']}-d '{info['embedding']}' embedding) into {args.output}")
    return 0
