"""Joint compression through the Trainer, resume, post-hoc compression of a run, export of a run."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch

from compression_helpers import NO_NMI, glyph_like_images
from lossensemble.inference import export_run, load_model
from lossensemble.compression import compress_run, compressed_checkpoint_path
from lossensemble.errors import UserError
from lossensemble.experiments.embeddings import embed_test_split
from lossensemble.training import Trainer
from lossensemble.training.checkpoint import load_checkpoint
from lossensemble.training.loading import load_run


def test_joint_training_reports_compressed_and_saves_its_state(joint_run, retrieval_oracle):
    metrics = json.loads((joint_run / "metrics.json").read_text())
    assert {"compressed", "ensemble", "heads.triplet", "heads.proxy_nca"} <= set(metrics)
    # Every reported embedding's metrics, recomputed by brute force from the saved model's test embeddings.
    loaded = load_run(joint_run, device="cpu")
    test = embed_test_split(loaded.embed_fn(), loaded.cfg, loaded.device)
    assert test.embeddings["compressed"].shape == (16 * 16, 16)
    for emb in ("compressed", "ensemble", "heads.triplet", "heads.proxy_nca"):
        expected = retrieval_oracle(test.embeddings[emb], test.labels)
        for key, value in expected.items():
            # float32 search vs float64 here: at most one query's neighbour may flip on a near-tie
            assert metrics[emb][key] == pytest.approx(value, abs=100 / len(test.labels) + 1e-6), (emb, key)
    tensors, state = load_checkpoint(joint_run / "checkpoints" / "last.safetensors")
    assert state["compressor"] == {"variant": "mlp", "in_dim": 32, "dim": 16, "hidden": 32,
                                   "objective": "frobenius"}
    assert any(k.startswith("model.compressor.") for k in tensors)
    assert any(k.startswith("compression.optim.") for k in tensors)
    history = (joint_run / "history.csv").read_text()
    assert "compress_loss" in history.splitlines()[0]


def test_resume_restores_the_compressor_optimiser(joint_run, tmp_path, tiny_config):
    run = tmp_path / "run"
    shutil.copytree(joint_run, run)
    tensors, _ = load_checkpoint(run / "checkpoints" / "last.safetensors")
    trainer = Trainer(tiny_config(NO_NMI, "compression.enabled=true"), run, resume=True)
    opt = trainer.compression.trainer.optimizer
    restored = trainer.compression.state_tensors()
    saved = {k: v for k, v in tensors.items() if k.startswith("compression.optim.")}
    assert set(restored) == set(saved) and saved
    for k in saved:
        assert torch.equal(restored[k], saved[k]), k
    assert all(len(s) > 0 for s in opt.state.values())
    # the compressor's weights come back with the model
    comp = dict(trainer.model.compressor.state_dict())
    for k, v in comp.items():
        assert torch.equal(v, tensors[f"model.compressor.{k}"])


def test_joint_compression_never_changes_the_ensemble(tmp_path, tiny_config):
    """With the same seed, the backbone and heads end identical with and without joint compression."""
    a = Trainer(tiny_config(NO_NMI, "eval.max_items=32"), tmp_path / "a")
    b = Trainer(tiny_config(NO_NMI, "eval.max_items=32", "compression.enabled=true"), tmp_path / "b")
    a.fit()
    b.fit()
    sa, sb = a.model.state_dict(), b.model.state_dict()
    for k, v in sa.items():
        assert torch.equal(v, sb[k]), k


def test_post_hoc_compression_and_export_of_the_run(joint_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(joint_run, run)
    last = run / "checkpoints" / "last.safetensors"
    digest = hashlib.sha256(last.read_bytes()).hexdigest()
    metrics = compress_run(run, variant="direct", objective="softmax", dim=8, epochs=1, min_steps_per_epoch=20)
    assert {"compressed", "ensemble", "heads.triplet"} <= set(metrics)
    assert hashlib.sha256(last.read_bytes()).hexdigest() == digest, "the resume checkpoint must stay untouched"
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["compressed"] == pytest.approx(metrics["compressed"])
    info = json.loads((run / "compression.json").read_text())
    assert info["compressor"]["variant"] == "direct" and info["compressor"]["dim"] == 8
    _, state = load_checkpoint(compressed_checkpoint_path(run))
    assert state["compressor"]["in_dim"] == 256 and state["compressed_from"] == "last"

    out = export_run(run, tmp_path / "model")  # defaults: compressed checkpoint, compressed embedding
    spec = json.loads((out / "config.json").read_text())
    assert spec["embedding"] == "compressed" and spec["heads"] == [] and spec["data_kind"] == "glyph"
    assert spec["output_dim"] == 8 and spec["source"]["checkpoint"] == "compressed"
    loaded = load_model(out)
    ref = load_run(run, checkpoint=str(compressed_checkpoint_path(run)), device="cpu")
    x = glyph_like_images(2, 2, seed=9)[0]
    with torch.no_grad():
        assert torch.allclose(loaded(x), ref.embed_fn()(x)["compressed"], atol=1e-6)

    head = export_run(run, tmp_path / "head", embedding="heads.triplet", checkpoint="last")
    with torch.no_grad():
        assert torch.allclose(load_model(head)(x), ref.embed_fn()(x)["heads.triplet"], atol=1e-6)
    with pytest.raises(UserError, match="checkpoint"):
        export_run(run, tmp_path / "x", checkpoint="first")
