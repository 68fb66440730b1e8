"""Run the CPU benchmark set and rewrite the tables of BENCHMARKS.md (``make bench``).

Each benchmark runs as its own process with ``--write``, so it rewrites only its own
marked section of BENCHMARKS.md (``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->`` for
ours; ``bench_eval.py`` and ``bench_search.py`` own ``<!-- evaluation:begin -->`` and
``<!-- search:begin -->``). Finally the index at the top (``<!-- bench:index -->``) is
rewritten with what ran, how long each took, the machine and the versions, and the GPU
section (``<!-- bench:gpu -->``) with the commands to run on a GPU machine.

Default: the reduced set, under 15 minutes on 2 CPU cores (fewer timed rounds, two
single-loss baselines, a one-epoch demo, reduced search; the evaluation benchmark, about
5 minutes on its own, is included only with ``--full`` or ``--only eval``).
``--full``: the full sizes (all four single losses, more rounds, the full demo, evaluation).

    python benchmarks/run_all.py                       # reduced CPU set (make bench)
    python benchmarks/run_all.py --full                # full sizes (about 30-40 minutes)
    python benchmarks/run_all.py --only train_step,demo
    python benchmarks/run_all.py --dry-run             # print the commands only
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchutil  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# name -> (script, reduced args, full args, in the reduced set)
BENCHES: dict[str, tuple[str, list[str], list[str], bool]] = {
    "train_step": ("bench_train_step.py",
                   ["--sizes", "64x64,224x32", "--rounds", "10", "--rounds-large", "3",
                    "--singles", "classification,triplet", "--threads", "2"],
                   ["--sizes", "64x64,224x32", "--rounds", "20", "--rounds-large", "5",
                    "--singles", "classification,triplet,binomial,proxy_nca", "--threads", "2,1"], True),
    "input_pipeline": ("bench_input_pipeline.py", ["--steps", "12"], ["--steps", "30", "--repeats", "5"], True),
    "demo": ("bench_demo.py", ["--quick"], [], True),
    "search": ("bench_search.py", ["--queries", "300", "--repeats", "3", "--embed-repeats", "20"], [], True),
    "eval": ("bench_eval.py", [], [], False),
    "cli_start": ("bench_cli_start.py", ["--repeats", "3"], [], True),
    "ann": ("bench_ann.py", ["--n", "100000", "--queries", "300"], [], True),
    "frozen": ("bench_frozen.py", ["--steps", "4", "--rounds", "2"], [], True),
    "serve": ("bench_serve.py", ["--requests", "20"], [], True),
    "compile": ("bench_compile.py", ["--backbones", "small_cnn", "--rounds", "6"], ["--accuracy-seeds", "3"], True),
}
SECTIONS = {  # where each bench writes in BENCHMARKS.md
    "train_step": "Training step overhead", "input_pipeline": "Input pipeline", "demo": "Demo wall time",
    "search": "Search", "eval": "Evaluation", "cli_start": "CLI start-up", "ann": "Approximate indexes",
    "frozen": "Frozen backbone", "serve": "Serving", "compile": "Compiled step",
}

GPU_TEXT = """\
**Not run: no GPU machine was lent to this task.** The GPU measurements of issue 9 are
(a) the ensemble vs single-loss step time on resnet50 at 224 px, batch 64, mixed precision
(bf16 autocast), and (b) evaluation of 1M x 128 embeddings with a faiss GPU index. To
measure them on a CUDA machine (faiss-gpu installed for (b)):

```bash
# (a) training step: ensemble vs each single loss, interleaved, medians; writes the
#     "Training step overhead" section (add --write)
python benchmarks/bench_train_step.py --device cuda --amp --backbone resnet50 --sizes 224x64 \\
    --singles classification,triplet,binomial,proxy_nca --rounds 30
# (b) evaluation at 1M x 128 on the GPU: compute_metrics on faiss GPU
python - <<'EOF'
import time, numpy as np, faiss
from lossensemble.evaluation import compute_metrics
rng = np.random.default_rng(0); n, d = 1_000_000, 128
labels = rng.permutation(np.repeat(np.arange(n // 10), 10))
x = (rng.standard_normal((n // 10, d), dtype=np.float32)[labels]
     + 2 * rng.standard_normal((n, d), dtype=np.float32))
for dev in ("cuda", "cpu"):  # the CPU run is the baseline (minutes)
    t = time.perf_counter(); m = compute_metrics(x, labels, nmi=False, device=dev)
    print(dev, f"{time.perf_counter() - t:.1f} s", m, "GPUs:", faiss.get_num_gpus())
EOF
```

`compute_metrics(..., device="cuda")` searches with a faiss GPU flat index when faiss was
built with CUDA (`lossensemble.evaluation.neighbors`)."""


def plan(args) -> list[tuple[str, list[str]]]:
    names = list(BENCHES)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in BENCHES]
        if unknown:
            raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHES)}")
        names = wanted
    elif not args.full:
        names = [n for n in names if BENCHES[n][3]]
    skip = {n.strip() for n in (args.skip or "").split(",") if n.strip()}
    steps = []
    for n in names:
        if n in skip:
            continue
        script, reduced, full, _ = BENCHES[n]
        extra = full if args.full else reduced
        cmd = [sys.executable, str(HERE / script), *extra, "--write"]
        steps.append((n, cmd))
    return steps


def index_text(results: list[tuple[str, list[str], float, int]], args, total: float, load_before: str) -> str:
    mode = "full" if args.full else "reduced"
    if args.only:
        mode += f" (only {args.only})"
    lines = [
        "Every figure below is a ratio or a time measured side by side in one run (variants interleaved, medians), "
        "on the machine named in each section. Sections between `<!-- bench:NAME -->` markers are rewritten by "
        "`benchmarks/run_all.py` (`make bench`); see `benchmarks/README.md`.",
        "",
        "| section | script | time in this run_all | exit |",
        "|---|---|---:|---:|",
    ]
    ran = {name: (seconds, rc) for name, _, seconds, rc in results}
    for name, (script, *_rest) in BENCHES.items():
        seconds, rc = ran.get(name, (None, None))
        when = f"{seconds:.0f} s" if seconds is not None else "not run (section kept)"
        lines.append(f"| {SECTIONS.get(name, name)} | `benchmarks/{script}` | {when} | {'' if rc is None else rc} |")
    lines += [
        "| GPU (not run) | `bench_train_step.py --device cuda` | - | - |",
        "",
        f"- Last run: {mode} set, {total / 60:.1f} min in all; load average (1/5/15 min) at the start {load_before}, "
        f"at the end {benchutil.load_average()}. Other sessions share the 2 cores: absolute times are pessimistic, "
        "ratios are what to read.",
    ]
    cmd = "python benchmarks/run_all.py" + (" " + " ".join(args.argv) if args.argv else "")
    return benchutil.stamp("\n".join(lines), cmd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="full sizes (slow); default: the reduced set")
    ap.add_argument("--only", default=None, help=f"comma list of benchmarks ({', '.join(BENCHES)})")
    ap.add_argument("--skip", default=None, help="comma list of benchmarks to skip")
    ap.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    ap.add_argument("--keep-going", action="store_true", help="continue after a failing benchmark")
    args = ap.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    steps = plan(args)
    if args.dry_run:
        for name, cmd in steps:
            print(f"{name}: {' '.join(cmd)}")
        return 0
    env = dict(os.environ)
    env.setdefault("LOSSENSEMBLE_CACHE", str(Path(tempfile.gettempdir()) / "le-cache"))
    load_before = benchutil.load_average()
    start = time.perf_counter()
    results = []
    failed = False
    for name, cmd in steps:
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=ROOT, env=env)
        seconds = time.perf_counter() - t0
        results.append((name, cmd, seconds, rc))
        print(f"== {name}: exit {rc} after {seconds:.0f} s", flush=True)
        if rc != 0:
            failed = True
            if not args.keep_going:
                break
    total = time.perf_counter() - start
    benchutil.write_section("index", index_text(results, args, total, load_before))
    benchutil.write_section("gpu", GPU_TEXT)
    print(f"BENCHMARKS.md updated ({total / 60:.1f} min)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
