"""The training objective as one module: the unit that DistributedDataParallel wraps.

Written here because the ensemble's objective (several losses on one backbone,
combined by a :class:`~lossensemble.losses.weighting.LossWeighting`, with pair losses
gathered across ranks) is the library's own method; the objective itself is
:class:`~lossensemble.models.LossEnsemble`, the module users put in their own loops.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from lossensemble import distributed
from lossensemble.models.loss_ensemble import LossEnsemble

__all__ = ["TrainingModule", "all_reduce_mean_float"]


class TrainingModule(nn.Module):
    """Everything that turns a batch into the objective: the unit DistributedDataParallel wraps.

    The backbone (registered here) plus a :class:`~lossensemble.models.LossEnsemble` over the
    model's heads, the losses and the weighting (the same objective users get in their own
    loops), so that one DDP wrapper broadcasts and gradient-averages all their parameters
    (the losses' proxies and classifiers and the learned loss weights are not part of the
    model). The model itself is kept unregistered: its optional compressor, trained
    separately on detached inputs, stays outside DDP.

    ``forward(images, labels, amp)`` returns ``(features, heads, raw, total, info)``; with
    ``features_in`` the inputs are backbone features already (see :mod:`lossensemble.training.features`).
    ``raw`` the raw loss values (detached; on several processes their mean over ranks,
    identical everywhere), ``total`` the weighted objective (with the diversity term) and
    ``info`` the weighting's floats for logging. On several processes, losses without
    parameters of their own (pair and triplet losses) are computed on the embeddings of
    all ranks (:func:`~lossensemble.distributed.gather_with_grad`); the others
    (proxy, classification) on the local batch.
    """

    def __init__(self, model: nn.Module, losses: nn.ModuleList, weighting: nn.Module, diversity: float = 0.0,
                 diversity_margin: float = 2.0, features_in: bool = False) -> None:
        super().__init__()
        self.features_in = features_in  # inputs are cached backbone features (frozen-backbone fast mode)
        self.backbone = model.backbone
        self.ensemble = LossEnsemble(model.heads, losses, weighting, diversity=diversity,
                                      diversity_margin=diversity_margin)
        self._model = (model,)  # a tuple: not registered as a submodule

    def train(self, mode: bool = True) -> "TrainingModule":
        """Set the training mode through the model's own ``train`` (it keeps frozen batch norms frozen)."""
        self.training = mode
        self._model[0].train(mode)
        self.ensemble.losses.train(mode)
        self.ensemble.weighting.train(mode)
        return self

    def forward(self, images: torch.Tensor, labels: torch.Tensor, amp: bool = False):
        model = self._model[0]
        with torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext():
            if self.features_in:
                feats, heads = images, model.forward_heads(images)
            else:
                feats, heads = model(images, return_features=True)
        heads = [h.float() for h in heads]
        total, synced, info = self.ensemble.objective(heads, labels, shared=feats)
        return feats, heads, synced, total, info


def all_reduce_mean_float(x: torch.Tensor) -> float:
    """A scalar's mean over ranks as a float (the value itself on one process)."""
    return float(distributed.all_reduce_mean(x.detach()))
