"""The method catalogue of ``lossensemble compare``: which rows a comparison has and how each is obtained."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from lossensemble.config import Config
from lossensemble.errors import UserError
from lossensemble.experiments.methods import (
    DEFAULT_LONG_FACTOR,
    DEFAULT_METHODS,
    METHOD_CHOICES,
    METHOD_PRESETS,
    expand_methods,
)
from lossensemble.experiments.runs import long_config, single_loss_config, with_changes

log = logging.getLogger("lossensemble.experiments")

__all__ = ["PAPER_PRIOR", "METHOD_CHOICES", "DEFAULT_METHODS", "Method", "paper_config", "weighting_config",
           "comparison_methods", "concrete_single_long"]


#: The paper's prior weights for its four losses (docs/method.md); other losses get 1.
PAPER_PRIOR = {"classification": 2.0, "triplet": 1.0, "binomial": 2.0, "proxy_nca": 3.0}

@dataclass(frozen=True)
class Method:
    """One row of a comparison and how its embedding is obtained.

    ``kind``: ``train`` (a run folder trained from ``cfg``), ``heads`` (one head of the
    ``source`` run, read from its metrics.json), ``best-head`` (the ``source`` run's head with
    the best validation MAP@R), ``compressed`` (the ``source`` run's compressed embedding,
    post hoc unless trained jointly), ``independent`` (the single-loss runs' embeddings
    concatenated, no training), ``single-long`` (the validation-chosen best single loss
    trained ``factor`` times longer; ``cfg`` and ``embedding`` are set once it is chosen) or
    ``distilled`` (a new one-head network trained end to end on a teacher's distances for
    ``student_factor`` times a single run's steps; the teacher is the ``source`` run's
    ``ensemble`` or, without ``source``, the independent ensemble of the single-loss runs;
    ``embedding`` is set per seed; with ``student_labels`` > 0 the student also trains on the labels with the
    best single loss, at that weight). ``embedding`` is the key in metrics.json.
    """

    name: str
    kind: str
    embedding: str
    group: str
    description: str
    cfg: Config | None = None
    source: str | None = None
    factor: int = 1
    student_factor: float = 1.0
    student_labels: float = 0.0


def paper_config(cfg: Config, scale: str = "running_mean") -> Config:
    """The paper's weighting on ``cfg``'s losses: learned weights, the paper's prior, ``scale``."""
    prior = [PAPER_PRIOR.get(loss.name, 1.0) for loss in cfg.losses]
    return with_changes(cfg, weighting=dict(scheme="learned", scale=scale, prior=prior))


def weighting_config(cfg: Config, scheme: str, scale: str) -> Config:
    """``cfg`` with another weighting scheme/scale (prior and fixed weights cleared)."""
    return with_changes(cfg, weighting=dict(scheme=scheme, scale=scale, prior=None, weights=None))


def _single_methods(cfg: Config) -> list[Method]:
    return [Method(f"single-{loss.name}", "train", f"heads.{loss.name}", "single",
                   f"{loss.name} alone (one head, same backbone and budget)", single_loss_config(cfg, loss.name))
            for loss in cfg.losses]


def _ensemble_methods(cfg: Config) -> dict[str, Method]:
    """The trained ensemble variants by family name."""
    return {
        "equal": Method("equal", "train", "ensemble", "ensemble", "ensemble, fixed equal weights, no scale "
                        "normalisation", weighting_config(cfg, "equal", "none")),
        "learned": Method("learned", "train", "ensemble", "ensemble", "ensemble, the paper: learned weights, "
                          "running-mean scale normalisation, the paper's prior", paper_config(cfg)),
        "uncertainty": Method("uncertainty", "train", "ensemble", "ensemble", "ensemble, uncertainty weighting "
                              "(Kendall et al.), no scale normalisation", weighting_config(cfg, "uncertainty", "none")),
        "equal-scaled": Method("equal-scaled", "train", "ensemble", "ablation", "ablation: equal weights with "
                               "running-mean scale normalisation", weighting_config(cfg, "equal", "running_mean")),
        "learned-noscale": Method("learned-noscale", "train", "ensemble", "ablation", "ablation: the paper's "
                                  "learned weights without scale normalisation", paper_config(cfg, scale="none")),
        "gradnorm": Method("gradnorm", "train", "ensemble", "ensemble", "ensemble, GradNorm-style gradient "
                           "balancing", None),
    }


def comparison_methods(cfg: Config, families: list[str] | tuple[str, ...] = DEFAULT_METHODS,
                       long_factor: int = DEFAULT_LONG_FACTOR, student_factor: float = 1.0,
                       student_labels: float = 0.0) -> list[Method]:
    """The rows of a comparison of ``cfg``'s losses, in table order.

    Single-loss runs are always included (the gains are measured against the best of
    them). ``compressed`` needs ``learned`` and ``heads`` needs ``equal``: those runs are
    trained too (with ``learned-long``, ``compressed`` also compresses that run).
    ``single-long``/``learned-long`` train ``long_factor`` times the steps;
    ``best-head`` adds a ``<method>-best-head`` row after every trained ensemble;
    ``distilled-shared`` needs ``learned`` (its teacher), and the distilled students train
    ``student_factor`` times a single run's steps. Presets (``study``) are expanded;
    ``branched`` from a preset is left out (logged) where the backbone has no stages or is
    frozen, and asked for by name it is an error there. Raises :class:`UserError` for an unknown
    family, and for ``single-long``/``best-head`` without validation classes (they choose on them).
    """
    explicit = set(families)
    families = expand_methods(families)
    problem = _branch_problem(cfg) if "branched" in families and "branched" not in explicit else None
    if problem:
        log.info("--methods %s: leaving out 'branched' (%s)", " ".join(explicit), problem)
        families = [f for f in families if f != "branched"]
    unknown = [f for f in families if f not in METHOD_CHOICES]
    if unknown:
        raise UserError(f"--methods: unknown {', '.join(unknown)} (choose from {', '.join(METHOD_CHOICES)}; "
                        f"or a preset: {', '.join(METHOD_PRESETS)})")
    if len(cfg.losses) < 2:
        raise UserError("compare needs a config with at least two losses (an ensemble)")
    wanted = set(families) | {"single"}
    if "compressed" in wanted:
        wanted.add("learned")
    if "heads" in wanted:
        wanted.add("equal")
    if "distilled-shared" in wanted:
        wanted.add("learned")
    needs_val = sorted(wanted & {"single-long", "best-head"})
    if needs_val and not cfg.data.val_fraction:
        raise UserError(f"--methods {' '.join(needs_val)} chooses on validation classes, and the config has none: "
                        "set data.val_fraction (e.g. data.val_fraction=0.2)")
    ensembles = _ensemble_methods(cfg)
    if "learned-long" in wanted:
        ensembles["learned-long"] = _long_learned(ensembles["learned"], long_factor)
    if "gradnorm" in wanted:
        ensembles["gradnorm"] = _gradnorm_method(ensembles["gradnorm"], cfg)
    out: list[Method] = []
    for family in METHOD_CHOICES:
        if family not in wanted:
            continue
        if family == "single":
            out.extend(_single_methods(cfg))
        elif family in ensembles:
            out.append(ensembles[family])
            if family == "learned-long" and "compressed" in wanted:
                out.append(Method("learned-long-compressed", "compressed", "compressed", "compressed",
                                  "the long learned ensemble compressed to one head's size (distance matching)",
                                  source="learned-long"))
        elif family == "single-long":
            out.append(Method("single-long", "single-long", "", "long", f"the best single loss (chosen on the "
                              f"validation classes) trained {long_factor}x the steps, same schedule shape",
                              factor=int(long_factor)))
        elif family == "compressed":
            out.append(Method("learned-compressed", "compressed", "compressed", "compressed",
                              "the learned ensemble compressed to one head's size (distance matching)",
                              source="learned"))
        elif family == "independent":
            out.append(Method("independent", "independent", "independent", "baseline",
                              f"the {len(cfg.losses)} single-loss models' embeddings concatenated, equal weights "
                              f"({len(cfg.losses)}x training and inference cost)"))
            out.append(Method("independent-compressed", "independent-compressed", "independent-compressed",
                              "compressed", "the independent ensemble distilled into one linear head on the best "
                              "single model's backbone (1x inference cost)"))
        elif family == "branched":
            out.extend(_branched_methods(cfg))
        elif family in ("distilled-independent", "distilled-shared"):
            out.append(_distilled(family, cfg, student_factor, student_labels))
        elif family == "heads":
            out.extend(Method(f"equal-head-{loss.name}", "heads", f"heads.{loss.name}", "heads",
                              f"the {loss.name} head of the equal-weight ensemble, alone", source="equal")
                       for loss in cfg.losses)
    if "best-head" in wanted:
        out = _with_best_heads(out)
    return out


def _branch_problem(cfg: Config) -> str | None:
    """Why ``branched`` cannot run on ``cfg`` (None: it can)."""
    from lossensemble.models.branching import STAGE_COUNTS

    if cfg.model.branch_at:
        return f"it sets model.branch_at itself; the config has model.branch_at={cfg.model.branch_at}: set it to 0"
    if cfg.model.backbone not in STAGE_COUNTS:
        return f"partial sharing is available for {', '.join(STAGE_COUNTS)}, not {cfg.model.backbone!r}"
    if cfg.model.freeze_backbone:
        return "partial sharing trains the copied stages apart, and model.freeze_backbone=true keeps them fixed"
    return None


def _branched_methods(cfg: Config) -> list[Method]:
    """``learned-branch<k>``: the learned ensemble with the backbone's last k stages once per head, every k."""
    from lossensemble.models.branching import STAGE_COUNTS

    problem = _branch_problem(cfg)
    if problem:
        raise UserError(f"--methods branched: {problem}")
    backbone = cfg.model.backbone
    learned = paper_config(cfg)
    return [Method(f"learned-branch{k}", "train", "ensemble", "branched", f"the learned ensemble with the last {k} "
                   f"of {backbone}'s {STAGE_COUNTS[backbone]} stages once per loss (model.branch_at={k}), the rest "
                   "shared", with_changes(learned, model=dict(branch_at=k)))
            for k in range(1, STAGE_COUNTS[backbone] + 1)]


def _long_learned(learned: Method, factor: int) -> Method:
    return Method("learned-long", "train", "ensemble", "long", f"the learned ensemble (the paper) trained {factor}x "
                  "the steps, same schedule shape", long_config(learned.cfg, factor), factor=int(factor))


def _distilled(family: str, cfg: Config, factor: float, labels: float = 0.0) -> Method:
    """The row of a student network distilled end to end from the independent or the learned (shared) ensemble."""
    if not (isinstance(factor, (int, float)) and 0 < factor < float("inf")):
        raise UserError(f"--student-factor: must be a number > 0, got {factor!r}")
    if not (isinstance(labels, (int, float)) and 0 <= labels < float("inf")):
        raise UserError(f"--student-labels: must be a number >= 0, got {labels!r}")
    with_labels = f", plus the best single loss on the labels at weight {labels:g}" if labels else ""
    teacher = (f"the independent ensemble of the {len(cfg.losses)} single-loss models" if family.endswith("independent")
               else "the learned ensemble (the paper)")
    return Method(family, "distilled", "", "distilled", f"a new one-backbone, one-head network trained end to end "
                  f"to reproduce the distances of {teacher} (distance matching{with_labels}, {factor:g}x a single "
                  "run's steps; 1x inference cost)", source=None if family.endswith("independent") else "learned",
                  student_factor=float(factor), student_labels=float(labels))


def _with_best_heads(methods: list[Method]) -> list[Method]:
    """``methods`` and, at the end, a ``<name>-best-head`` row for each trained ensemble (in their order)."""
    return methods + [Method(f"{m.name}-best-head", "best-head", "", "best-head", f"the head of {m.name} with the "
                             "best validation MAP@R, alone (one head's query cost)", source=m.name)
                      for m in methods if m.kind == "train" and m.embedding == "ensemble"]


def concrete_single_long(method: Method, cfg: Config, loss: str) -> Method:
    """The ``single-long`` row once its loss is chosen: the single-loss config of ``loss`` at ``method.factor``."""
    return Method(method.name, method.kind, f"heads.{loss}", method.group,
                  f"the best single loss ({loss}, chosen on the validation classes) trained {method.factor}x the "
                  "steps, same schedule shape", long_config(single_loss_config(cfg, loss), method.factor),
                  factor=method.factor)


def _gradnorm_method(method: Method, cfg: Config) -> Method:
    """The gradnorm row with its config, or a clear error when this build has no such scheme."""
    try:
        mcfg = weighting_config(cfg, "gradnorm", "none")
    except UserError as exc:
        raise UserError(f"--methods gradnorm: this build has no 'gradnorm' weighting ({exc})") from None
    return Method(method.name, method.kind, method.embedding, method.group, method.description, mcfg)
