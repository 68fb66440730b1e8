"""``lossensemble search``: the nearest indexed images of a query image."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser(
        "search",
        help="find the nearest images of a query in an index",
        description="Embed QUERY_IMAGE with the index's model and print the K nearest indexed images, "
        "nearest first, with their distance (1 - cosine similarity). --json prints a list of "
        '{"path": ..., "distance": ...} instead. Approximate indexes search with the parameters stored '
        "in index.json unless --ef-search (hnsw) or --nprobe (ivf) is given.",
    )
    p.add_argument("index", metavar="INDEX_DIR", help="folder written by 'lossensemble index'")
    p.add_argument("query", metavar="QUERY_IMAGE", help="query image file")
    p.add_argument("--k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--ef-search", type=int, metavar="N",
                   help="hnsw: candidates explored per query (more = better recall, slower; at least k)")
    p.add_argument("--nprobe", type=int, metavar="N",
                   help="ivf: cells visited per query (more = better recall, slower; nlist = exact)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    p.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                   help="what embeds the query: auto (default: onnxruntime when the index's model has model.onnx, "
                   "from 'export --format onnx', and onnxruntime is installed; it starts without importing torch), "
                   "torch, or onnx")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lossensemble.inference import ImageIndex

    results = ImageIndex(args.index, device=args.device, backend=args.backend).search(args.query, k=args.k, ef_search=args.ef_search,
                                                                 nprobe=args.nprobe)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    width = len(str(len(results)))
    print(f"{'#'.rjust(width)}  distance  path")
    for rank, item in enumerate(results, 1):
        path = item["path"] if item["path"].isprintable() else json.dumps(item["path"])  # one line per result
        print(f"{str(rank).rjust(width)}  {item['distance']:8.4f}  {path}")
    return 0
