"""Benchmark: evaluation metrics at scale, chunked faiss search vs the naive full-matrix approach.

Each variant runs in its own subprocess so that its peak memory (``ru_maxrss``)
is its own; the delta is the peak minus the resident size just before the
metrics start (data already in memory). Synthetic clustered data, seeded:
``n`` float32 embeddings of dimension 128 in ``n / 10`` classes of 10.

    python benchmarks/bench_eval.py                 # print the table
    python benchmarks/bench_eval.py --write         # also rewrite BENCHMARKS.md "Evaluation"

Variants: ``ours`` (``compute_metrics``, all metrics but NMI) at 20k and 100k,
and ``naive`` at 20k: full n x n similarity matrix + full argsort + metrics on
the sorted label matrix, as research code does. Both compute the same numbers,
which the script checks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DIM = 128
PER_CLASS = 10
SEED = 0
NOISE = 2.0  # within-class spread; centres are N(0, 1)
KS = (1, 2, 4, 8)
ROOT = Path(__file__).resolve().parents[1]
# (variant, n, faiss threads): None = faiss default (all cores)
PLAN = [("ours", 20_000, None), ("ours", 20_000, 1), ("naive", 20_000, None), ("ours", 100_000, None), ("ours", 100_000, 1)]
BEGIN, END = "<!-- evaluation:begin -->", "<!-- evaluation:end -->"


def make_data(n: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """``n`` clustered float32 embeddings (n / 10 classes of 10), generated in float32 to keep memory flat."""
    rng = np.random.default_rng(seed)
    n_classes = n // PER_CLASS
    labels = rng.permutation(np.repeat(np.arange(n_classes), PER_CLASS))
    centres = rng.standard_normal((n_classes, DIM), dtype=np.float32)
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x *= NOISE
    x += centres[labels]
    return x, labels


def naive_metrics(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """What research code does: full similarity matrix, full argsort, metrics on the sorted labels."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    dist = unit @ unit.T  # n x n float32
    dist *= -1.0  # smaller is nearer, in place
    np.fill_diagonal(dist, np.inf)  # the query itself goes last
    order = np.argsort(dist, axis=1, kind="stable")[:, :-1]  # n x n int64
    del dist
    ranked = y.astype(np.int32)[order]  # n x (n - 1) labels
    del order
    relevant = ranked == y[:, None]
    out = {f"recall@{k}": 100 * relevant[:, :k].any(1).mean() for k in KS}
    top3 = ranked[:, :3]
    votes = (top3[:, :, None] == top3[:, None, :]).sum(2)
    out["knn_acc"] = 100 * (top3[np.arange(len(y)), votes.argmax(1)] == y).mean()
    r = np.bincount(y)[y] - 1
    rmax = int(r.max())
    rel = relevant[:, :rmax] & (np.arange(rmax) < r[:, None])
    cum = np.cumsum(rel, 1)
    out["map@r"] = 100 * ((cum * rel / np.arange(1, rmax + 1)).sum(1) / r).mean()
    out["r_precision"] = 100 * (cum[:, -1] / r).mean()
    return {k: float(v) for k, v in out.items()}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(variant: str, n: int, chunk_size: int | None, threads: int | None) -> dict:
    """Run one variant in this process; return timing, memory and the metrics."""
    from lossensemble.evaluation import compute_metrics

    x, y = make_data(n)
    before = _rss_bytes()
    start, cpu_start = time.perf_counter(), time.process_time()
    if variant == "naive":
        metrics = naive_metrics(x, y)
    else:
        metrics = compute_metrics(x, y, nmi=False, chunk_size=chunk_size, threads=threads)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    import faiss

    used = threads or faiss.omp_get_max_threads()
    return {"variant": variant, "n": n, "threads": used if variant == "ours" else None, "wall_s": wall, "cpu_s": cpu, "peak_rss": peak, "peak_delta": peak - before, "metrics": metrics}


def run_variant(variant: str, n: int, chunk_size: int | None, threads: int | None) -> dict:
    cmd = [sys.executable, __file__, "--worker", variant, "--n", str(n)]
    if threads:
        cmd += ["--threads", str(threads)]
    if chunk_size:
        cmd += ["--chunk-size", str(chunk_size)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine_facts() -> str:
    import faiss
    import sklearn

    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, numpy {np.__version__}, "
        f"faiss {faiss.__version__} (CPU, {faiss.omp_get_max_threads()} OpenMP threads), scikit-learn {sklearn.__version__}"
    )


def render(rows: list[dict], command: str, load: str) -> str:
    mib = 1 << 20
    ours20 = [r for r in rows if r["variant"] == "ours" and r["n"] == 20_000]
    ours100 = [r for r in rows if r["variant"] == "ours" and r["n"] == 100_000]
    naive20 = next(r for r in rows if r["variant"] == "naive")
    same = all(abs(o["metrics"][k] - naive20["metrics"][k]) < 1e-6 for o in ours20 for k in naive20["metrics"])
    speedups = ", ".join(f"{naive20['cpu_s'] / o['cpu_s']:.1f}x in CPU time ({naive20['wall_s'] / o['wall_s']:.1f}x "
                         f"in wall time) with {o['threads']} faiss thread(s)" for o in ours20)
    peak100 = max(o["peak_rss"] for o in ours100)
    lines = [
        "Synthetic clustered data (seed 0): float32, d = 128, 10 items per class; all metrics but NMI",
        "(Recall@1/2/4/8, kNN accuracy, MAP@R, R-precision), cosine distance. Each variant runs in its own",
        "process; peak = ru_maxrss, delta = peak minus the resident size just before the metrics start.",
        "",
        "| variant | n | classes | faiss threads | CPU time | wall time | peak RSS | peak delta |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['n']:,} | {r['n'] // PER_CLASS:,} | {r['threads'] or '-'} | {r['cpu_s']:.2f} s | {r['wall_s']:.2f} s "
            f"| {r['peak_rss'] / mib:,.0f} MiB | {r['peak_delta'] / mib:,.0f} MiB |"
        )
    lines += [
        "",
        f"- Speed-up at 20k, naive / ours: **{speedups}** (target >= 10x). CPU time (all threads of the "
        "process) is the fair figure on shared cores: wall times swing with the other sessions' load; "
        f"peak-delta memory ratio {naive20['peak_delta'] / max(ours20[0]['peak_delta'], 1):.0f}x.",
        f"- Peak memory at 100k: **{peak100 / mib:,.0f} MiB** (target < 2 GB).",
        f"- Same metric values from both approaches at 20k: {'yes' if same else 'NO'} "
        f"(recall@1 {ours20[0]['metrics']['recall@1']:.2f}, map@r {ours20[0]['metrics']['map@r']:.2f}).",
        "- Metrics at 100k: " + ", ".join(f"{k} {v:.2f}" for k, v in ours100[0]["metrics"].items()) + ".",
        f"- Load average while running (other sessions share the 2 cores): {load}. Wall times are",
        "  inflated by that contention; under it one faiss thread can beat two (waiting OpenMP threads spin),",
        "  hence `compute_metrics(..., threads=1)` / `evaluate-embeddings --threads 1`.",
        "- Where the time goes (cProfile, 20k): over 97% inside faiss `IndexFlat.search`; the metrics are",
        "  vectorised numpy on each chunk's (queries, k) neighbour-label matrix. Ours holds the data, the",
        "  flat index (a copy, n x d) and per chunk 4,096 x k neighbours; the naive one holds the n x n",
        "  float32 similarities and the n x n int64 argsort (4.8 GB at 20k, 120 GB at 100k).",
        f"- Machine: {machine_facts()}.",
        f"- Command: `{command}`",
    ]
    return "\n".join(lines)


def write_section(text: str, path: Path = ROOT / "BENCHMARKS.md") -> None:
    """Replace (or append) only the Evaluation section of BENCHMARKS.md."""
    block = f"## Evaluation\n\n{BEGIN}\n{text}\n{END}\n"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(r"## Evaluation\n\n" + re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n", re.S)
    if pattern.search(current):
        new = pattern.sub(lambda _: block, current)
    else:
        new = current.rstrip("\n") + "\n\n" + block
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=["ours", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=100_000, help=argparse.SUPPRESS)
    parser.add_argument("--chunk-size", type=int, default=None, help="queries per faiss search (default: library's)")
    parser.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--write", action="store_true", help="rewrite the Evaluation section of BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.chunk_size, args.threads)))
        return 0
    rows, loads = [], [os.getloadavg()[0]]
    for variant, n, threads in PLAN:
        rows.append(run_variant(variant, n, args.chunk_size, threads))
        r = rows[-1]
        loads.append(os.getloadavg()[0])
        print(f"{variant:>5} n={n:>7,} threads={threads}: {r['cpu_s']:7.2f} s CPU, {r['wall_s']:7.2f} s wall, peak {r['peak_rss'] / 2**20:7.0f} MiB", file=sys.stderr)
    load = f"{min(loads):.1f}-{max(loads):.1f} (1-minute)"
    command = "python benchmarks/bench_eval.py" + (" --write" if args.write else "")
    text = render(rows, command, load)
    print(text)
    if args.write:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
