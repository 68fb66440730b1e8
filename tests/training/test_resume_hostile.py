"""``train --resume`` on hand-edited or foreign checkpoints: one-line error naming the problem, nothing written."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from lossensemble.cli.main import main
from lossensemble.training.checkpoint import load_checkpoint, save_checkpoint

#: The suite's tiny run (``tiny_config``) for two epochs of two steps, 8-d heads of two other losses, no NMI.
TINY_EXTRA = ("train.steps_per_epoch=2", "train.epochs=2", "train.eval_every=2", "model.embedding_dim=8",
              "losses=[triplet,binomial]", "eval.nmi=false")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_config):
    run = tmp_path_factory.mktemp("hostile") / "run"
    assert main(["train", "-o", str(run), "--no-progress", *tiny_config.overrides(*TINY_EXTRA)]) == 0
    return run


@pytest.fixture
def run(finished_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


def snapshot(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def edit(run, change_state=None, change_tensors=None):
    last = run / "checkpoints" / "last.safetensors"
    tensors, state = load_checkpoint(last)
    if change_state:
        change_state(state)
    if change_tensors:
        change_tensors(tensors)
    save_checkpoint(last, tensors, state)


def resume_fails(run, capsys):
    before = snapshot(run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("lossensemble: error:") and "Traceback" not in "\n".join(err)
    assert snapshot(run) == before  # nothing overwritten, nothing added
    return err[-1]


def test_foreign_safetensors_file(run, capsys):
    save_file({"weight": torch.zeros(3, 3)}, str(run / "checkpoints" / "last.safetensors"), metadata={"format": "pt"})
    err = resume_fails(run, capsys)
    assert "not a lossensemble checkpoint" in err and "metadata keys: format" in err


def test_metadata_that_is_not_an_object(run, capsys):
    last = run / "checkpoints" / "last.safetensors"
    tensors, _ = load_checkpoint(last)
    save_file(tensors, str(last), metadata={"lossensemble_state": json.dumps([1, 2])})
    err = resume_fails(run, capsys)
    assert "is a JSON list, expected an object" in err


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("epoch"), "metadata lacks 'epoch'"),
        (lambda s: s.update(epoch="two"), "'epoch' is string 'two', expected integer"),
        (lambda s: s.update(global_step=-5), "'global_step' is -5, expected a non-negative integer"),
        (lambda s: s.update(epoch=7), "7 epochs were trained but the run's config has train.epochs=2"),
        (lambda s: s.update(history={"a": 1}), "'history' is object"),
        (lambda s: s.update(head_names=[1, 2]), "'head_names' must be a list of names"),
        (lambda s: s["optimizer"].update(param_groups=[]), "'optimizer.param_groups' must be a non-empty list"),
        (lambda s: s.update(resumable=False, compressed_from="last"), "not a training checkpoint"),
    ],
)
def test_unexpected_metadata(run, capsys, change, message):
    edit(run, change_state=change)
    assert message in resume_fails(run, capsys)


def test_extra_tensor_outside_the_known_groups(run, capsys):
    edit(run, change_tensors=lambda t: t.update({"backdoor.weight": torch.zeros(2)}))
    assert "unexpected tensor 'backdoor.weight'" in resume_fails(run, capsys)


def test_extra_model_tensor(run, capsys):
    edit(run, change_tensors=lambda t: t.update({"model.extra.weight": torch.zeros(2)}))
    err = resume_fails(run, capsys)
    assert "does not match the configured model" in err and "unexpected model.extra.weight" in err


def test_missing_model_tensor(run, capsys):
    def drop(tensors):
        name = next(k for k in tensors if k.startswith("model.heads"))
        del tensors[name]

    edit(run, change_tensors=drop)
    err = resume_fails(run, capsys)
    assert "does not match the configured model" in err and "missing model.heads" in err


def test_optimizer_tensor_for_an_unlisted_parameter(run, capsys):
    edit(run, change_tensors=lambda t: t.update({"optim.9999.exp_avg": torch.zeros(2)}))
    assert "unexpected optimiser tensor 'optim.9999.exp_avg'" in resume_fails(run, capsys)


def test_optimizer_groups_that_drop_a_parameter(run, capsys):
    def shrink(state):
        group = state["optimizer"]["param_groups"][0]
        group["params"] = group["params"][:1]  # the other parameters' moments are now orphans

    edit(run, change_state=shrink)
    err = resume_fails(run, capsys)
    assert "unexpected optimiser tensor 'optim.1.exp_avg'" in err and "lists parameter 1" in err


def test_optimizer_groups_that_do_not_fit_the_model(run, capsys):
    def move(state):
        groups = state["optimizer"]["param_groups"]
        groups[-1]["params"].append(groups[0]["params"].pop())  # same parameters, other group sizes

    edit(run, change_state=move)
    err = resume_fails(run, capsys)
    assert "does not fit this run (ValueError:" in err and "nothing was written" in err


def test_a_valid_checkpoint_still_resumes(run, capsys):
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0  # finished: evaluates again
    assert "ensemble" in capsys.readouterr().out
