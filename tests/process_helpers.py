"""Helpers of the tests that start processes (imported by name: tests/ is on sys.path)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_train(run: Path, overrides: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=2 -m lossensemble train -o RUN --no-progress OVERRIDES`` on loopback, one thread each."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", "-m", "lossensemble", "train", "-o", str(run), "--no-progress", *overrides]
    return subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=timeout)
