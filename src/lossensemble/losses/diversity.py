"""The head-diversity regulariser of the WEDL variant (docs/method.md)."""

from __future__ import annotations

import torch
from torch import Tensor

from lossensemble.errors import UserError

__all__ = ["diversity_penalty"]


def diversity_penalty(head_embeddings: list[Tensor], margin: float = 2.0) -> Tensor:
    """``relu(margin - mean over head pairs i<j of mean over the batch ||e_i - e_j||_2)``.

    Keeps the embedding heads from collapsing onto one another; the trainer adds it
    to the weighted loss with weight ``lambda`` (paper: 0.01). Vectorised over head
    pairs and the batch.

    Args:
        head_embeddings: one [B, d] tensor per head, all of the same shape (the
            distance between heads of different sizes is undefined: UserError).
        margin: the distance below which heads are pushed apart (paper: 2).

    Returns:
        A scalar tensor; 0 (attached to the graph when possible) for fewer than two heads.
    """
    if len(head_embeddings) < 2:
        if head_embeddings:
            return head_embeddings[0].sum() * 0.0
        return torch.zeros(())
    shapes = {tuple(e.shape) for e in head_embeddings}
    if len(shapes) != 1:
        raise UserError(
            "the diversity regulariser needs heads of the same embedding size and batch, "
            f"got shapes {sorted(shapes)}"
        )
    stacked = torch.stack(head_embeddings)  # [H, B, d]
    i, j = torch.triu_indices(len(head_embeddings), len(head_embeddings), offset=1, device=stacked.device)
    distances = torch.linalg.vector_norm(stacked[i] - stacked[j], dim=-1)  # [pairs, B]
    return torch.relu(margin - distances.mean())
