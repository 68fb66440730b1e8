"""The run folder is never a place where user files get lost: foreign folders, two writers, leftovers, ENOSPC."""

from __future__ import annotations

import errno
import json

import pytest

from lossensemble.errors import UserError
from lossensemble.training import Trainer

#: One step of one loss: these tests are about the run folder, not the training.
ONE_STEP = ("losses=[triplet]", "train.steps_per_epoch=1")


@pytest.fixture()
def tiny(tiny_config):
    return lambda *extra: tiny_config(*ONE_STEP, *extra)


def test_folder_of_other_files_is_refused_and_left_untouched(tmp_path, tiny):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.yaml").write_text("my: own config\n")
    (folder / "history.csv").write_text("my,data\n1,2\n")
    with pytest.raises(UserError, match="not empty and is not a lossensemble run") as exc:
        Trainer(tiny(), folder)
    assert "\n" not in str(exc.value)
    assert (folder / "config.yaml").read_text() == "my: own config\n"
    assert (folder / "history.csv").read_text() == "my,data\n1,2\n"
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "history.csv"]


def test_empty_or_missing_folder_is_fine(tmp_path, tiny):
    (tmp_path / "empty").mkdir()
    Trainer(tiny(), tmp_path / "empty")
    Trainer(tiny(), tmp_path / "new" / "run")
    assert (tmp_path / "new" / "run" / "config.yaml").is_file()


def test_a_second_writer_of_the_same_run_folder_is_refused(tmp_path, tiny):
    fcntl = pytest.importorskip("fcntl")
    run = tmp_path / "run"
    trainer = Trainer(tiny(), run)
    with open(run / ".lock", "a+b") as other:  # another process's lock (flock is per open file)
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UserError, match="is being written by another process"):
            trainer.fit()
        with pytest.raises(UserError, match="is being written by another process"):
            Trainer(tiny(), run)  # nor may a new trainer overwrite its config
        fcntl.flock(other.fileno(), fcntl.LOCK_UN)
    assert not (run / "metrics.json").exists()
    trainer.fit()  # the lock is free again
    assert (run / "metrics.json").is_file()


@pytest.mark.parametrize("override,match", [("data.name=no_such_dataset", "no_such_dataset"),
                                            ("data.batch_size=128", "data.batch_size")])
def test_failed_setup_leaves_no_run_folder(tmp_path, override, match, tiny):
    extra = [override, "data.m_per_class=2"] if "batch_size" in override else [override]
    with pytest.raises(UserError, match=match):
        Trainer(tiny(*extra), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_stale_temp_files_are_removed_on_start_and_on_resume(tmp_path, tiny):
    run = tmp_path / "run"
    Trainer(tiny(), run)
    stale = [run / ".history.csv.abc123.tmp", run / "checkpoints" / ".last.safetensors.xyz.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    Trainer(tiny(), run)  # a run that never checkpointed: started again
    assert not any(p.exists() for p in stale)
    Trainer(tiny(), run).fit()
    for p in stale:
        p.write_bytes(b"half")
    Trainer(None, run, resume=True)
    assert not any(p.exists() for p in stale)


def test_resume_of_a_finished_run_keeps_the_post_hoc_compressed_metrics(tmp_path, tiny):
    run = tmp_path / "run"
    Trainer(tiny(), run).fit()
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["compressed"] = {"recall@1": 12.5}
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "compression.json").write_text(json.dumps({"mode": "post-hoc"}))
    Trainer(None, run, resume=True).fit()
    again = json.loads((run / "metrics.json").read_text())
    assert again["compressed"] == {"recall@1": 12.5}
    assert set(again) == {"ensemble", "heads.triplet", "compressed"}


def test_full_disk_while_checkpointing_says_how_much_space_and_what_is_kept(tmp_path, monkeypatch, tiny):
    import lossensemble.training.checkpoint as checkpoint

    run = tmp_path / "run"
    trainer = Trainer(tiny("train.epochs=2"), run)
    trainer.fit()
    last = run / "checkpoints" / "last.safetensors"
    before = last.read_bytes()

    def full(path, data, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", full)
    with pytest.raises(UserError) as exc:
        trainer._save_state(last)
    msg = str(exc.value)
    assert "\n" not in msg and "no space left" in msg.lower()
    assert "bytes" in msg and str(last) in msg and "kept" in msg
    assert last.read_bytes() == before
    # no checkpoint yet: the message does not claim one is kept
    with pytest.raises(UserError) as exc:
        checkpoint.save_checkpoint(tmp_path / "other" / "last.safetensors", {}, {})
    assert "kept" not in str(exc.value)


def test_other_write_errors_are_not_disguised_as_a_full_disk(tmp_path, monkeypatch):
    import lossensemble.training.checkpoint as checkpoint

    def denied(path, data, *a, **k):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", denied)
    with pytest.raises(OSError) as exc:
        checkpoint.save_checkpoint(tmp_path / "last.safetensors", {}, {})
    assert not isinstance(exc.value, UserError)


def test_evaluate_json_into_a_folder_is_refused_before_evaluating(tmp_path, capsys, monkeypatch):
    from lossensemble.cli.main import main
    import lossensemble.training as training

    def no_load(*a, **k):
        raise AssertionError("the run was loaded before -o was checked")

    monkeypatch.setattr(training, "load_run", no_load)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["evaluate", str(tmp_path / "run"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and len(err.strip().splitlines()) == 1
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["evaluate", str(tmp_path / "run"), "-o", str(blocker / "m.json")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert blocker.read_text() == "x"
