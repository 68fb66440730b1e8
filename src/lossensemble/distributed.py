"""Data-parallel training across processes with ``torch.distributed`` (launched by ``torchrun``).

Written here because the ensemble's training step needs a few things DDP alone does
not give: pair/triplet losses that see the embeddings of *all* ranks (gathered with
gradients), loss-weighting statistics that agree on every rank, and sharded
evaluation. The launcher is PyTorch's own ``torchrun``; this module only reads the
environment it sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``).

How the ranks stay in step (see README, "Multi-GPU and multi-node training"):

* **parameters**: the backbone, heads, the losses' own parameters (proxies, classifiers)
  and the weighting's parameters are wrapped in one ``DistributedDataParallel`` module
  (:class:`lossensemble.training.trainer.TrainingModule`), so DDP broadcasts them from
  rank 0 at wrap time and averages their gradients. The joint compressor (trained by its
  own optimiser on detached inputs) gets the same by :func:`average_gradients_hooks`.
* **gathered losses**: :func:`gather_with_grad` concatenates the embeddings of all ranks;
  every rank computes the same loss ``L`` on the union, and the backward pass *sums* the
  gradients that flow into each rank's slice, so the gradient of the local embeddings is
  ``world_size * dL/de``; after DDP's averaging the parameter gradients equal exactly
  those of one process computing ``L`` on the union batch.
* **weights and running means**: the raw loss values are averaged over ranks
  (:func:`all_reduce_mean`) before the weighting sees them, so its running means, scale
  factors, penalties and logged values are identical everywhere.

Single-process use (``WORLD_SIZE`` unset or 1) creates no process group and every helper
is a no-op.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import nn

from lossensemble.errors import UserError

__all__ = [
    "DistContext",
    "setup_from_env",
    "current_context",
    "teardown",
    "is_distributed",
    "is_main_process",
    "world_size",
    "rank",
    "batch_sizes",
    "gather_with_grad",
    "all_gather_labels",
    "gathered_loss",
    "all_reduce_mean",
    "agree",
    "broadcast_module",
    "average_gradients_hooks",
    "gather_object_to_main",
    "broadcast_object",
]

# Generous: rank 0 computes metrics (kNN, k-means) while the others wait in a collective.
DEFAULT_TIMEOUT = datetime.timedelta(minutes=60)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, the number of processes, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def active(self) -> bool:
        """True when a process group with more than one process is in use."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that writes files (rank 0)."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name} must be an integer, got {value!r}") from None


def _device_for(device: torch.device, local_rank: int) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for any CUDA request, else ``device``."""
    if device.type != "cuda":
        return device
    if torch.cuda.device_count() <= local_rank:
        raise UserError(
            f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA devices are visible; "
            f"use --nproc_per_node <= the number of GPUs"
        )
    return torch.device("cuda", local_rank)


def setup_from_env(device: torch.device) -> DistContext:
    """Join the process group described by torchrun's environment (or reuse one already joined).

    ``device`` is the device the config asks for (``resolve_device``); with CUDA every
    rank uses ``cuda:LOCAL_RANK`` and NCCL, on CPU gloo. With ``WORLD_SIZE`` unset or 1
    nothing is initialised and a single-process context is returned.
    """
    if dist.is_available() and dist.is_initialized():
        local_rank = _env_int("LOCAL_RANK", 0)
        dev = _device_for(device, local_rank)
        return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, dev)
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return DistContext(device=device)
    if not dist.is_available():
        raise UserError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = _device_for(device, local_rank)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    kwargs: dict[str, Any] = {"backend": backend, "timeout": DEFAULT_TIMEOUT}
    if dev.type == "cuda":
        kwargs["device_id"] = dev
    dist.init_process_group(**kwargs)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, dev)


def current_context(device: torch.device) -> DistContext:
    """The process group this process already joined (initialises nothing), or a single-process context.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the group must have been joined first, by
    :func:`setup_from_env` (the CLI does it through ``lossensemble.runtime.prepare_process``).
    """
    if is_distributed():
        return setup_from_env(device)  # reuses the joined group
    if _env_int("WORLD_SIZE", 1) > 1:
        raise UserError("launched with WORLD_SIZE > 1 but no process group is joined: call "
                        "lossensemble.runtime.prepare_process(cfg) (or distributed.setup_from_env) first")
    return DistContext(device=device)


def teardown() -> None:
    """Leave the process group if one was joined (safe to call anyway)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True when a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    """True on rank 0, and always without a process group."""
    return rank() == 0


# ---------------------------------------------------------------------- gathering
def batch_sizes(n: int, device: torch.device) -> list[int]:
    """The first-dimension size of every rank's tensor (batches may differ by skipped images)."""
    local = torch.tensor([n], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, local)
    return [int(s) for s in sizes]


def _gather_padded(x: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Concatenate every rank's ``x`` along dim 0 (padded to the largest for the collective)."""
    longest = max(sizes)
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:s] for p, s in zip(parts, sizes)], dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums, over ranks, the gradients of this rank's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:  # type: ignore[override]
        ctx.sizes = sizes
        ctx.rank = dist.get_rank()
        return _gather_padded(x.detach(), sizes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None


def gather_with_grad(x: torch.Tensor, sizes: Sequence[int] | None = None) -> torch.Tensor:
    """All ranks' ``x`` concatenated in rank order, differentiable with respect to the local ``x``.

    The gradient reaching the local ``x`` is the sum over ranks of the gradients of its
    slice: when every rank computes the same loss ``L`` of the result, it is
    ``world_size * dL/dx`` (DDP's averaging of parameter gradients divides it back).
    ``sizes`` (every rank's ``len(x)``) saves one collective when already known.
    Without a process group returns ``x``.
    """
    if not is_distributed():
        return x
    sizes = tuple(sizes) if sizes is not None else tuple(batch_sizes(x.shape[0], x.device))
    return _GatherWithGrad.apply(x, sizes)


def all_gather_labels(labels: torch.Tensor, sizes: Sequence[int] | None = None) -> torch.Tensor:
    """All ranks' ``labels`` concatenated in rank order (no gradient)."""
    if not is_distributed():
        return labels
    sizes = sizes if sizes is not None else batch_sizes(labels.shape[0], labels.device)
    return _gather_padded(labels, sizes)


def gathered_loss(loss: nn.Module, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``loss`` of the union of all ranks' batches (same value on every rank).

    The gradient with respect to the local ``embeddings`` is ``world_size`` times the
    gradient of the union loss with respect to those rows (see :func:`gather_with_grad`).
    """
    if not is_distributed():
        return loss(embeddings, labels)
    sizes = batch_sizes(embeddings.shape[0], embeddings.device)
    return loss(gather_with_grad(embeddings, sizes), all_gather_labels(labels, sizes))


# ---------------------------------------------------------------------- agreement
def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over ranks, as a new detached tensor (``x`` itself without a group)."""
    if not is_distributed():
        return x.detach()
    out = x.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def agree(count: int, flag: bool, device: torch.device) -> tuple[int, bool]:
    """(minimum of ``count``, any ``flag``) over ranks: one collective for per-step decisions."""
    if not is_distributed():
        return count, flag
    t = torch.tensor([-count, int(flag)], dtype=torch.long, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(-t[0]), bool(t[1])


def broadcast_module(module: nn.Module, src: int = 0, buffers_only: bool = False) -> None:
    """Copy ``module``'s parameters and buffers (or only its buffers) from rank ``src`` to every rank.

    ``buffers_only`` is for the end of an epoch: DDP syncs buffers (batch-norm statistics)
    before each forward, so after the last step every rank holds its own; evaluation and
    checkpoints use rank 0's.
    """
    if not is_distributed():
        return
    tensors = list(module.buffers()) if buffers_only else list(module.parameters()) + list(module.buffers())
    with torch.no_grad():
        for t in tensors:
            dist.broadcast(t.data, src=src)


def average_gradients_hooks(module: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
    """Make every gradient of ``module``'s parameters the mean over ranks (for modules outside DDP).

    Each backward pass through ``module`` must then run on all ranks, as a DDP step does.
    Returns the hook handles (``.remove()`` undoes it).
    """
    if not is_distributed():
        return []

    def mean_over_ranks(grad: torch.Tensor) -> torch.Tensor:
        out = grad.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / dist.get_world_size()

    return [p.register_hook(mean_over_ranks) for p in module.parameters() if p.requires_grad]


# ---------------------------------------------------------------------- python objects
def gather_object_to_main(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` in rank order on rank 0 (None elsewhere); ``[obj]`` without a group."""
    if not is_distributed():
        return [obj]
    out: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (``obj`` itself without a group)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
