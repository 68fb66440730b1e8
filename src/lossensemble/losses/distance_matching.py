"""Distance-matching objectives: how far a student's batch geometry is from the teacher's.

Written here because no library offers these (the first is the paper's; the second
is our alternative). Both are vectorised over the batch and scale-invariant in the
teacher and the student, so the compact embedding only has to reproduce the
*relative* distances of the ensemble.

* ``frobenius`` (paper): ``D_s`` and ``D_t`` are the batch matrices of squared
  Euclidean distances, each divided by its sum; the loss is
  ``||D_s / sum(D_s) - D_t / sum(D_t)||_F / n^2`` (n^2 = number of entries).
* ``softmax`` (ours): for every anchor, the distribution over the other items of
  the batch ``softmax(-D[i, j] / (T * mean(D)))``; the loss is the mean over anchors
  of ``KL(P_teacher || P_student)``. It weights each anchor's *nearest* items most,
  which is what retrieval cares about, where the Frobenius loss is dominated by
  the large distances.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossensemble.errors import UserError

__all__ = ["OBJECTIVES", "squared_distances", "distance_matching_loss"]

OBJECTIVES = ("frobenius", "softmax")


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    """(n, n) matrix of squared Euclidean distances between the rows of ``x`` (diagonal 0, >= 0)."""
    sq = (x * x).sum(dim=1)
    d = sq[:, None] + sq[None, :] - 2.0 * (x @ x.t())
    d = d.clamp_min(0.0)
    return d * (1.0 - torch.eye(len(x), device=x.device, dtype=x.dtype))


def _off_diagonal(m: torch.Tensor) -> torch.Tensor:
    """The (n, n-1) matrix of ``m`` without its diagonal, row by row."""
    n = m.shape[0]
    return m.flatten()[1:].view(n - 1, n + 1)[:, :-1].reshape(n, n - 1)


def distance_matching_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    objective: str = "frobenius",
    temperature: float = 0.1,
    eps: float = 1e-12,
) -> torch.Tensor:
    """How well the student's batch distances reproduce the teacher's (a scalar, 0 = identical).

    Args:
        student: (n, d_s) embeddings being trained (the compact vectors).
        teacher: (n, d_t) target embeddings (the ensemble, detached by the caller).
        objective: ``"frobenius"`` (paper) or ``"softmax"`` (ours); see the module docstring.
        temperature: softmax only; distances are divided by ``temperature * mean distance``.
    """
    if objective not in OBJECTIVES:
        raise UserError(f"compression objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f"student has {student.shape[0]} rows but teacher has {teacher.shape[0]}")
    n = student.shape[0]
    if n < 2:
        return student.sum() * 0.0
    ds = squared_distances(student.float())
    dt = squared_distances(teacher.float().detach())
    if objective == "frobenius":
        diff = ds / (ds.sum() + eps) - dt / (dt.sum() + eps)
        # sqrt with a tiny floor: the gradient of a norm is undefined at exactly zero.
        return torch.sqrt((diff * diff).sum() + eps * eps) / (n * n)
    if n < 3:  # one neighbour per anchor: every distribution is the same point mass
        return student.sum() * 0.0
    ds, dt = _off_diagonal(ds), _off_diagonal(dt)
    log_ps = F.log_softmax(-ds / (temperature * ds.mean() + eps), dim=1)
    log_pt = F.log_softmax(-dt / (temperature * dt.mean() + eps), dim=1)
    return F.kl_div(log_ps, log_pt, log_target=True, reduction="batchmean")
