"""The CLI starts fast: ``--help`` of the command and of every subcommand imports no heavy library.

Guards the import list (not a time: these machines are shared): torch, torchvision, faiss,
scikit-learn, scipy, matplotlib, pytorch-metric-learning, Pillow, onnxruntime and FastAPI are
imported only by the subcommand that runs (numpy, about 0.1 s, is allowed).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lossensemble.cli.main import SUBCOMMANDS

HEAVY = ("torch", "torchvision", "faiss", "sklearn", "scipy", "matplotlib", "pytorch_metric_learning",
         "onnxruntime", "onnx", "fastapi", "uvicorn", "timm", "PIL")

PROBE = """
import json, sys
from lossensemble.cli.main import main
try:
    main({argv!r})
except SystemExit:
    pass
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps(heavy))
"""


def imported_after(argv: list[str]) -> list[str]:
    code = PROBE.format(argv=argv, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_help_imports_nothing_heavy():
    assert imported_after(["--help"]) == []


@pytest.mark.parametrize("command", [name.replace("_", "-") for name in SUBCOMMANDS])
def test_subcommand_help_imports_nothing_heavy(command):
    assert imported_after([command, "--help"]) == []


def test_version_and_bad_command_import_nothing_heavy():
    assert imported_after(["--version"]) == []
    assert imported_after(["no-such-command"]) == []
