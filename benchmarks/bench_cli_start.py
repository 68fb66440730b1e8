"""Start-up cost of the command line: ``lossensemble --help`` and a one-query ``search`` in fresh processes.

Builds, in a temporary folder, an index of ``--n`` vectors bound to an exported model
(small_cnn, untrained, ``--image-size`` px: the query-side cost does not depend on the
weights): a real index of a few PNGs written by ``build_index``, whose faiss index and
paths are then replaced by ``--n`` random unit vectors. Then times, interleaved over
``--repeats`` rounds, each in a new Python process:

* ``lossensemble --help``;
* ``lossensemble search INDEX query.png --k 10`` (reads the index, checks the model,
  embeds the query, searches, prints), with the model exported ``--format onnx`` so the
  query is embedded by onnxruntime (the default backend), and with ``--backend torch``;
* the baseline: the same exact faiss search of one random vector in a fresh Python
  (``import faiss``, read the index, search), i.e. the floor of any one-process search.

Reports medians of wall time and of CPU time (user + sys of the child), and the load
average. Goals (issue 16): ``--help`` < 0.5 s, ``search`` < 1.5 s wall on 2 cores.

    python benchmarks/bench_cli_start.py            # print the table
    python benchmarks/bench_cli_start.py --write    # also rewrite the "CLI start-up" section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchutil  # noqa: E402


def make_index(root: Path, n: int, image_size: int) -> tuple[Path, Path]:
    """An index folder of ``n`` random vectors bound to a freshly exported model; returns (index, query image)."""
    import faiss
    import torch
    from PIL import Image

    from lossensemble.inference import build_index, export_model, write_paths
    from lossensemble.models import EnsembleModel, build_backbone

    torch.manual_seed(0)
    model = EnsembleModel(build_backbone("small_cnn"), ["triplet", "proxy_nca"], 32).eval()
    model_dir = export_model(model, torch.tensor([0.5, 0.5]), root / "model", embedding="ensemble",
                             image_size=image_size, data_kind="photo", backbone_name="small_cnn", format="onnx")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (image_size + 8, image_size + 8, 3), dtype=np.uint8)).save(
            images / f"{i}.png")
    out = root / "index"
    info = build_index(model_dir, images, out)
    x = rng.standard_normal((n, info["dim"]), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(info["dim"])
    index.add(x)
    faiss.write_index(index, str(out / "index.faiss"))
    write_paths(out / "paths.jsonl", [str(images / f"synthetic-{i:07d}.png") for i in range(n)])
    meta = json.loads((out / "index.json").read_text())
    meta["count"] = n
    (out / "index.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out, images / "0.png"


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one child process; raises if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run(args) -> str:
    exe = str(Path(sys.executable).with_name("lossensemble"))
    with tempfile.TemporaryDirectory() as tmp:
        index, query = make_index(Path(tmp), args.n, args.image_size)
        baseline = ("import faiss, numpy as np; i = faiss.read_index(%r); q = np.random.default_rng(0)"
                    ".standard_normal((1, i.d), dtype=np.float32); q /= np.linalg.norm(q); print(i.search(q, 10))"
                    % str(index / "index.faiss"))
        search = [exe, "search", str(index), str(query), "--k", "10"]
        cases = {
            "lossensemble --help": [exe, "--help"],
            f"lossensemble search, ONNX model (index of {args.n:,})": search,
            f"lossensemble search --backend torch (index of {args.n:,})": [*search, "--backend", "torch"],
            "baseline: python + faiss read + search": [sys.executable, "-c", baseline],
        }
        for cmd in cases.values():  # warm the page cache once
            timed(cmd)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        load_before = benchutil.load_average()
        for r in range(args.repeats):
            names = list(cases)
            for name in names[r % len(names):] + names[: r % len(names)]:  # rotate the order each round
                times[name].append(timed(cases[name]))
    lines = [
        f"Fresh processes, medians of {args.repeats} interleaved rounds (order rotated each round); "
        f"the index is an exact faiss flat index of {args.n:,} x 32 vectors bound to a small_cnn model exported "
        f"with `--format onnx` ({args.image_size} px query): `search` embeds the query with onnxruntime unless "
        "`--backend torch`. Goals: `--help` < 0.5 s, `search` < 1.5 s wall.",
        "",
        "| command | wall p50 (s) | CPU p50 (s) |",
        "|---|---:|---:|",
    ]
    for name, values in times.items():
        wall, cpu = np.median(np.asarray(values), axis=0)
        lines.append(f"| {name} | {wall:.2f} | {cpu:.2f} |")
    lines += ["", f"- Load average (1/5/15 min): {load_before} at the start, {benchutil.load_average()} at the end."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="indexed vectors (default 100,000)")
    ap.add_argument("--image-size", type=int, default=64, help="model input size (default 64)")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved rounds (default 7)")
    ap.add_argument("--write", action="store_true", help="rewrite the section of BENCHMARKS.md")
    args = ap.parse_args(argv)
    if min(args.n, args.repeats) < 1 or args.image_size < 8:
        ap.error("--n and --repeats must be >= 1, --image-size >= 8")
    return benchutil.publish("cli_start", run(args), "bench_cli_start.py", argv, args.write)


if __name__ == "__main__":
    sys.exit(main())
