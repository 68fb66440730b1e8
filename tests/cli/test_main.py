"""The command line: help, one-line errors with exit status 2, train + evaluate round trip."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lossensemble.cli.main import main

#: The suite's tiny run (``tiny_config``) with two steps, 8-d heads of two other losses, no NMI.
TINY_EXTRA = ("train.steps_per_epoch=2", "model.embedding_dim=8", "losses=[triplet,binomial]", "eval.nmi=false")


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


def test_train_then_evaluate_gives_the_same_metrics(tmp_path, capsys, tiny_config):
    run = tmp_path / "run"
    assert main(["train", "-o", str(run), "--no-progress", *tiny_config.overrides(*TINY_EXTRA)]) == 0
    out = capsys.readouterr().out
    assert "ensemble" in out and "heads.triplet" in out and "run folder:" in out
    assert main(["evaluate", str(run), "-o", str(tmp_path / "m.json")]) == 0
    again = json.loads((tmp_path / "m.json").read_text())
    saved = json.loads((run / "metrics.json").read_text())
    for emb in saved:
        assert again[emb].pop("warnings") == []
        assert again[emb] == pytest.approx(saved[emb], abs=1e-6)
    # a config whose embedding size no longer fits the checkpoint: one-line error, exit 2
    cfg_path = run / "config.yaml"
    cfg_path.write_text(cfg_path.read_text().replace("embedding_dim: 8", "embedding_dim: 16"))
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "does not match" in err and "(8," in err and "(16," in err and "model.embedding_dim" in err


# ----------------------------------------------------------------------------- one tiny run, shared


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_config):
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "-o", str(run), "--no-progress", *tiny_config.overrides(*TINY_EXTRA)]) == 0
    return run


def test_evaluate_json_goes_to_stdout_and_output_to_a_file(tiny_run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(tiny_run), "--json", "--no-progress"]) == 0
    data = json.loads(capsys.readouterr().out)  # stdout is only the JSON
    assert set(data) == {"heads.triplet", "heads.binomial", "ensemble"}
    assert all(isinstance(v["warnings"], list) for v in data.values())
    out = tmp_path / "m.json"
    assert main(["evaluate", str(tiny_run), "--no-progress", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "ensemble" in captured.out and "R@1" in captured.out  # the table
    assert json.loads(out.read_text())["ensemble"]["recall@1"] == pytest.approx(data["ensemble"]["recall@1"])
    (tmp_path / "keep.txt").write_text("not json")
    assert main(["evaluate", str(tiny_run), "-o", str(tmp_path / "keep.txt")]) == 2
    assert "not a JSON file" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "not json"


def test_evaluate_shows_the_compressed_embedding_after_compress(tiny_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["compress", str(run), "--epochs", "1", "--no-progress"]) == 0
    saved = json.loads((run / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--no-progress"]) == 0  # default: the last checkpoint
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert "compressed" in data and "compressed.safetensors" in captured.err
    assert data["compressed"]["recall@1"] == pytest.approx(saved["compressed"]["recall@1"], abs=1e-6)
    assert data["ensemble"]["recall@1"] == pytest.approx(saved["ensemble"]["recall@1"], abs=1e-6)
    # compressed from "last": --checkpoint best of a one-epoch run is another file, so no compressed row
    assert main(["evaluate", str(run), "--json", "--no-progress", "--checkpoint", "best"]) == 0
    captured = capsys.readouterr()
    assert "compressed" not in json.loads(captured.out)


def test_config_by_name_says_which_file_it_read(tmp_path, capsys):
    assert main(["train", "-c", "glyphs-demo", "-o", str(tmp_path / "r"), "train.epochz=1"]) == 2
    err = capsys.readouterr().err
    assert "lossensemble: config glyphs-demo: read " in err and "glyphs-demo.yaml" in err
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("seed: 1\n")
    assert main(["train", "-c", str(cfg), "-o", str(tmp_path / "r"), "train.epochz=1"]) == 2
    assert "config" not in capsys.readouterr().err.split("error:")[0]  # a path given: nothing to say


@pytest.mark.parametrize("sub", ["train", "compare", "demo", "evaluate", "embed", "index", "compress"])
def test_long_commands_have_no_progress(sub, capsys):
    with pytest.raises(SystemExit):
        main([sub, "--help"])
    assert "--no-progress" in capsys.readouterr().out


def test_progress_is_off_without_a_terminal_or_with_no_progress(monkeypatch):
    import argparse

    from lossensemble.cli.common import progress_enabled, show_progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert progress_enabled(argparse.Namespace(no_progress=False)) is False
    assert show_progress(argparse.Namespace(no_progress=False)) is False
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert progress_enabled(argparse.Namespace(no_progress=False)) is None  # the config decides
    assert show_progress(argparse.Namespace(no_progress=False)) is True
    assert progress_enabled(argparse.Namespace(no_progress=True)) is False
    assert show_progress(argparse.Namespace(no_progress=True)) is False


def test_evaluate_a_training_split_with_the_evaluation_transform(tiny_run, capsys):
    runs = []
    for _ in range(2):  # augmentation would make two evaluations of the training split differ
        capsys.readouterr()
        assert main(["evaluate", str(tiny_run), "--split", "train", "--json", "--no-progress"]) == 0
        runs.append(json.loads(capsys.readouterr().out))
    assert runs[0] == runs[1]
