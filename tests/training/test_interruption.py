"""Killed and signalled training processes: no lost work, same results after --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

#: The tiny run of the test suite, three epochs of six steps: long enough to be killed mid-epoch.
EXTRA = ("train.steps_per_epoch=6", "train.epochs=3", "eval.nmi=false")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lossensemble", "train", "--no-progress", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait_for(predicate, proc, timeout=240.0):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"training exited early ({proc.returncode}): {out[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("timed out waiting for the training process")


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def args(tiny_config) -> list[str]:
    return tiny_config.overrides(*EXTRA)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, args):
    run = tmp_path_factory.mktemp("ref") / "run"
    subprocess.run(_cli("-o", str(run), *args), check=True, env=_env(), capture_output=True, text=True)
    return _metrics(run)


def _assert_same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for emb in a:
        for k in a[emb]:
            assert a[emb][k] == pytest.approx(b[emb][k], abs=1e-6), (emb, k)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_same_metrics(tmp_path, reference, args):
    run = tmp_path / "run"
    history = run / "history.csv"
    proc = subprocess.Popen(_cli("-o", str(run), *args), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    # after the first epoch's checkpoint, kill it somewhere inside the second epoch
    _wait_for(lambda: history.is_file() and (run / "checkpoints" / "last.safetensors").is_file(), proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (run / "metrics.json").exists(), "the run finished before it could be killed"
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [] or all(p.startswith(".") for p in leftovers)
    res = subprocess.run(_cli("--resume", str(run)), env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    _assert_same(_metrics(run), reference)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_saves_a_checkpoint_says_how_to_resume_and_resumes_exactly(tmp_path, reference, args, signum):
    run = tmp_path / "run"
    proc = subprocess.Popen(_cli("-o", str(run), *args), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: (run / "history.csv").is_file(), proc)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:]
    assert "lossensemble train --resume" in out
    assert "Traceback" not in out
    res = subprocess.run(_cli("--resume", str(run)), env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    _assert_same(_metrics(run), reference)
