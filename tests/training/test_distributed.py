"""Multi-process training on CPU (gloo): gathered losses, identical ranks, torchrun CLI, helpers without a group.

Every multi-process test starts two processes on 127.0.0.1 with a free port and
one torch thread each.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from process_helpers import free_port, torchrun_train

from lossensemble import distributed

WORLD = 2
#: Added to the shared tiny config: learned loss weights, so that the ranks must agree on them too.
LEARNED = ("weighting.scheme=learned", "train.lr.weights=0.01")


def _join(rank: int, port: int) -> None:
    """Set torchrun's environment for ``rank`` and join the gloo group through the library."""
    os.environ.update({
        "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(WORLD),
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
    })
    torch.set_num_threads(1)
    ctx = distributed.setup_from_env(torch.device("cpu"))
    assert (ctx.rank, ctx.world_size, ctx.active) == (rank, WORLD, True)


# ---------------------------------------------------------------------- gathered loss
def _union_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    emb = torch.nn.functional.normalize(torch.randn(30, 8, generator=g), dim=1)
    labels = torch.arange(30) % 6
    return emb, labels


SPLIT = (16, 14)  # unequal local batches exercise the padding path


def _gather_worker(rank: int, port: int, out: str) -> None:
    from lossensemble.losses import build_loss

    _join(rank, port)
    emb, labels = _union_batch()
    start = sum(SPLIT[:rank])
    results = {}
    for name in ("triplet", "multi_similarity"):
        loss = build_loss(name, num_classes=6, embedding_dim=8)
        local = emb[start : start + SPLIT[rank]].clone().requires_grad_(True)
        value = distributed.gathered_loss(loss, local, labels[start : start + SPLIT[rank]])
        value.backward()
        results[name] = (value.detach(), local.grad)
    torch.save(results, Path(out) / f"rank{rank}.pt")
    distributed.teardown()


def test_gathered_loss_equals_one_process_on_the_union(tmp_path):
    """Value: identical to the union loss; gradient of the local rows: world_size x the union gradient."""
    from lossensemble.losses import build_loss

    mp.spawn(_gather_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    emb, labels = _union_batch()
    for name in ("triplet", "multi_similarity"):
        union = emb.clone().requires_grad_(True)
        expected = build_loss(name, num_classes=6, embedding_dim=8)(union, labels)
        expected.backward()
        assert expected.item() > 0
        start = 0
        for rank in range(WORLD):
            value, grad = torch.load(tmp_path / f"rank{rank}.pt")[name]
            torch.testing.assert_close(value, expected.detach())
            torch.testing.assert_close(grad, WORLD * union.grad[start : start + SPLIT[rank]])
            start += SPLIT[rank]


# ---------------------------------------------------------------------- two-rank training
def _dump(trainer, metrics, path: Path) -> None:
    """Save what must agree across ranks: all state tensors, the weights, metrics and history."""
    state = {k: v.detach().clone() for k, v in trainer._state_tensors().items()}
    state["weights"] = trainer.weighting.weights().clone()
    metrics = json.loads(json.dumps(metrics))  # plain data, as metrics.json holds it (torch.load takes no classes)
    torch.save({"state": state, "metrics": metrics, "history": trainer.history}, path)


def _train_worker(rank: int, port: int, run: str, out: str, overrides: list[str]) -> None:
    """Train one epoch, then resume the run for a second one (every rank loads the checkpoint)."""
    import torch.distributed as dist

    from lossensemble.config import load_config
    from lossensemble.training import Trainer

    _join(rank, port)
    trainer = Trainer(load_config(None, overrides), run, progress=False)
    _dump(trainer, trainer.fit(), Path(out) / f"epoch1-rank{rank}.pt")
    if rank == 0:
        cfg_path = Path(run) / "config.yaml"
        cfg_path.write_text(cfg_path.read_text().replace("epochs: 1", "epochs: 2", 1))
    dist.barrier()
    resumed = Trainer(None, run, resume=True, progress=False)
    _dump(resumed, resumed.fit(), Path(out) / f"epoch2-rank{rank}.pt")
    distributed.teardown()


def _assert_same_on_both_ranks(out: Path, stage: str) -> dict:
    r0, r1 = (torch.load(out / f"{stage}-rank{r}.pt") for r in range(WORLD))
    assert r0["state"].keys() == r1["state"].keys()
    for key, value in r0["state"].items():
        assert torch.equal(value, r1["state"][key]), f"{stage}: {key} differs between ranks"
    assert r0["metrics"] == r1["metrics"]  # evaluated once, sent to every rank
    assert r0["history"] == r1["history"]
    return r0


@pytest.mark.slow
def test_two_rank_training_keeps_parameters_and_loss_weights_identical_and_resumes(tmp_path, tiny_config):
    run, out = tmp_path / "run", tmp_path / "out"
    out.mkdir()
    mp.spawn(_train_worker, args=(free_port(), str(run), str(out), tiny_config.overrides(*LEARNED)), nprocs=WORLD,
             join=True)
    first = _assert_same_on_both_ranks(out, "epoch1")
    # The learned weights moved, and their running means were folded from the same values.
    assert not torch.allclose(first["state"]["weights"], torch.full((2,), 0.5))
    assert first["state"]["weighting.running.running_count"].tolist() == [3.0, 3.0]
    second = _assert_same_on_both_ranks(out, "epoch2")
    assert second["state"]["weighting.running.running_count"].tolist() == [6.0, 6.0]
    assert [row["step"] for row in second["history"]] == [3, 6]
    # Only rank 0 wrote: one run folder with everything in it, its checkpoint = the ranks' state.
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "history.csv", "metrics.json", "summary.json",
                                               "train.log", "checkpoints"}
    from lossensemble.training.checkpoint import load_checkpoint

    tensors, meta = load_checkpoint(run / "checkpoints" / "last.safetensors")
    assert meta["global_step"] == 6
    for key, value in tensors.items():
        if key in second["state"]:
            assert torch.equal(value, second["state"][key]), key


@pytest.mark.slow
def test_torchrun_cli_trains(tmp_path, tiny_config):
    """``torchrun --nproc_per_node=2 -m lossensemble train`` end to end."""
    run = tmp_path / "run"
    done = torchrun_train(run, tiny_config.overrides(*LEARNED), timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run folder:") == 1  # only rank 0 prints
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch_size"] == 32 and summary["steps"] == 3
    assert (run / "train.log").read_text().count("finished: results in") == 1


# ---------------------------------------------------------------------- one process
def test_helpers_are_no_ops_without_a_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = distributed.setup_from_env(torch.device("cpu"))
    assert not ctx.active and ctx.is_main and not distributed.is_distributed()
    x = torch.randn(4, 3, requires_grad=True)
    assert distributed.gather_with_grad(x) is x
    assert distributed.agree(5, True, torch.device("cpu")) == (5, True)
    assert distributed.gather_object_to_main("a") == ["a"]
    assert distributed.broadcast_object("b") == "b"
    torch.testing.assert_close(distributed.all_reduce_mean(x), x.detach())
    distributed.teardown()  # nothing to leave
