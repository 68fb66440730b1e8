"""The method families of ``lossensemble compare`` by name (no heavy imports: the CLI's --help reads them)."""

from __future__ import annotations

__all__ = ["METHOD_FAMILIES", "METHOD_CHOICES", "DEFAULT_METHODS", "methods_help"]

#: Method families accepted by ``compare --methods``, in table order, with one line each.
METHOD_FAMILIES: dict[str, str] = {
    "single": "each loss alone; always run",
    "equal": "ensemble, fixed equal weights",
    "learned": "ensemble, the paper (learned weights, running-mean scale, the paper's prior)",
    "uncertainty": "ensemble, uncertainty weighting",
    "compressed": "the learned ensemble compressed post hoc",
    "equal-scaled": "ablation: equal weights with running-mean scale normalisation",
    "learned-noscale": "ablation: learned weights without scale normalisation",
    "gradnorm": "ensemble, GradNorm-style weighting (opt-in)",
    "independent": "single-loss models concatenated, and distilled into one head (no extra ensemble training)",
    "heads": "the equal ensemble's heads alone",
}
METHOD_CHOICES: tuple[str, ...] = tuple(METHOD_FAMILIES)
#: What ``compare`` runs when no ``--methods`` is given (``gradnorm`` is opt-in).
DEFAULT_METHODS: tuple[str, ...] = tuple(m for m in METHOD_CHOICES if m != "gradnorm")


def methods_help() -> str:
    """One line listing every family and what it is (for ``--help``)."""
    return "; ".join(f"{name} ({what})" for name, what in METHOD_FAMILIES.items())
