"""The training objective as one module: the unit that DistributedDataParallel wraps.

Written here because the ensemble's objective (several losses on one backbone,
combined by a :class:`~lossensemble.losses.weighting.LossWeighting`, with pair losses
gathered across ranks) is the library's own method.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from lossensemble import distributed

__all__ = ["TrainingModule", "all_reduce_mean_float"]


class TrainingModule(nn.Module):
    """Everything that turns a batch into the objective: the unit DistributedDataParallel wraps.

    Holds the model's backbone and heads, the losses and the weighting as submodules, so
    that one DDP wrapper broadcasts and gradient-averages all their parameters (the
    losses' proxies and classifiers and the learned loss weights are not part of the
    model). The model itself is kept unregistered: its optional compressor, trained
    separately on detached inputs, stays outside DDP.

    ``forward(images, labels, amp)`` returns ``(features, heads, raw, total, info)``:
    ``raw`` the raw loss values (detached; on several processes their mean over ranks,
    identical everywhere), ``total`` the weighted objective (with the diversity term) and
    ``info`` the weighting's floats for logging. On several processes, losses without
    parameters of their own (pair and triplet losses) are computed on the embeddings of
    all ranks (:func:`~lossensemble.distributed.gather_with_grad`); the others
    (proxy, classification) on the local batch.
    """

    def __init__(self, model: nn.Module, losses: nn.ModuleList, weighting: nn.Module, diversity: float = 0.0,
                 diversity_margin: float = 2.0) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.heads = model.heads
        self.losses = losses
        self.weighting = weighting
        self._model = (model,)  # a tuple: not registered as a submodule
        self.diversity = float(diversity)
        self.diversity_margin = float(diversity_margin)
        self.gathered = [not any(True for _ in loss.parameters()) for loss in losses]

    def train(self, mode: bool = True) -> "TrainingModule":
        """Set the training mode through the model's own ``train`` (it keeps frozen batch norms frozen)."""
        self.training = mode
        self._model[0].train(mode)
        self.losses.train(mode)
        self.weighting.train(mode)
        return self

    def forward(self, images: torch.Tensor, labels: torch.Tensor, amp: bool = False):
        model = self._model[0]
        with torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext():
            feats, heads = model(images, return_features=True)
        heads = [h.float() for h in heads]
        raw = self._raw_losses(heads, labels)
        synced = distributed.all_reduce_mean(raw)
        # The weighting sees the mean over ranks (its running means and logged values agree
        # everywhere) with the gradient of the local losses.
        weighted_input = raw - raw.detach() + synced if distributed.is_distributed() else raw
        shared = feats if getattr(self.weighting, "needs_shared_tensor", False) else None
        total, info = self.weighting(weighted_input, shared=shared)
        if self.diversity > 0 and len(heads) > 1:
            from lossensemble.losses import diversity_penalty

            div = diversity_penalty([F.normalize(h, dim=1) for h in heads], self.diversity_margin)
            total = total + self.diversity * div
            info["diversity"] = float(all_reduce_mean_float(div))
        return feats, heads, synced, total, info

    def _raw_losses(self, heads: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """One raw loss per head; gathered across ranks for the losses without parameters."""
        sizes = all_labels = None
        if distributed.is_distributed() and any(self.gathered):
            sizes = distributed.batch_sizes(labels.shape[0], labels.device)
            all_labels = distributed.all_gather_labels(labels, sizes)
        values = []
        for head, loss, gathered in zip(heads, self.losses, self.gathered):
            x = F.normalize(head, dim=1) if loss.normalize else head
            if sizes is not None and gathered:
                values.append(loss(distributed.gather_with_grad(x, sizes), all_labels))
            else:
                values.append(loss(x, labels))
        return torch.stack(values)


def all_reduce_mean_float(x: torch.Tensor) -> float:
    """A scalar's mean over ranks as a float (the value itself on one process)."""
    return float(distributed.all_reduce_mean(x.detach()))
