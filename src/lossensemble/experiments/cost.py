"""Training cost of the rows of a comparison, in one place: backbone images processed during training.

The unit is one single-loss run of the comparison's config (its steps x batch size x one
backbone). A trained row costs its own steps x batch size / the unit (``single-long`` at
4x the steps costs 4); the independent ensemble costs the sum of its single-loss runs; a
row read off another run (``heads``, ``best-head``, a post-hoc ``compressed`` row, the
distilled ``independent-compressed`` row) costs what its source cost, since their own
training touches no backbone (compressors and distilled heads train on cached embeddings
of frozen backbones).

A ``distilled`` row (a new network trained end to end on a teacher's distances) costs its
teacher's training (the single-loss runs for the independent ensemble, the ``source`` run
for a shared ensemble) plus its own: ``student_factor`` (its steps x batch size / the unit)
for the student's backbone, plus the teacher's forward passes on the student's batches,
``student_factor`` per teacher backbone (m for the independent ensemble, 1 for a shared
one, its backbone compute for a branched one). Those forward passes count as whole images
although they need no backward pass (about a third of a training step's compute), so the
teacher's share is an upper bound.

A run with a branched backbone (``model.branch_at``) processes each image through the shared
trunk once and through every branch: its images are weighted by its backbone compute per
image relative to one backbone (:func:`lossensemble.models.branching.backbone_cost`, forward
FLOPs).

The query cost of a row (:func:`query_costs`) is the backbone compute needed to embed one
query, as a multiple of one backbone: 1 for a single model, a shared ensemble (its heads are
linear layers), a head alone (a branched model's head needs the trunk and its own branch:
one backbone), a distilled student and the independent ensemble's distilled head; m for the
independent ensemble of m models; a branched ensemble's backbone compute for its
concatenated embedding; a compressed row costs what its source's embedding costs.
"""

from __future__ import annotations

from typing import Sequence

from lossensemble.config import Config

__all__ = ["train_images", "train_costs", "query_costs", "backbone_multiple"]


def train_images(cfg: Config) -> tuple[float, bool]:
    """``(epochs x steps per epoch x batch size, exact)``: images through the backbone while training ``cfg``.

    Without ``train.steps_per_epoch`` (one pass over the training set per epoch) the steps
    per epoch are not known from the config alone: they count as 1 and ``exact`` is False
    (ratios between configs of the same data are still right).
    """
    t = cfg.train
    return float(t.epochs * (t.steps_per_epoch or 1) * cfg.data.batch_size), t.steps_per_epoch is not None


def backbone_multiple(cfg: Config) -> float:
    """Backbone compute per image of ``cfg``'s model as a multiple of one backbone (1 unless ``model.branch_at``)."""
    branch_at = int(getattr(cfg.model, "branch_at", 0) or 0)
    if not branch_at:
        return 1.0
    from lossensemble.models.branching import backbone_cost

    owners = sum(loss.head is None for loss in cfg.losses)
    return backbone_cost(cfg.model.backbone, branch_at, owners, cfg.data.image_size)


def query_costs(methods: Sequence, cfg: Config) -> dict[str, float]:
    """Each row's backbone compute to embed one query, as a multiple of one backbone (see the module doc)."""
    by_name = {m.name: m for m in methods}
    singles = sum(m.group == "single" for m in methods)

    def cost(m, depth: int = 0) -> float:
        if m.kind == "independent":
            return float(singles)
        if m.kind == "compressed" and m.source in by_name and depth < len(methods):
            return cost(by_name[m.source], depth + 1)
        if m.kind == "train" and m.embedding == "ensemble" and m.cfg is not None:
            return backbone_multiple(m.cfg)
        return 1.0

    return {m.name: cost(m) for m in methods}


def train_costs(methods: Sequence, cfg: Config) -> dict[str, float | None]:
    """Each method's training cost as a multiple of one single-loss run of ``cfg`` (None: not known).

    ``methods`` are :class:`~lossensemble.experiments.catalogue.Method` rows; a row whose
    config is not fixed yet (``single-long`` before the best single loss is chosen) is
    costed from its ``factor`` on the reference run.
    """
    unit, unit_exact = train_images(cfg)
    by_name = {m.name: m for m in methods}
    costs: dict[str, float | None] = {}

    def ratio(mcfg: Config) -> float | None:
        images, exact = train_images(mcfg)
        return images * backbone_multiple(mcfg) / unit if exact == unit_exact else None

    def singles(seen: tuple[str, ...]) -> float | None:
        parts = [cost(s.name, seen) for s in methods if s.group == "single"]
        return float(sum(parts)) if parts and all(p is not None for p in parts) else None

    def cost(name: str, seen: tuple[str, ...] = ()) -> float | None:
        if name in costs:
            return costs[name]
        m = by_name.get(name)
        if m is None or name in seen:
            return None
        if m.kind == "train":
            value = ratio(m.cfg) if m.cfg is not None else None
        elif m.kind == "single-long":
            value = ratio(m.cfg) if m.cfg is not None else float(m.factor)
        elif m.kind in ("independent", "independent-compressed"):
            value = singles(seen + (name,))
        elif m.kind == "distilled":
            if m.source:  # a shared teacher: one (possibly branched) backbone
                source = by_name.get(m.source)
                backbones = backbone_multiple(source.cfg) if source is not None and source.cfg is not None else 1.0
            else:  # the independent ensemble: one backbone per single-loss model
                backbones = sum(s.group == "single" for s in methods)
            teacher = cost(m.source, seen + (name,)) if m.source else singles(seen + (name,))
            value = None if teacher is None else teacher + float(m.student_factor) * (1 + backbones)
        else:  # heads, best-head, compressed: the source run's cost
            value = cost(m.source, seen + (name,)) if m.source else None
        costs[name] = value
        return value

    return {m.name: cost(m.name) for m in methods}
