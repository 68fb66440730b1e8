"""The scripts in examples/ run end to end with tiny settings (as a user would start them)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_plain_loop_trains_and_evaluates():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "plain_loop.py"), "--steps", "3", "--classes", "8", "--batch-size", "16"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    steps = re.findall(r"^step (\d+): total ([0-9.]+) \((.*)\)$", result.stdout, flags=re.M)
    assert [s[0] for s in steps] == ["1", "3"], result.stdout
    assert all(name in steps[0][2] for name in ("triplet", "proxy_nca", "pml:MultiSimilarityLoss"))
    metrics = ast.literal_eval(result.stdout.split("test metrics:", 1)[1].strip())
    assert 0.0 < metrics["recall@1"] <= 100.0 and "map@r" in metrics


def test_plain_loop_rejects_a_bad_loss_name_in_one_line():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "plain_loop.py"), "--steps", "1", "--classes", "8", "--batch-size", "16",
         "--losses", "triplet,tripplet"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "did you mean 'triplet'" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
