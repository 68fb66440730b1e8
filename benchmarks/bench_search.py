"""Search cost of the compressed embedding vs the ensemble embedding vs one head (issue 9, point 3).

Builds one exact faiss ``IndexFlatIP`` per embedding over ``--n`` synthetic clustered,
L2-normalised vectors: ``compressed`` (d), ``ensemble`` (m*d, the concatenation of m
heads scaled by sqrt(1/m)) and ``head`` (d); then times ``--queries`` single-query
searches (k = 10) and one batched search of the same queries. The three indices are
queried round-robin (rotating the order every query) so that load from other
processes on the shared cores hits them alike. Index memory is the size of the
serialised index (n x dim x 4 bytes + a small header), which is what faiss holds.

Also times embedding one image end to end with exported :class:`InferenceModel`s
(small_cnn at 64 px, one thread): the query-side cost of each embedding.

    python benchmarks/bench_search.py            # print the table
    python benchmarks/bench_search.py --write    # also rewrite the "Search" section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- search:begin -->", "<!-- search:end -->"


def clustered(n: int, dim: int, rng: np.random.Generator, classes: int = 10_000) -> np.ndarray:
    centres = rng.standard_normal((classes, dim), dtype=np.float32)
    x = centres[rng.integers(0, classes, n)] + 0.5 * rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def build_data(n: int, d: int, m: int, nq: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    heads = [clustered(n + nq, d, rng) for _ in range(m)]
    ensemble = np.concatenate(heads, axis=1) / np.sqrt(m)  # sqrt(w_k) with equal weights: unit norm
    compressed = clustered(n + nq, d, rng)
    out = {}
    for name, x in (("compressed", compressed), ("ensemble", ensemble), ("head", heads[0])):
        x = np.ascontiguousarray(x, dtype=np.float32)
        out[name] = (x[:n], x[n:])
    return out


def time_search(data, k: int, repeats: int) -> dict[str, dict[str, float]]:
    indices = {}
    for name, (base, _) in data.items():
        index = faiss.IndexFlatIP(base.shape[1])
        index.add(base)
        indices[name] = index
    names = list(indices)
    nq = next(iter(data.values()))[1].shape[0]
    single = {n: [] for n in names}
    for name in names:  # warm-up
        indices[name].search(data[name][1][:8], k)
    for i in range(nq):
        order = names[i % len(names):] + names[: i % len(names)]
        for name in order:
            q = data[name][1][i : i + 1]
            t = time.perf_counter()
            indices[name].search(q, k)
            single[name].append(time.perf_counter() - t)
    batched = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t = time.perf_counter()
            indices[name].search(data[name][1], k)
            batched[name].append(time.perf_counter() - t)
    out = {}
    for name in names:
        s = np.asarray(single[name]) * 1e3
        out[name] = {
            "dim": indices[name].d,
            "p50_ms": float(np.percentile(s, 50)),
            "p99_ms": float(np.percentile(s, 99)),
            "batched_ms_per_query": float(np.median(batched[name]) * 1e3 / nq),
            "memory_mib": len(faiss.serialize_index(indices[name])) / 2**20,
        }
    return out


def time_embedding(image_size: int, d: int, m: int, repeats: int) -> dict[str, float]:
    """Median milliseconds to embed one image with each exported embedding (small_cnn, 1 thread)."""
    import torch

    from lossensemble.models import build_compressor
    from lossensemble.inference import export_model, load_model
    from lossensemble.models import EnsembleModel, build_backbone

    torch.set_num_threads(1)
    torch.manual_seed(0)
    heads = [f"loss{i}" for i in range(m)]
    weights = torch.full((m,), 1.0 / m)
    variants = {
        "head": (None, "heads.loss0"),
        "ensemble": (None, "ensemble"),
        "compressed (mlp)": ("mlp", "compressed"),
        "compressed (direct)": ("direct", "compressed"),
    }
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (variant, embedding) in variants.items():
            model = EnsembleModel(build_backbone("small_cnn"), heads, d).eval()
            meta = None
            if variant:
                in_dim = model.backbone.feature_dim if variant == "direct" else m * d
                hidden = 2 * d if variant == "mlp" else None
                model.set_compressor(build_compressor(variant, in_dim, d, hidden=hidden), variant)
                meta = {"variant": variant, "in_dim": in_dim, "dim": d, "hidden": hidden, "objective": "frobenius"}
            path = export_model(model, weights, Path(tmp) / label.replace(" ", "_"), embedding=embedding,
                                image_size=image_size, data_kind="glyph", backbone_name="small_cnn",
                                compressor_meta=meta)
            models[label] = (load_model(path), os.path.getsize(path / "model.safetensors") / 2**20)
    x = torch.randn(1, 3, image_size, image_size)
    times = {k: [] for k in models}
    with torch.inference_mode():
        for label, (model, _) in models.items():
            model(x)
        for r in range(repeats):
            for label, (model, _) in models.items():
                t = time.perf_counter()
                model(x)
                times[label].append(time.perf_counter() - t)
    return {k: (float(np.median(v) * 1e3), models[k][1]) for k, v in times.items()}


def render(args, results, embed, seconds: float) -> str:
    import torch

    lines = [
        f"Synthetic clustered L2-normalised vectors (seed {args.seed}): n = {args.n:,} items, "
        f"{args.queries:,} queries, k = {args.k}; exact faiss `IndexFlatIP` (cosine). Single = one `search` call per query (p50/p99 over {args.queries:,}); batched = all queries "
        f"in one call (median of {args.repeats}), per query. m = {args.m} heads of d = {args.d}.",
        "",
        "| faiss threads | embedding | dim | p50 single (ms) | p99 single (ms) | batched (ms/query) "
        "| index memory (MiB) | p50 vs head |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for threads, search in results.items():
        head = search["head"]
        for name in ("compressed", "head", "ensemble"):
            r = search[name]
            lines.append(f"| {threads} | {name} | {r['dim']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                         f"{r['batched_ms_per_query']:.4f} | {r['memory_mib']:.1f} | "
                         f"{r['p50_ms'] / head['p50_ms']:.2f}x |")
    lines.append("")
    for threads, search in results.items():
        head, c, e = search["head"], search["compressed"], search["ensemble"]
        ok = abs(c["p50_ms"] / head["p50_ms"] - 1) <= 0.10 and c["memory_mib"] <= 1.1 * head["memory_mib"]
        lines.append(
        f"- {threads} thread(s), compressed vs one head: p50 {c['p50_ms'] / head['p50_ms']:.2f}x, p99 {c['p99_ms'] / head['p99_ms']:.2f}x, "
        f"batched {c['batched_ms_per_query'] / head['batched_ms_per_query']:.2f}x, memory "
        f"{c['memory_mib'] / head['memory_mib']:.2f}x: **{'within' if ok else 'NOT within'} 10%** (target). "
        f"The ensemble costs {e['p50_ms'] / head['p50_ms']:.1f}x (single), "
        f"{e['batched_ms_per_query'] / head['batched_ms_per_query']:.1f}x (batched) and "
        f"{e['memory_mib'] / head['memory_mib']:.1f}x memory.")
    lines.append(
        "- Single-query latency and memory are what the target is about: at equal width the compressed index "
        "is a head's index. With 2 OpenMP threads on cores shared with other sessions, waiting threads spin "
        "and get descheduled, so single queries are slower than with 1 thread. Batched per-query times are "
        "noisier (5 runs, shared cores) and faiss's batched path was measured slower at d = 64 than at "
        "d = 256 on this machine in some runs; compare them only between rows of one thread setting.")
    lines += [
        f"- Query-side embedding of one {args.image_size} px image (small_cnn, exported model, 1 torch thread, "
        f"median of {args.embed_repeats}): "
        + ", ".join(f"{k} {v[0]:.2f} ms ({v[1]:.2f} MB file)" for k, v in embed.items())
        + ". The backbone dominates; `direct` ships only backbone + one linear layer.",
        f"- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other "
        f"sessions (1-min load average at the end: {os.getloadavg()[0]:.1f}); Python {platform.python_version()}, "
        f"numpy {np.__version__}, faiss {faiss.__version__} (CPU), torch {torch.__version__.split('+')[0]}. "
        f"Total {seconds:.0f} s.",
        f"- Command: `python benchmarks/bench_search.py --write`",
    ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    body = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in body and END in body:
        body = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, body, flags=re.S)
    else:
        body = body.rstrip("\n") + f"\n\n## Search\n\n{block}\n"
    path.write_text(body, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1_000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--m", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", default="2,1", help="faiss OpenMP thread counts to measure, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--embed-repeats", type=int, default=50)
    ap.add_argument("--write", action="store_true", help="rewrite the Search section of BENCHMARKS.md")
    args = ap.parse_args()
    start = time.perf_counter()
    data = build_data(args.n, args.d, args.m, args.queries, args.seed)
    search = {}
    for threads in [int(t) for t in str(args.threads).split(",")]:
        faiss.omp_set_num_threads(threads)
        search[threads] = time_search(data, args.k, args.repeats)
    del data
    embed = time_embedding(args.image_size, args.d, args.m, args.embed_repeats)
    text = render(args, search, embed, time.perf_counter() - start)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
