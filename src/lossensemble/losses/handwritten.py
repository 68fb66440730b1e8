"""Losses of the paper (docs/method.md) that pytorch-metric-learning lacks (or implements differently).

All three are written here in PyTorch, vectorised over the batch (no Python loop),
and tested against slow loop references in ``tests/losses``:

* ``classification``: softmax cross-entropy with label smoothing on a linear classifier;
* ``binomial``: binomial deviance on cosine similarities (not in pml);
* ``proxy_nca``: ProxyNCA with scaled normalised proxies, smoothed labels and the
  positive proxy kept in the denominator (pml's ``ProxyNCALoss`` has no label smoothing).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossensemble.losses.base import MetricLoss, register_loss

__all__ = ["ClassificationLoss", "BinomialDevianceLoss", "ProxyNCALoss"]


@register_loss("classification")
class ClassificationLoss(MetricLoss):
    """Softmax classification over the training classes (implemented here with PyTorch).

    A linear classifier (``nn.Linear(embedding_dim, num_classes)``) on the head's
    *un-normalised* output, trained with ``F.cross_entropy(label_smoothing=smoothing)``
    (PyTorch's smoothing: the target is ``(1 - smoothing) * onehot + smoothing / C``).

    Options: ``smoothing`` (0.15, the paper's), ``bias`` (True).
    """

    normalize = False

    def __init__(self, num_classes: int, embedding_dim: int, *, smoothing: float = 0.15, bias: bool = True) -> None:
        super().__init__(num_classes, embedding_dim)
        self.require(0.0 <= smoothing < 1.0, "smoothing", f"must be in [0, 1), got {smoothing}")
        self.smoothing = smoothing
        self.classifier = nn.Linear(embedding_dim, num_classes, bias=bias)

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self.classifier(embeddings), labels, label_smoothing=self.smoothing)


def _masked_row_mean(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row mean of ``values`` over ``mask`` and which rows have any masked entry.

    Rows with an empty mask get 0 (and are reported as invalid), keeping the graph.
    """
    counts = mask.sum(dim=1)
    sums = (values * mask).sum(dim=1)
    return sums / counts.clamp(min=1), counts > 0


def _mean_over_valid(per_row: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``per_row`` over the valid rows; 0 (still attached to the graph) if none."""
    valid_f = valid.to(per_row.dtype)
    return (per_row * valid_f).sum() / valid_f.sum().clamp(min=1.0)


@register_loss("binomial")
class BinomialDevianceLoss(MetricLoss):
    """Binomial deviance loss on cosine similarities (implemented here; not in pml).

    With ``s_ij`` the cosine similarity of embeddings i and j, for every anchor i:

    * positive term: mean over positives j != i of ``log(1 + exp(-pos_scale (s_ij - margin)))``
    * negative term: mean over negatives j of ``log(1 + exp(neg_scale (s_ij - margin)))``

    The loss is the mean of the positive terms over the anchors that have a positive
    plus the mean of the negative terms over the anchors that have a negative
    (for class-balanced batches this is the mean over anchors of the sum of both terms).
    A batch with no positive pair (or no negative pair) contributes 0 for that part.

    Options (the paper's values): ``pos_scale`` 2, ``neg_scale`` 25, ``margin`` 0.5.
    """

    normalize = True

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        pos_scale: float = 2.0,
        neg_scale: float = 25.0,
        margin: float = 0.5,
    ) -> None:
        super().__init__(num_classes, embedding_dim)
        self.require(pos_scale > 0, "pos_scale", f"must be > 0, got {pos_scale}")
        self.require(neg_scale > 0, "neg_scale", f"must be > 0, got {neg_scale}")
        self.require(-1.0 <= margin <= 1.0, "margin", f"must be a cosine similarity in [-1, 1], got {margin}")
        self.pos_scale = pos_scale
        self.neg_scale = neg_scale
        self.margin = margin

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        x = F.normalize(embeddings, dim=1)
        sim = x @ x.t()
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        pos_mask = (same & ~eye).to(sim.dtype)
        neg_mask = (~same).to(sim.dtype)
        pos = F.softplus(-self.pos_scale * (sim - self.margin))
        neg = F.softplus(self.neg_scale * (sim - self.margin))
        pos_row, pos_valid = _masked_row_mean(pos, pos_mask)
        neg_row, neg_valid = _masked_row_mean(neg, neg_mask)
        return _mean_over_valid(pos_row, pos_valid) + _mean_over_valid(neg_row, neg_valid)


@register_loss("proxy_nca")
class ProxyNCALoss(MetricLoss):
    """ProxyNCA as the paper uses it (docs/method.md) (implemented here; pml's version has no label smoothing).

    One learnable proxy per class. Embeddings and proxies are L2-normalised and
    multiplied by ``scale`` (3); the logits are minus the squared Euclidean
    distances to all proxies, so the positive proxy stays in the softmax denominator.
    The target distribution puts ``1 - smoothing`` on the true class and
    ``smoothing / (C - 1)`` on each other class (the convention of the public
    ProxyNCA code the paper builds on, not PyTorch's ``label_smoothing``); the loss is
    the cross-entropy averaged over the batch. Squared distances are computed as
    ``2 scale^2 (1 - cos)``, which equals ``||scale x - scale p||^2`` for unit vectors.

    Options: ``scale`` 3, ``smoothing`` 0.1. Parameter: ``proxies`` [C, d].
    """

    normalize = True

    def __init__(self, num_classes: int, embedding_dim: int, *, scale: float = 3.0, smoothing: float = 0.1) -> None:
        super().__init__(num_classes, embedding_dim)
        self.require(scale > 0, "scale", f"must be > 0, got {scale}")
        self.require(0.0 <= smoothing < 1.0, "smoothing", f"must be in [0, 1), got {smoothing}")
        self.scale = scale
        self.smoothing = smoothing if num_classes > 1 else 0.0
        self.proxies = nn.Parameter(torch.randn(num_classes, embedding_dim) / 8)

    def smoothed_targets(self, labels: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """[B, C] target distribution: 1 - smoothing on the label, the rest spread evenly."""
        off = self.smoothing / max(self.num_classes - 1, 1)
        targets = torch.full((len(labels), self.num_classes), off, device=labels.device, dtype=dtype)
        return targets.scatter_(1, labels.unsqueeze(1), 1.0 - self.smoothing)

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        x = F.normalize(embeddings, dim=1)
        p = F.normalize(self.proxies, dim=1)
        sq_dist = (2.0 * self.scale**2) * (1.0 - x @ p.t())
        log_prob = F.log_softmax(-sq_dist, dim=1)
        return -(self.smoothed_targets(labels, log_prob.dtype) * log_prob).sum(dim=1).mean()
