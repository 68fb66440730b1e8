"""The accuracy study of issue 15: every method against the best single loss, at 1x and at equal compute.

Runs (or, when its folder already holds finished runs, reuses) the study comparison on the
embedded glyphs, the one command a user would type,

    lossensemble compare -c glyphs-compare -o OUT --seeds 0 1 2 --methods study

and tabulates each row's train cost, query cost, Recall@1 and MAP@R (mean ± std over the
seeds) with two paired-by-seed gains: over the validation-chosen best single loss at 1x
(the compare table's own reference) and over ``single-long``, that loss at the long budget
(``--long-factor``, 4x), the reference at equal backbone compute. It also reports how much
the best single loss still gained on the validation classes between the last two evaluations of its long
run (the plateau check behind calling the long budget near convergence) and whether a row with one
backbone and one head's size at query time, trained at no more compute than ``single-long``,
meets the issue's goal (at least +3 R@1 and +7 MAP@R over ``single-long``).

    python benchmarks/bench_study.py --out runs/study            # run or reuse, print the section
    python benchmarks/bench_study.py --out runs/study --write    # also rewrite "Study" in BENCHMARKS.md

The whole study is about 30 minutes per seed on one CPU core (two seeds can run side by side
with ``--seeds``; it resumes where it stopped).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchutil  # noqa: E402

GOAL = {"recall@1": 3.0, "map@r": 7.0}


def _cost(value) -> str:
    return "-" if value is None else f"{value:.3g}x"


def _ms(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.2f} ± {std:.2f}"


def _signed(values) -> str:
    text = _ms(values)
    return text if text == "-" or text.startswith("-") else "+" + text


def _plateau(runs) -> list[float]:
    """Validation MAP@R gained by ``single-long`` between its last two evaluations, per seed."""
    from lossensemble.training.run import read_history

    gains = []
    for run in runs:
        history = Path(run.path) / "history.csv"
        if not history.is_file():
            continue
        rows = [r for r in read_history(history) if any(k.startswith("val/") and k.endswith("/map@r") for k in r)]
        key = next(k for k in rows[-1] if k.startswith("val/heads.") and k.endswith("/map@r"))
        if len(rows) >= 2:
            gains.append(float(rows[-1][key]) - float(rows[-2][key]))
    return gains


def run(args) -> str:
    out = Path(args.out)
    seeds = [int(s) for s in args.seeds]
    command = [sys.executable, "-m", "lossensemble", "compare", "-c", args.config, "-o", str(out), "--seeds",
               *map(str, seeds), "--methods", "study", "--no-progress", "--map", "pca", *args.overrides]
    load_before = benchutil.load_average()
    subprocess.run(command, check=True)
    from lossensemble.cli.common import load_run_config
    from lossensemble.experiments.catalogue import comparison_methods
    from lossensemble.experiments.comparison import run_comparison

    cfg = load_run_config(args.config, list(args.overrides))
    comp = run_comparison(cfg, out, seeds, comparison_methods(cfg, ["study"]), progress=False)  # all reused
    rows = {r["method"]: r for r in json.loads((out / "results.json").read_text())}
    best = json.loads((out / "comparison.json").read_text())["best_single"]
    per_seed = {name: {r.seed: r.metrics for r in res} for name, res in comp.results.items()}

    def gains(name: str, ref: str, metric: str) -> list[float]:
        a, b = per_seed.get(name, {}), per_seed.get(ref, {})
        return [a[s][metric] - b[s][metric] for s in seeds if s in a and s in b]

    lines = [
        f"| method | train cost | query cost | dim | R@1 | MAP@R | Δ R@1 vs {best} (1x) | Δ MAP@R vs {best} (1x) "
        "| Δ R@1 vs single-long | Δ MAP@R vs single-long |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    long_cost = rows.get("single-long", {}).get("train_cost") or 0
    verdicts = []
    for m in comp.methods:
        r = rows.get(m.name)
        if r is None:
            continue
        vals = {k: [per_seed[m.name][s][k] for s in seeds if s in per_seed[m.name]] for k in ("recall@1", "map@r")}
        cost, query = r.get("train_cost"), r.get("query_cost")
        lines.append(
            f"| {m.name}{' *' if m.name == best else ''} | {_cost(cost)} | {_cost(query)} | {r.get('embedding_size')} "
            f"| {_ms(vals['recall@1'])} | {_ms(vals['map@r'])} "
            f"| {'' if m.name == best else _signed(gains(m.name, best, 'recall@1'))} "
            f"| {'' if m.name == best else _signed(gains(m.name, best, 'map@r'))} "
            f"| {'' if m.name == 'single-long' else _signed(gains(m.name, 'single-long', 'recall@1'))} "
            f"| {'' if m.name == 'single-long' else _signed(gains(m.name, 'single-long', 'map@r'))} |")
        if query == 1 and r.get("embedding_size") == cfg.model.embedding_dim and m.name != "single-long" \
                and m.group != "single" and cost is not None and cost <= long_cost + 1e-9:
            g = {k: float(np.mean(gains(m.name, "single-long", k))) for k in GOAL}
            verdicts.append((g["map@r"], m.name, g, cost))
    verdicts.sort(reverse=True)
    plateau = _plateau(comp.results.get("single-long", []))
    body = [
        "Mean ± sample std over seeds " + ", ".join(map(str, seeds)) + "; Δ paired by seed. `*`: the best single "
        "loss chosen on the validation classes (MAP@R). train cost: backbone compute in training as a multiple of "
        "one single-loss run (heads and losses not counted: see s/step in the compare table); query cost: "
        "backbone compute per query as a multiple of one backbone; dim: size of the searched embedding.",
        "",
        *lines,
        "",
    ]
    if plateau:
        body.append(f"- Plateau check: between the last two validation evaluations of `single-long` the best single "
                    f"loss gained {_signed(plateau)} validation MAP@R points (per seed: "
                    + ", ".join(f"{g:+.2f}" for g in plateau) + ").")
    if verdicts:
        top = verdicts[0]
        short = {k: GOAL[k] - top[2][k] for k in GOAL}
        met = all(v <= 0 for v in short.values())
        body.append(
            f"- Goal (one backbone and one head's size at query time, at least +{GOAL['recall@1']:g} R@1 and "
            f"+{GOAL['map@r']:g} MAP@R over the best single loss trained long, at no more backbone compute than "
            f"it): the best such row on MAP@R is `{top[1]}` ({top[3]:.3g}x training), "
            f"{top[2]['recall@1']:+.2f} R@1 / {top[2]['map@r']:+.2f} MAP@R vs single-long: "
            + ("met." if met else "not met (short by " + ", ".join(
                f"{max(v, 0):.2f} {'R@1' if k == 'recall@1' else 'MAP@R'}" for k, v in short.items()) + ")."))
    body.append(f"- Load average (1/5/15 min): {load_before} at the start, {benchutil.load_average()} at the end; "
                "the runs reused from an earlier invocation were trained under other loads.")
    return "\n".join(body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/study", help="compare output folder (reused when it holds runs)")
    ap.add_argument("--config", default="glyphs-compare")
    ap.add_argument("--seeds", nargs="+", default=["0", "1", "2"])
    ap.add_argument("--write", action="store_true", help="rewrite the Study section of BENCHMARKS.md")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (as for compare)")
    args = ap.parse_args(argv)
    return benchutil.publish("study", run(args), "bench_study.py", argv, args.write)


if __name__ == "__main__":
    raise SystemExit(main())
