"""The trainer on tiny glyph problems: weights, single head, resume, NaN handling, run folder."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lossensemble.errors import UserError
from lossensemble.experiments.embeddings import run_test_embeddings
from lossensemble.training import Trainer, TrainingDiverged
from lossensemble.training.checkpoint import load_checkpoint
from lossensemble.training.run import read_history

#: What these tests trained before the shared tiny config: two epochs of the four default losses.
ALL_LOSSES = "losses=[classification,triplet,binomial,proxy_nca]"


def test_learned_weights_stay_above_floor_and_sum_near_one(tmp_path, tiny_config):
    cfg = tiny_config(ALL_LOSSES, "train.epochs=2", "weighting.scheme=learned", "weighting.scale=running_mean",
                      "train.lr.weights=0.05", "weighting.prior=[2,1,2,3]")
    trainer = Trainer(cfg, tmp_path / "run")
    w0 = trainer.weighting.weights().clone()
    assert torch.allclose(w0, torch.tensor([2, 1, 2, 3]) / 8.0, atol=1e-6)
    trainer.fit()
    w = trainer.weighting.weights()
    m = len(cfg.losses)
    assert not torch.allclose(w, w0), "the learned weights should move with a large weight lr"
    assert bool((w >= 1 / (4 * m) - 1e-6).all())
    assert abs(float(w.sum()) - 1.0) < 0.05
    hist = read_history(tmp_path / "run" / "history.csv")
    assert len(hist) == 2
    for name in ("classification", "triplet", "binomial", "proxy_nca"):
        assert f"loss_{name}" in hist[0] and f"weight_{name}" in hist[0] and f"scale_{name}" in hist[0]
    # running-mean scaling is on: the factors differ from 1
    assert any(abs(hist[-1][f"scale_{n}"] - 1.0) > 1e-3 for n in ("triplet", "proxy_nca"))


def test_run_folder_contents_and_metric_values(tmp_path, tiny_config, retrieval_oracle, nmi_oracle):
    cfg = tiny_config()
    metrics = Trainer(cfg, tmp_path / "run").fit()
    root = tmp_path / "run"
    for name in ("config.yaml", "history.csv", "metrics.json", "summary.json", "train.log",
                 "checkpoints/last.safetensors", "checkpoints/best.safetensors"):
        assert (root / name).is_file(), name
    saved = json.loads((root / "metrics.json").read_text())
    assert set(saved) == {"ensemble", "heads.triplet", "heads.proxy_nca"}
    for emb in saved.values():
        assert {"recall@1", "recall@2", "recall@4", "recall@8", "knn_acc", "map@r", "r_precision", "nmi"} <= set(emb)
    for emb in saved:
        assert saved[emb] == pytest.approx(metrics[emb])
    # The reported values are those of the saved model's test embeddings, recomputed by brute force.
    test = run_test_embeddings(root, "last")
    assert len(test.labels) == 16 * 16 and len(set(test.labels.tolist())) == 16
    for emb, reported in saved.items():
        expected = retrieval_oracle(test.embeddings[emb], test.labels)
        for key, value in expected.items():
            # float32 search vs float64 here: at most one query's neighbour may flip on a near-tie
            assert reported[key] == pytest.approx(value, abs=100 / len(test.labels) + 1e-6), (emb, key)
        assert reported["recall@1"] <= reported["recall@2"] <= reported["recall@4"] <= reported["recall@8"]
        assert nmi_oracle.check(reported["nmi"], test.embeddings[emb], test.labels), emb
    summary = json.loads((root / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["embedding_sizes"]["ensemble"] == 32


def test_single_head_model_trains_through_the_same_code(tmp_path, tiny_config):
    cfg = tiny_config("losses=[binomial]")
    trainer = Trainer(cfg, tmp_path / "run")
    before = [p.detach().clone() for p in trainer.model.parameters()]
    metrics = trainer.fit()
    assert set(metrics) == {"ensemble", "heads.binomial"}
    # one head with weight 1: the ensemble embedding is that head
    assert metrics["ensemble"] == pytest.approx(metrics["heads.binomial"])
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))


def test_resume_reproduces_an_uninterrupted_run(tmp_path, tiny_config):
    cfg = tiny_config("losses=[classification,triplet]", "train.epochs=2", "weighting.scheme=learned",
               "train.lr.weights=0.01")
    full = Trainer(cfg, tmp_path / "full").fit()

    part = Trainer(cfg, tmp_path / "part")
    part.cfg.train.epochs = 1  # stop after the first epoch, as if killed before the second
    part.fit()
    resumed = Trainer(None, tmp_path / "part", resume=True)
    assert resumed.epoch == 1
    again = resumed.fit()
    for emb in full:
        for k in full[emb]:
            assert again[emb][k] == pytest.approx(full[emb][k], abs=1e-6), (emb, k)
    ta, _ = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.safetensors")
    tb, _ = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.safetensors")
    for k in ta:
        if k.startswith(("model.", "weighting.")):
            assert torch.allclose(ta[k].float(), tb[k].float(), atol=1e-6), k


def test_mid_epoch_interrupt_saves_and_resumes_exactly(tmp_path, tiny_config):
    import signal

    from lossensemble.training import TrainingInterrupted

    cfg = tiny_config("losses=[triplet]", "train.steps_per_epoch=4")
    full = Trainer(cfg, tmp_path / "full").fit()

    trainer = Trainer(cfg, tmp_path / "part")
    original = trainer.train_step
    calls = {"n": 0}

    def step_then_signal(images, labels):
        out = original(images, labels)
        calls["n"] += 1
        if calls["n"] == 2:
            trainer._stop.set(signal.SIGTERM)  # what the SIGTERM handler does
        return out

    trainer.train_step = step_then_signal
    with pytest.raises(TrainingInterrupted, match="checkpoint saved") as exc:
        trainer.fit()
    assert exc.value.run_dir == tmp_path / "part"
    _, state = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.safetensors")
    assert state["step_in_epoch"] == 2 and state["epoch"] == 0
    again = Trainer(None, tmp_path / "part", resume=True).fit()
    assert again["ensemble"] == pytest.approx(full["ensemble"], abs=1e-6)
    rows_full = read_history(tmp_path / "full" / "history.csv")
    rows_part = read_history(tmp_path / "part" / "history.csv")
    assert rows_part[0]["loss_triplet"] == pytest.approx(rows_full[0]["loss_triplet"], rel=1e-5)


def test_nan_loss_stops_with_a_message_naming_the_loss_and_keeps_the_checkpoint(tmp_path, tiny_config):
    cfg = tiny_config("train.epochs=2")
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.cfg.train.epochs = 1
    trainer.fit()
    good = (tmp_path / "run" / "checkpoints" / "last.safetensors").read_bytes()

    trainer = Trainer(None, tmp_path / "run", resume=True)
    trainer.cfg.train.epochs = 2
    real = trainer.losses[1].forward
    trainer.losses[1].forward = lambda e, y: real(e, y) * float("nan")
    with pytest.raises(TrainingDiverged, match="proxy_nca"):
        trainer.fit()
    assert (tmp_path / "run" / "checkpoints" / "last.safetensors").read_bytes() == good


def test_non_finite_gradients_skip_the_step_without_touching_weights(tmp_path, tiny_config):
    cfg = tiny_config("losses=[triplet]", "train.steps_per_epoch=2")
    trainer = Trainer(cfg, tmp_path / "run")
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.model.heads["triplet"].weight.register_hook(lambda g: g * float("inf"))
    trainer.fit()
    assert trainer.skipped_steps == 2
    after = list(trainer.model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert all(math.isfinite(float(p.detach().abs().sum())) for p in after)


def test_ten_non_finite_gradient_steps_in_a_row_stop_the_run(tmp_path, tiny_config):
    cfg = tiny_config("losses=[triplet]", "train.steps_per_epoch=12")
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.model.heads["triplet"].weight.register_hook(lambda g: g * float("nan"))
    with pytest.raises(TrainingDiverged, match="10 consecutive steps had non-finite gradients"):
        trainer.fit()
    assert trainer.skipped_steps == 10


def test_existing_run_folder_needs_resume_and_resume_needs_a_checkpoint(tmp_path, tiny_config):
    cfg = tiny_config("losses=[triplet]", "train.steps_per_epoch=1")
    Trainer(cfg, tmp_path / "run").fit()
    with pytest.raises(UserError, match="already holds a run; resume it") as exc:
        Trainer(cfg, tmp_path / "run")
    assert "--" not in str(exc.value)  # the library speaks its own terms; the CLI adds its flags
    with pytest.raises(UserError, match="no checkpoint"):
        Trainer(None, tmp_path / "empty", resume=True)


def test_read_only_output_folder_fails_before_training(tmp_path, tiny_config):
    import os

    if os.geteuid() == 0:
        # root ignores permission bits: use a path under a regular file instead
        blocker = tmp_path / "file"
        blocker.write_text("x")
        target = blocker / "run"
    else:  # pragma: no cover - CI runs as root
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = ro / "run"
    with pytest.raises(UserError, match="output folder"):
        Trainer(tiny_config(), target)


def test_batch_larger_than_the_classes_allow_is_a_clear_error(tmp_path, tiny_config):
    with pytest.raises(UserError, match="data.batch_size"):
        Trainer(tiny_config("data.batch_size=128", "data.m_per_class=2"), tmp_path / "run")


def test_gradnorm_weighting_trains_and_keeps_weights_normalised(tmp_path, tiny_config):
    cfg = tiny_config("losses=[classification,triplet]", "weighting.scheme=gradnorm",
               "train.lr.weights=0.05")
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.fit()
    w = trainer.weighting.weights()
    assert abs(float(w.sum()) - 1.0) < 1e-5
    assert not torch.allclose(w, torch.full_like(w, 0.5)), "gradnorm should move the weights"


def test_unknown_loss_is_reported_before_any_data_is_built(tmp_path, monkeypatch, tiny_config):
    import lossensemble.data as data

    def no_data(*a, **k):
        raise AssertionError("data was built before the loss config was checked")

    monkeypatch.setattr(data, "build_dataset", no_data)
    with pytest.raises(UserError, match="did you mean 'triplet'"):
        Trainer(tiny_config("losses=[tripplet]"), tmp_path / "run")
