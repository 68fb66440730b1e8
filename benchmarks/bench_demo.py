"""Demo wall time: ``lossensemble demo`` end to end and its budget split (issue 9, point 5).

Runs the README's main command as a subprocess into a fresh folder, with a fresh data
cache by default (so the first-use glyph rendering is counted, as a new user sees it),
and timestamps every line it prints. The split per run comes from those timestamps
(``[i/n]`` lines start a run; the trainer's ``data ...`` log line ends its setup) and
from each run folder's ``summary.json`` (``train_seconds``, training steps only):

* setup = data loading/generation + model building (start of run to the ``data`` line);
* training = ``train_seconds``;
* evaluation (+ checkpoints) = the rest of the run;
* report = after the last run (table, plot).

    python benchmarks/bench_demo.py                  # the full demo (under 10 minutes is the target)
    python benchmarks/bench_demo.py --quick          # train.epochs=1: a reduced demo for make bench
    python benchmarks/bench_demo.py --write          # also rewrite the BENCHMARKS.md section
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchutil  # noqa: E402

SECTION = "demo"
RUN_LINE = re.compile(r"^\[(\d+)/(\d+)\] (.*) -> (.*)$")
DATA_LINE = re.compile(r"lossensemble\.training: data ")


def run_demo(out: Path, cache: Path | None, overrides: list[str], timeout: float | None = None):
    env = dict(os.environ)
    if cache is not None:
        env["LOSSENSEMBLE_CACHE"] = str(cache)
    cmd = [sys.executable, "-m", "lossensemble", "demo", "-o", str(out), "--no-progress", *overrides]
    start = time.perf_counter()
    lines: list[tuple[float, str]] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.perf_counter() - start, line.rstrip("\n")))
        print(f"[{lines[-1][0]:7.1f}s] {lines[-1][1]}", flush=True)
    rc = proc.wait(timeout=timeout)
    total = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"demo failed with exit code {rc}")
    return total, lines


def split(out: Path, total: float, lines: list[tuple[float, str]]) -> list[dict]:
    starts = [(t, m.group(3), Path(m.group(4))) for t, s in lines if (m := RUN_LINE.match(s))]
    data_times = [t for t, s in lines if DATA_LINE.search(s)]
    rows = []
    for i, (t0, name, folder) in enumerate(starts):
        if i + 1 < len(starts):
            t1 = starts[i + 1][0]
        else:  # the last run ends with the trainer's "finished" log line; the report follows
            t1 = max((t for t, s in lines if t >= t0 and "finished: results in" in s), default=total)
        setup_end = next((t for t in data_times if t0 <= t <= t1), t0)
        summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").is_file() else {}
        train = float(summary.get("train_seconds", 0.0))
        wall = t1 - t0
        rows.append({"run": name, "wall": wall, "setup": setup_end - t0, "train": train,
                     "eval": max(0.0, wall - (setup_end - t0) - train), "steps": summary.get("steps", 0),
                     "s_per_step": summary.get("seconds_per_step", 0.0)})
    return rows


def describe(out: Path) -> tuple[str, int]:
    """The demo's settings from a run folder's saved config, and its epochs."""
    cfgs = [json.loads(p.read_text()).get("config", {}) for p in sorted(out.glob("*/summary.json"))]
    if not cfgs:
        return "", 0
    c = cfgs[0]
    d, m, t = c.get("data", {}), c.get("model", {}), c.get("train", {})
    text = (f"{len(cfgs)} runs, {m.get('backbone')} at {d.get('image_size')} px, batch {d.get('batch_size')}, "
            f"{t.get('epochs')} epochs x {t.get('steps_per_epoch')} steps, {t.get('threads')} torch thread(s), "
            f"{d.get('num_workers')} data worker(s)")
    return text, int(t.get("epochs") or 0)


def to_markdown(total: float, rows: list[dict], args, load_before: str, load_after: str, settings: str) -> str:
    lines = [
        ("Reduced demo (`train.epochs=1`, for `make bench`): the full demo trains every run for the packaged "
         "config's epochs; multiply the training column by that number for the full figure.\n\n"
         if args.quick else "")
        + f"`lossensemble demo` (packaged glyphs-demo config: {settings})"
        f"{', fresh data cache (glyph rendering included)' if not args.reuse_cache else ', warm data cache'}.",
        "",
        f"**Total wall time: {total:.0f} s ({total / 60:.1f} min)** (target < 10 min).",
        "",
        "| run | wall (s) | setup: data + model (s) | training (s) | evaluation + checkpoints (s) | steps | s/step |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['run']} | {r['wall']:.1f} | {r['setup']:.1f} | {r['train']:.1f} | {r['eval']:.1f} | "
                     f"{r['steps']} | {r['s_per_step']:.3f} |")
    s = {k: sum(r[k] for r in rows) for k in ("wall", "setup", "train", "eval")}
    other = total - s["wall"]
    med = statistics.median(r["wall"] for r in rows)
    est = s["setup"] + len(rows) * med + other
    lines.append(f"| **all runs** | {s['wall']:.1f} | {s['setup']:.1f} | {s['train']:.1f} | {s['eval']:.1f} | | |")
    lines += [
        "",
        f"- Budget split of the total: setup (data generation/loading, models) {100 * s['setup'] / total:.0f}%, "
        f"training {100 * s['train'] / total:.0f}%, evaluation + checkpoints {100 * s['eval'] / total:.0f}%, "
        f"start-up and final report {100 * other / total:.0f}% ({other:.1f} s).",
        f"- At the pace of the median run ({med:.1f} s; the least loaded runs are the most representative), the "
        f"total would be {est:.0f} s ({est / 60:.1f} min): setup + {len(rows)} x median run + start-up/report.",
        f"- Load average (1/5/15 min) before: {load_before}; after: {load_after}. Other sessions share the 2 cores: "
        "with a 1-minute load above 2 the figure is pessimistic.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="train.epochs=1 (reduced demo)")
    ap.add_argument("--reuse-cache", action="store_true", help="keep $LOSSENSEMBLE_CACHE (no data generation)")
    ap.add_argument("--output", default=None, help="demo output folder (default: a fresh temporary one)")
    ap.add_argument("--write", action="store_true", help="rewrite the Demo wall time section of BENCHMARKS.md")
    ap.add_argument("overrides", nargs="*", help="extra config overrides passed to the demo")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    out = Path(args.output) if args.output else tmp / "demo-out"
    if out.exists():
        raise SystemExit(f"{out} exists: the demo would reuse finished runs; choose a fresh folder")
    cache = None if args.reuse_cache else tmp / "cache"
    overrides = (["train.epochs=1"] if args.quick else []) + list(args.overrides)
    load_before = benchutil.load_average()
    try:
        total, lines = run_demo(out, cache, overrides)
        rows = split(out, total, lines)
        settings, _ = describe(out)
    finally:
        if not args.output:
            shutil.rmtree(tmp, ignore_errors=True)
    body = to_markdown(total, rows, args, load_before, benchutil.load_average(), settings)
    return benchutil.publish(SECTION, body, "bench_demo.py", argv, args.write)


if __name__ == "__main__":
    raise SystemExit(main())
