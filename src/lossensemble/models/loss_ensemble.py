"""The ensemble objective as one ``nn.Module``, to use in your own training loop.

:class:`LossEnsemble` holds what turns backbone features into the ensemble's loss: the
embedding heads (one per loss, or shared: ``head:``), the losses, their weighting and
the optional head-diversity term. It is a plain ``torch.nn.Module``, so it works in a
hand-written PyTorch loop, inside a Lightning module or under DistributedDataParallel::

    ensemble = LossEnsemble.build(feature_dim=512, losses=["triplet", "pml:ArcFaceLoss"], num_classes=100)
    loss, logs = ensemble(backbone(images), labels)   # logs: {"loss_triplet": ..., "weight_triplet": ...}
    loss.backward()

The library's own trainer uses it too (:class:`~lossensemble.training.module.TrainingModule`),
so both compute the same objective.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossensemble import distributed
from lossensemble.config import WeightingConfig
from lossensemble.errors import UserError
from lossensemble.losses import build_loss_entries, build_weighting, diversity_penalty, loss_entry, shared_heads
from lossensemble.models.ensemble import build_heads, ensemble_embedding

__all__ = ["LossEnsemble"]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"LossEnsemble: {name} must be a positive integer, got {value!r}")
    return value


def _weighting_config(weighting: str | WeightingConfig | Mapping[str, Any],
                      options: Mapping[str, Any] | None) -> WeightingConfig:
    """A :class:`WeightingConfig` from a scheme name, a mapping of its fields, or one as given."""
    if isinstance(weighting, WeightingConfig):
        cfg = weighting
    elif isinstance(weighting, str):
        cfg = WeightingConfig(scheme=weighting)
    elif isinstance(weighting, Mapping):
        try:
            cfg = WeightingConfig(**weighting)
        except TypeError as exc:
            raise UserError(f"LossEnsemble: weighting: {exc}") from None
    else:
        raise UserError(f"LossEnsemble: weighting must be a scheme name or a mapping, got {weighting!r}")
    if options:
        cfg = WeightingConfig(**{**cfg.__dict__, "options": {**cfg.options, **options}})
    return cfg


class LossEnsemble(nn.Module):
    """Heads + losses + weighting (+ diversity): ``forward(features, labels) -> (loss, logs)``.

    Args:
        heads: one module per loss, keyed by the loss names in the order of ``losses``
            (the same module under two names is a shared head).
        losses: the :class:`~lossensemble.losses.MetricLoss` modules.
        weighting: a :class:`~lossensemble.losses.LossWeighting` over the same names.
        diversity: weight of the head-diversity regulariser (0: off), computed on the
            distinct heads; ``diversity_margin`` its margin.

    On several processes (``torch.distributed`` initialised), losses without parameters
    of their own (pair and triplet losses) are computed on the embeddings of all ranks
    (gathered with gradient), the others on the local batch, and the raw losses the
    weighting sees are their mean over ranks.
    """

    def __init__(self, heads: Mapping[str, nn.Module], losses: Sequence[nn.Module], weighting: nn.Module, *,
                 diversity: float = 0.0, diversity_margin: float = 2.0) -> None:
        super().__init__()
        self.heads = heads if isinstance(heads, nn.ModuleDict) else nn.ModuleDict(dict(heads))
        self.losses = losses if isinstance(losses, nn.ModuleList) else nn.ModuleList(losses)
        self.weighting = weighting
        self.names = list(self.heads.keys())
        if len(self.names) != len(self.losses) or list(getattr(weighting, "names", self.names)) != self.names:
            raise ValueError(f"LossEnsemble: heads {self.names}, {len(self.losses)} losses and weighting names "
                             f"{getattr(weighting, 'names', None)} do not match")
        self.diversity = float(diversity)
        self.diversity_margin = float(diversity_margin)
        self.gathered = [not any(True for _ in loss.parameters()) for loss in self.losses]

    @classmethod
    def build(cls, feature_dim: int, losses: Sequence[Any], *, num_classes: int, embedding_dim: int = 64,
              weighting: str | WeightingConfig | Mapping[str, Any] = "uncertainty",
              weighting_options: Mapping[str, Any] | None = None, diversity: float | None = None,
              diversity_margin: float | None = None) -> "LossEnsemble":
        """A LossEnsemble from simple arguments, with the library's builders.

        Args:
            feature_dim: width of the backbone features the heads read.
            losses: loss entries as in a config: ``"triplet"``, ``"pml:ArcFaceLoss"`` or
                ``{"name": ..., "options": {...}, "miner": {...}, "head": <other loss>}``.
            num_classes: training classes (for proxy and classification losses).
            embedding_dim: output width of each head.
            weighting: a scheme name (equal, fixed, learned, uncertainty, gradnorm), a
                mapping of :class:`~lossensemble.config.WeightingConfig` fields or one.
            weighting_options: the scheme's keyword options (e.g. gradnorm's ``alpha``).
            diversity, diversity_margin: the diversity term (default: the weighting config's).

        Raises:
            UserError: a bad name, option or size (one line, naming what is wrong).
        """
        feature_dim = _positive_int("feature_dim", feature_dim)
        num_classes = _positive_int("num_classes", num_classes)
        embedding_dim = _positive_int("embedding_dim", embedding_dim)
        if isinstance(losses, (str, Mapping)) or not losses:
            raise UserError(f"LossEnsemble: losses must be a non-empty list of loss entries, got {losses!r}")
        entries = [loss_entry(s) for s in losses]
        shared = shared_heads(entries)
        names = [e.name for e in entries]
        wcfg = _weighting_config(weighting, weighting_options)
        modules = build_loss_entries(entries, num_classes=num_classes, embedding_dim=embedding_dim)
        heads = build_heads(feature_dim, names, embedding_dim, shared)
        return cls(heads, modules, build_weighting(wcfg, names),
                   diversity=wcfg.diversity if diversity is None else diversity,
                   diversity_margin=wcfg.diversity_margin if diversity_margin is None else diversity_margin)

    # ------------------------------------------------------------------ forward
    def head_outputs(self, features: Tensor) -> list[Tensor]:
        """The raw (un-normalised) output of each loss's head, in loss order."""
        return [self.heads[n](features) for n in self.names]

    def forward(self, features: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The scalar objective of a batch of backbone ``features`` [B, F] and ``labels`` [B], and its logs.

        ``logs`` (floats): ``loss_<name>`` (raw losses), ``weight_<name>``, ``scale_<name>``,
        ``penalty`` (the weighting's own term), ``diversity`` (when on) and ``loss_total``.
        """
        heads = [h.float() for h in self.head_outputs(features)]
        total, raw, info = self.objective(heads, labels, shared=features)
        logs = {f"loss_{n}": v for n, v in zip(self.names, raw.tolist())}
        logs.update(info)
        logs["loss_total"] = float(total.detach())
        return total, logs

    def objective(self, heads: Sequence[Tensor], labels: Tensor,
                  shared: Tensor | None = None) -> tuple[Tensor, Tensor, dict[str, float]]:
        """``(total, raw, info)`` from the head outputs: the weighted loss with the diversity term,
        the detached raw losses (mean over ranks) and the weighting's floats.

        ``shared`` is the tensor every head reads (the features), for weightings that need it (gradnorm).
        """
        raw = self.raw_losses(heads, labels)
        synced = distributed.all_reduce_mean(raw)
        # The weighting sees the mean over ranks (its running means and logged values agree
        # everywhere) with the gradient of the local losses.
        weighted_input = raw - raw.detach() + synced if distributed.is_distributed() else raw
        needs_shared = getattr(self.weighting, "needs_shared_tensor", False)
        total, info = self.weighting(weighted_input, shared=shared if needs_shared else None)
        distinct = self._distinct(heads)
        if self.diversity > 0 and len(distinct) > 1:
            div = diversity_penalty([F.normalize(h, dim=1) for h in distinct], self.diversity_margin)
            total = total + self.diversity * div
            info["diversity"] = float(distributed.all_reduce_mean(div.detach()))
        return total, synced, info

    def raw_losses(self, heads: Sequence[Tensor], labels: Tensor) -> Tensor:
        """One raw loss per head output [m]; gathered across ranks for the losses without parameters."""
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

    def _distinct(self, heads: Sequence[Tensor]) -> list[Tensor]:
        """The outputs of the distinct head modules (a shared head once)."""
        seen: set[int] = set()
        out = []
        for n, h in zip(self.names, heads):
            if id(self.heads[n]) not in seen:
                seen.add(id(self.heads[n]))
                out.append(h)
        return out

    # ------------------------------------------------------------------ retrieval
    def weights(self) -> Tensor:
        """The current loss weights [m] (detached), in loss order."""
        return self.weighting.weights()

    def embed(self, features: Tensor) -> Tensor:
        """The retrieval embedding of ``features``: the weighted concatenation of the L2-normalised heads."""
        return ensemble_embedding(self.head_outputs(features), self.weights())
