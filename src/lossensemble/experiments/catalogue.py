"""The method catalogue of ``lossensemble compare``: which rows a comparison has and how each is obtained."""

from __future__ import annotations

from dataclasses import dataclass

from lossensemble.config import Config
from lossensemble.errors import UserError
from lossensemble.experiments.methods import DEFAULT_METHODS, METHOD_CHOICES
from lossensemble.experiments.runs import single_loss_config, with_changes

__all__ = ["PAPER_PRIOR", "METHOD_CHOICES", "DEFAULT_METHODS", "Method", "paper_config", "weighting_config",
           "comparison_methods"]


#: The paper's prior weights for its four losses (docs/method.md); other losses get 1.
PAPER_PRIOR = {"classification": 2.0, "triplet": 1.0, "binomial": 2.0, "proxy_nca": 3.0}

@dataclass(frozen=True)
class Method:
    """One row of a comparison and how its embedding is obtained.

    ``kind``: ``train`` (a run folder trained from ``cfg``), ``heads`` (one head of the
    ``source`` run, read from its metrics.json), ``compressed`` (the ``source`` run's
    compressed embedding, post hoc unless trained jointly) or ``independent`` (the single-loss
    runs' embeddings concatenated, no training). ``embedding`` is the key in metrics.json.
    """

    name: str
    kind: str
    embedding: str
    group: str
    description: str
    cfg: Config | None = None
    source: str | None = None


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


def comparison_methods(cfg: Config, families: list[str] | tuple[str, ...] = DEFAULT_METHODS) -> list[Method]:
    """The rows of a comparison of ``cfg``'s losses, in table order.

    Single-loss runs are always included (the gains are measured against the best of
    them). ``compressed`` needs ``learned`` and ``heads`` needs ``equal``: those runs are
    trained too. Raises :class:`UserError` for an unknown family.
    """
    unknown = [f for f in families if f not in METHOD_CHOICES]
    if unknown:
        raise UserError(f"--methods: unknown {', '.join(unknown)} (choose from {', '.join(METHOD_CHOICES)})")
    if len(cfg.losses) < 2:
        raise UserError("compare needs a config with at least two losses (an ensemble)")
    wanted = set(families) | {"single"}
    if "compressed" in wanted:
        wanted.add("learned")
    if "heads" in wanted:
        wanted.add("equal")
    ensembles = _ensemble_methods(cfg)
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
        elif family == "heads":
            out.extend(Method(f"equal-head-{loss.name}", "heads", f"heads.{loss.name}", "heads",
                              f"the {loss.name} head of the equal-weight ensemble, alone", source="equal")
                       for loss in cfg.losses)
    return out


def _gradnorm_method(method: Method, cfg: Config) -> Method:
    """The gradnorm row with its config, or a clear error when this build has no such scheme."""
    try:
        mcfg = weighting_config(cfg, "gradnorm", "none")
    except UserError as exc:
        raise UserError(f"--methods gradnorm: this build has no 'gradnorm' weighting ({exc})") from None
    return Method(method.name, method.kind, method.embedding, method.group, method.description, mcfg)
