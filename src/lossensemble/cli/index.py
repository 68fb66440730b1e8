"""``lossensemble index``: build (or extend) a faiss index of an image folder with an exported model."""

from __future__ import annotations

import argparse

from lossensemble.cli.common import add_progress_argument, show_progress

def register(sub) -> None:
    p = sub.add_parser(
        "index",
        help="build a searchable faiss index of an image folder",
        description="Embed every image under IMAGE_FOLDER (recursively) with an exported model and write "
        "INDEX_DIR: index.faiss (inner product on the L2-normalised embeddings), paths.jsonl (the image of "
        "each row, one JSON string per line), index.json, and a copy of the model in INDEX_DIR/model so the "
        "index is self-contained. --type flat is exact; hnsw and ivf are approximate and faster on large "
        "collections. --append adds the images not indexed yet to an existing INDEX_DIR (same model "
        "required). Search it with 'lossensemble search INDEX_DIR QUERY_IMAGE'.",
    )
    p.add_argument("model", metavar="MODEL_DIR", help="exported model folder")
    p.add_argument("folder", metavar="IMAGE_FOLDER", help="folder of images (searched recursively) or an image")
    p.add_argument("-o", "--output", required=True, metavar="INDEX_DIR", help="folder to write the index into")
    p.add_argument("--type", dest="index_type", choices=["flat", "hnsw", "ivf"],
                   help="faiss index: flat (exact, default), hnsw (graph) or ivf (k-means cells); with "
                   "--append, default the index's own type")
    p.add_argument("--append", action="store_true",
                   help="add the images of IMAGE_FOLDER that INDEX_DIR does not hold yet (nothing is re-embedded)")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    add_progress_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lossensemble.cli.embed import report_skipped
    from lossensemble.inference import build_index

    info = build_index(args.model, args.folder, args.output, index_type=args.index_type, append=args.append,
                       batch_size=args.batch_size, progress=show_progress(args), device=args.device)
    report_skipped(info["skipped"])
    what = f"{info['dim']}-d '{info['embedding']}' embedding, {info['type']} index"
    if args.append:
        print(f"added {info['added']} new images to {args.output} ({info['count']} in all, {what})")
    else:
        print(f"indexed {info['count']} images ({what}) into {args.output}")
    return 0
