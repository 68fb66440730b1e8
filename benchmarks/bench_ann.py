"""Exact vs approximate faiss indexes of ``lossensemble index --type``: build time, memory, latency, recall.

Builds each index type exactly as ``lossensemble index`` does
(:func:`lossensemble.inference.ann.new_index`: ``flat`` = ``IndexFlatIP``, ``hnsw`` =
``IndexHNSWFlat`` M=32 efConstruction=80, ``ivf`` = ``IndexIVFFlat`` with nlist ~ 4 sqrt(n)
trained on the vectors) over ``--n`` synthetic clustered L2-normalised vectors of
``--dim`` dimensions, then searches ``--queries`` held-out vectors one call per query
with the default search parameters (efSearch, nprobe from index.json's defaults) and k
= ``--k``. Queries go round-robin over the types (rotating the order every query) so
that load from other processes on shared cores hits all alike.

Columns: build time (training + adding), memory (size of the serialised index, which is
what faiss holds in RAM), p50 and p99 single-query latency, recall@k against the exact
(flat) neighbours. Prints a Markdown table with the machine's CPU model and load average.

    python benchmarks/bench_ann.py                 # 1M x 64 (several minutes, ~1.5 GB RAM)
    python benchmarks/bench_ann.py --n 100000      # quick
    python benchmarks/bench_ann.py --write         # also rewrite the "Approximate indexes" section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import time

import sys
from pathlib import Path

import faiss
import numpy as np

from lossensemble.inference.ann import INDEX_TYPES, apply_search_parameters, new_index, search_parameters

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchutil  # noqa: E402


def clustered(n: int, dim: int, rng: np.random.Generator, classes: int) -> np.ndarray:
    """``n`` unit vectors around ``classes`` random centres (built in chunks to bound memory)."""
    centres = rng.standard_normal((classes, dim), dtype=np.float32)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        x = centres[rng.integers(0, classes, m)] + 0.5 * rng.standard_normal((m, dim), dtype=np.float32)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def describe(kind: str, params: dict, k: int) -> str:
    p = search_parameters(kind, params, k)
    if kind == "hnsw":
        return f"M={params['M']}, efConstruction={params['ef_construction']}, efSearch={p.efSearch}"
    if kind == "ivf":
        return f"nlist={params['nlist']}, nprobe={p.nprobe}"
    return "exact"


def run(args) -> str:
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    data = clustered(args.n + args.queries, args.dim, rng, classes=args.classes)
    base, queries = data[:args.n], data[args.n:]
    built = {}
    faiss.omp_set_num_threads(args.build_threads)
    for kind in INDEX_TYPES:
        t = time.perf_counter()
        index, params = new_index(kind, base)
        index.add(base)
        built[kind] = {"index": index, "params": params, "build_s": time.perf_counter() - t,
                       "memory_mib": len(faiss.serialize_index(index)) / 2**20}
        print(f"built {kind} in {built[kind]['build_s']:.1f} s", flush=True)
    faiss.omp_set_num_threads(args.threads)
    names = list(built)
    search = {kind: search_parameters(kind, built[kind]["params"], args.k) for kind in names}
    times = {kind: [] for kind in names}
    ids = {kind: np.empty((args.queries, args.k), np.int64) for kind in names}
    for kind in names:  # the defaults `lossensemble search` uses; then a warm-up
        apply_search_parameters(built[kind]["index"], search[kind])
        built[kind]["index"].search(queries[:8], args.k)
    for i in range(args.queries):
        q = queries[i:i + 1]
        for kind in names[i % len(names):] + names[:i % len(names)]:
            index = built[kind]["index"]
            t = time.perf_counter()
            _, found = index.search(q, args.k)
            times[kind].append(time.perf_counter() - t)
            ids[kind][i] = found[0]
    exact = ids["flat"]
    lines = [
        f"Synthetic clustered L2-normalised vectors: n = {args.n:,}, dim = {args.dim}, {args.classes:,} clusters "
        f"(seed {args.seed}); {args.queries:,} held-out queries, one `search` call each, k = {args.k}; "
        f"faiss {faiss.__version__} with {faiss.omp_get_max_threads()} thread(s). Recall@{args.k} against the "
        "exact (flat) neighbours; memory = serialised index size.",
        "",
        f"| type | parameters | build (s) | memory (MiB) | p50 query (ms) | p99 query (ms) | recall@{args.k} |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for kind in names:
        t_ms = np.asarray(times[kind]) * 1e3
        recall = float(np.mean([len(set(a) & set(b)) / args.k for a, b in zip(ids[kind], exact)]))
        b = built[kind]
        lines.append(f"| {kind} | {describe(kind, b['params'], args.k)} | {b['build_s']:.1f} | "
                     f"{b['memory_mib']:.1f} | {np.percentile(t_ms, 50):.3f} | {np.percentile(t_ms, 99):.3f} | "
                     f"{recall:.3f} |")
    ratios = [f"{kind}: {np.percentile(times['flat'], 50) / np.percentile(times[kind], 50):.1f}x lower p50 latency "
              f"than flat" for kind in names if kind != "flat"]
    load = os.getloadavg()
    lines += [
        "",
        f"- {'; '.join(ratios)}. Goal (issue 16): recall@10 >= 0.95 at >= 10x lower latency than flat at 1M x 64.",
        "- These synthetic clusters are well separated (100 points each), which makes approximate search easy: "
        "recall on real embeddings, whose classes overlap, is lower at the same parameters; check it on yours "
        "(`search --ef-search N` / `--nprobe N` per query).",
        f"- Load average (1/5/15 min) at the end: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; "
        f"built with {args.build_threads} thread(s). Total {time.perf_counter() - t0:.0f} s.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="indexed vectors (default 1,000,000)")
    ap.add_argument("--dim", type=int, default=64, help="dimensions (default 64)")
    ap.add_argument("--queries", type=int, default=1_000, help="held-out queries (default 1000)")
    ap.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    ap.add_argument("--classes", type=int, default=10_000, help="clusters in the synthetic data (default 10,000)")
    ap.add_argument("--threads", type=int, default=1,
                    help="faiss OpenMP threads (default 1: single-query latency on shared cores)")
    ap.add_argument("--build-threads", type=int, default=2, help="faiss threads while building (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help="rewrite the section of BENCHMARKS.md")
    args = ap.parse_args(argv)
    if min(args.n, args.dim, args.queries, args.k, args.classes, args.threads, args.build_threads) < 1:
        ap.error("--n, --dim, --queries, --k, --classes, --threads and --build-threads must be >= 1")
    return benchutil.publish("ann", run(args), "bench_ann.py", argv, args.write)


if __name__ == "__main__":
    sys.exit(main())
