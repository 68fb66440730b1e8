"""The command line: help, one-line errors with exit status 2, train + evaluate round trip."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lossensemble.cli.main import main

TINY = [
    "data.image_size=32", "data.options.num_train_classes=16", "data.options.num_test_classes=16",
    "data.batch_size=16", "train.steps_per_epoch=2", "train.epochs=1", "model.embedding_dim=8",
    "losses=[triplet,binomial]", "eval.nmi=false",
]


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("demo", "train", "evaluate", "evaluate-embeddings", "datasets"):
        assert name in out


@pytest.mark.parametrize("sub", ["train", "evaluate", "demo"])
def test_each_subcommand_has_help(sub, capsys):
    with pytest.raises(SystemExit) as exc:
        main([sub, "--help"])
    assert exc.value.code == 0
    assert "usage: lossensemble " + sub in capsys.readouterr().out


def test_unknown_subcommand_is_exit_2_without_traceback():
    res = subprocess.run([sys.executable, "-m", "lossensemble", "frobnicate"], capture_output=True, text=True)
    assert res.returncode == 2
    assert "invalid choice" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "-c", "missing.yaml", "-o", "x"], "config file not found"),
        (["train", "-o", "{tmp}/r", "train.epochz=1"], "train.epochz: unknown key"),
        (["train", "-o", "{tmp}/r", "losses=[tripletz]"], "triplet"),
        (["train"], "-o/--output"),
        (["evaluate", "{tmp}/nothing"], "run folder not found"),
    ],
)
def test_user_errors_are_one_line_exit_2(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("lossensemble: error:") and message in err


def test_train_then_evaluate_gives_the_same_metrics(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "-o", str(run), "--no-progress", *TINY]) == 0
    out = capsys.readouterr().out
    assert "ensemble" in out and "heads.triplet" in out and "run folder:" in out
    assert main(["evaluate", str(run), "--json", str(tmp_path / "m.json")]) == 0
    again = json.loads((tmp_path / "m.json").read_text())
    saved = json.loads((run / "metrics.json").read_text())
    for emb in saved:
        assert again[emb] == pytest.approx(saved[emb], abs=1e-6)
    # a config whose embedding size no longer fits the checkpoint: one-line error, exit 2
    cfg_path = run / "config.yaml"
    cfg_path.write_text(cfg_path.read_text().replace("embedding_dim: 8", "embedding_dim: 16"))
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "does not match" in err and "(8," in err and "(16," in err and "model.embedding_dim" in err
