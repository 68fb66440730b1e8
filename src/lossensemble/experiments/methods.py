"""The method families of ``lossensemble compare`` by name (no heavy imports: the CLI's --help reads them)."""

from __future__ import annotations

from typing import Iterable

__all__ = ["METHOD_FAMILIES", "METHOD_CHOICES", "DEFAULT_METHODS", "METHOD_PRESETS", "DEFAULT_LONG_FACTOR",
           "expand_methods", "methods_help"]

#: Method families accepted by ``compare --methods``, in table order, with one line each.
METHOD_FAMILIES: dict[str, str] = {
    "single": "each loss alone; always run",
    "equal": "ensemble, fixed equal weights",
    "learned": "ensemble, the paper (learned weights, running-mean scale, the paper's prior)",
    "uncertainty": "ensemble, uncertainty weighting",
    "compressed": "the learned ensemble (and learned-long, when run) compressed post hoc",
    "equal-scaled": "ablation: equal weights with running-mean scale normalisation",
    "learned-noscale": "ablation: learned weights without scale normalisation",
    "gradnorm": "ensemble, GradNorm-style weighting (opt-in)",
    "single-long": "the best single loss (chosen on validation classes) trained --long-factor times longer (opt-in)",
    "learned-long": "the learned ensemble trained --long-factor times longer (opt-in)",
    "independent": "single-loss models concatenated, and distilled into one head (no extra ensemble training)",
    "heads": "the equal ensemble's heads alone",
    "distilled-independent": "a new one-head network trained end to end on the independent ensemble's distances "
                             "(--student-factor times a single run's steps; opt-in)",
    "distilled-shared": "a new one-head network trained end to end on the learned ensemble's distances "
                        "(--student-factor times a single run's steps; opt-in)",
    "branched": "the learned ensemble with partial sharing (model.branch_at), at every branch point of the backbone "
                "(opt-in)",
    "best-head": "each trained ensemble's best head, chosen on validation classes, alone (opt-in)",
}
METHOD_CHOICES: tuple[str, ...] = tuple(METHOD_FAMILIES)
#: Families that run only when asked for.
OPT_IN: tuple[str, ...] = ("gradnorm", "single-long", "learned-long", "best-head", "distilled-independent",
                           "distilled-shared", "branched")
#: What ``compare`` runs when no ``--methods`` is given.
DEFAULT_METHODS: tuple[str, ...] = tuple(m for m in METHOD_CHOICES if m not in OPT_IN)
#: Names that ``--methods`` expands into several families.
METHOD_PRESETS: dict[str, tuple[str, ...]] = {
    "study": ("single", "learned", "compressed", "single-long", "learned-long", "independent", "heads", "best-head",
              "distilled-independent", "distilled-shared", "branched"),
}
#: How many times longer ``single-long``/``learned-long`` train (``compare --long-factor``).
DEFAULT_LONG_FACTOR = 4


def expand_methods(values: Iterable[str]) -> list[str]:
    """``--methods`` values with presets replaced by their families (order kept, duplicates dropped)."""
    out: list[str] = []
    for v in values:
        for family in METHOD_PRESETS.get(v, (v,)):
            if family not in out:
                out.append(family)
    return out


def methods_help() -> str:
    """One line listing every family and what it is, and the presets (for ``--help``)."""
    families = "; ".join(f"{name} ({what})" for name, what in METHOD_FAMILIES.items())
    presets = "; ".join(f"{name} = {' '.join(fams)}" for name, fams in METHOD_PRESETS.items())
    return f"{families}. Presets: {presets}"
