"""Losses implemented by pytorch-metric-learning (pml), wrapped as :class:`MetricLoss`.

Each wrapper builds the pml loss (and its miner, if any) from the options and does
nothing else at run time: ``miner(embeddings, labels)`` then
``loss(embeddings, labels, indices)``. pml's own learnable tensors (proxies, class
centres, ArcFace weights, the margin loss's beta) are registered parameters of
the wrapped module, hence of the wrapper. pml returns a zero loss still attached to
the graph when a batch has no usable pair or triplet.
"""

from __future__ import annotations

from torch import Tensor, nn
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.regularizers import LpRegularizer

from lossensemble.losses.base import MetricLoss, register_loss

__all__ = [
    "PMLLoss",
    "TripletLoss",
    "NPairLoss",
    "SoftTripleLoss",
    "MultiSimilarityLoss",
    "ProxyAnchorLoss",
    "MarginLoss",
    "ArcFaceLoss",
    "ContrastiveLoss",
]


class PMLLoss(MetricLoss):
    """Base of the wrappers: a pml loss module and an optional pml miner."""

    normalize = True

    def __init__(self, num_classes: int, embedding_dim: int) -> None:
        super().__init__(num_classes, embedding_dim)
        self.loss: nn.Module
        self.miner: nn.Module | None = None

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        indices = self.miner(embeddings, labels) if self.miner is not None else None
        return self.loss(embeddings, labels, indices)


@register_loss("triplet")
class TripletLoss(PMLLoss):
    """Triplet hinge loss with semi-hard mining (pml ``TripletMarginLoss`` + ``TripletMarginMiner``).

    Euclidean distance of L2-normalised embeddings; hinge ``relu(d_ap - d_an + margin)``
    averaged over the mined triplets with non-zero loss (pml's default reducer).

    Options: ``margin`` 1.0 (the paper's), ``type_of_triplets`` "semihard"
    (all | hard | semihard | easy), ``miner_margin`` (-1 = same as ``margin``).
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        margin: float = 1.0,
        type_of_triplets: str = "semihard",
        miner_margin: float = -1.0,
    ) -> None:
        super().__init__(num_classes, embedding_dim)
        self.require(margin >= 0, "margin", f"must be >= 0, got {margin}")
        kinds = ("all", "hard", "semihard", "easy")
        self.require(type_of_triplets in kinds, "type_of_triplets", f"must be one of {', '.join(kinds)}")
        self.loss = pml_losses.TripletMarginLoss(margin=margin)
        self.miner = pml_miners.TripletMarginMiner(
            margin=margin if miner_margin < 0 else miner_margin, type_of_triplets=type_of_triplets
        )


@register_loss("npair")
class NPairLoss(PMLLoss):
    """N-pair loss (pml ``NPairsLoss``) with an L2 embedding regulariser.

    pml's N-pair uses the dot product, and the regulariser ``l2_reg * mean ||x||^2``
    (pml ``LpRegularizer(power=2)``) only makes sense on un-normalised embeddings,
    so ``normalize`` is False: the head is not L2-normalised for this loss.

    Options: ``l2_reg`` 0.02 (the paper's; 0 disables it).
    """

    normalize = False

    def __init__(self, num_classes: int, embedding_dim: int, *, l2_reg: float = 0.02) -> None:
        super().__init__(num_classes, embedding_dim)
        self.require(l2_reg >= 0, "l2_reg", f"must be >= 0, got {l2_reg}")
        if l2_reg > 0:
            self.loss = pml_losses.NPairsLoss(
                embedding_regularizer=LpRegularizer(p=2, power=2), embedding_reg_weight=l2_reg
            )
        else:
            self.loss = pml_losses.NPairsLoss()


@register_loss("softtriple")
class SoftTripleLoss(PMLLoss):
    """SoftTriple loss (pml ``SoftTripleLoss``): several learnable centres per class.

    Options (pml / paper defaults): ``centers_per_class`` 10, ``la`` 20, ``gamma`` 0.1,
    ``margin`` 0.01.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        centers_per_class: int = 10,
        la: float = 20.0,
        gamma: float = 0.1,
        margin: float = 0.01,
    ) -> None:
        super().__init__(num_classes, embedding_dim)
        self.require(centers_per_class >= 1, "centers_per_class", "must be >= 1")
        self.require(la > 0, "la", "must be > 0")
        self.require(gamma > 0, "gamma", "must be > 0")
        self.loss = pml_losses.SoftTripleLoss(
            num_classes, embedding_dim, centers_per_class=centers_per_class, la=la, gamma=gamma, margin=margin
        )


@register_loss("multi_similarity")
class MultiSimilarityLoss(PMLLoss):
    """Multi-similarity loss (pml ``MultiSimilarityLoss`` + ``MultiSimilarityMiner``).

    Options (paper defaults): ``alpha`` 2, ``beta`` 50, ``base`` 0.5, ``epsilon`` 0.1 (miner).
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        epsilon: float = 0.1,
    ) -> None:
        super().__init__(num_classes, embedding_dim)
        self.require(alpha > 0, "alpha", "must be > 0")
        self.require(beta > 0, "beta", "must be > 0")
        self.require(epsilon >= 0, "epsilon", "must be >= 0")
        self.loss = pml_losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base)
        self.miner = pml_miners.MultiSimilarityMiner(epsilon=epsilon)


@register_loss("proxy_anchor")
class ProxyAnchorLoss(PMLLoss):
    """Proxy-Anchor loss (pml ``ProxyAnchorLoss``), one learnable proxy per class.

    Options (paper defaults): ``margin`` 0.1, ``alpha`` 32.
    """

    def __init__(self, num_classes: int, embedding_dim: int, *, margin: float = 0.1, alpha: float = 32.0) -> None:
        super().__init__(num_classes, embedding_dim)
        self.require(alpha > 0, "alpha", "must be > 0")
        self.loss = pml_losses.ProxyAnchorLoss(num_classes, embedding_dim, margin=margin, alpha=alpha)


@register_loss("margin")
class MarginLoss(PMLLoss):
    """Margin loss with distance-weighted sampling (pml ``MarginLoss`` + ``DistanceWeightedMiner``).

    Following Wu et al. (2017) the boundary ``beta`` is learned by default (one scalar
    parameter; ``learn_beta: false`` keeps pml's fixed beta).

    Options: ``margin`` 0.2, ``beta`` 1.2, ``learn_beta`` True, ``nu`` 0 (beta
    regulariser), ``cutoff`` 0.5 and ``nonzero_loss_cutoff`` 1.4 (miner).
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        margin: float = 0.2,
        beta: float = 1.2,
        learn_beta: bool = True,
        nu: float = 0.0,
        cutoff: float = 0.5,
        nonzero_loss_cutoff: float = 1.4,
    ) -> None:
        super().__init__(num_classes, embedding_dim)
        self.require(margin >= 0, "margin", "must be >= 0")
        self.require(0 <= cutoff < nonzero_loss_cutoff, "cutoff", "must be in [0, nonzero_loss_cutoff)")
        self.loss = pml_losses.MarginLoss(margin=margin, beta=beta, learn_beta=learn_beta, nu=nu)
        self.miner = pml_miners.DistanceWeightedMiner(cutoff=cutoff, nonzero_loss_cutoff=nonzero_loss_cutoff)


@register_loss("arcface")
class ArcFaceLoss(PMLLoss):
    """ArcFace (pml ``ArcFaceLoss``): additive angular margin softmax on learnable class weights.

    Options (pml defaults): ``margin`` 28.6 (degrees), ``scale`` 64.
    """

    def __init__(self, num_classes: int, embedding_dim: int, *, margin: float = 28.6, scale: float = 64.0) -> None:
        super().__init__(num_classes, embedding_dim)
        self.require(0 <= margin < 90, "margin", "must be an angle in degrees in [0, 90)")
        self.require(scale > 0, "scale", "must be > 0")
        self.loss = pml_losses.ArcFaceLoss(num_classes, embedding_dim, margin=margin, scale=scale)


@register_loss("contrastive")
class ContrastiveLoss(PMLLoss):
    """Contrastive loss (pml ``ContrastiveLoss``) on Euclidean distances of normalised embeddings.

    Options (pml defaults): ``pos_margin`` 0, ``neg_margin`` 1.
    """

    def __init__(
        self, num_classes: int, embedding_dim: int, *, pos_margin: float = 0.0, neg_margin: float = 1.0
    ) -> None:
        super().__init__(num_classes, embedding_dim)
        self.require(pos_margin >= 0, "pos_margin", "must be >= 0")
        self.require(neg_margin > pos_margin, "neg_margin", "must be > pos_margin")
        self.loss = pml_losses.ContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin)
