"""Loss entries of a config (``{name, options, miner, head}``) turned into loss modules.

One place reads a ``losses:`` entry for the trainer, :func:`validate_losses` and
:class:`~lossensemble.models.LossEnsemble`: the name (a registered loss or
``pml:<ClassName>``), its options, an optional pml ``miner`` and an optional ``head``
(the name of another loss whose embedding head this loss shares).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from torch import nn

from lossensemble.errors import UserError
from lossensemble.losses.base import MetricLoss, build_loss
from lossensemble.losses.pml_named import attach_miner

__all__ = ["LossEntry", "loss_entry", "build_loss_entry", "build_loss_entries", "shared_heads", "validate_losses"]


@dataclass
class LossEntry:
    """One loss of the ensemble: registry (or ``pml:``) name, options, pml miner, shared head."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    miner: Any = None
    head: str | None = None


def loss_entry(spec: Any) -> LossEntry:
    """A :class:`LossEntry` from a name, a mapping ``{name, options, miner, head}`` or a config's LossConfig."""
    if isinstance(spec, LossEntry):
        return spec
    if isinstance(spec, str):
        return LossEntry(spec)
    if isinstance(spec, Mapping):
        unknown = sorted(set(map(str, spec)) - {"name", "options", "miner", "head"})
        if unknown or not isinstance(spec.get("name"), str):
            raise UserError(f"losses: an entry is a name or {{name, options, miner, head}}, got {dict(spec)!r}")
        values = dict(spec)
    elif isinstance(getattr(spec, "name", None), str):
        values = {k: getattr(spec, k, None) for k in ("name", "options", "miner", "head")}
    else:
        raise UserError(f"losses: an entry is a name or {{name, options, miner, head}}, got {spec!r}")
    options = values.get("options") or {}
    if not isinstance(options, Mapping):
        raise UserError(f"loss '{values['name']}': options must be a mapping, got {options!r}")
    head = values.get("head")
    if head is not None and not isinstance(head, str):
        raise UserError(f"loss '{values['name']}': head must name another loss, got {head!r}")
    return LossEntry(values["name"], dict(options), values.get("miner"), head)


def build_loss_entry(spec: Any, *, num_classes: int, embedding_dim: int) -> MetricLoss:
    """The loss module of one entry, for ``num_classes`` training classes (miner attached)."""
    entry = loss_entry(spec)
    for auto in ("num_classes", "embedding_dim"):
        if auto in entry.options:
            raise UserError(f"loss '{entry.name}': option '{auto}' is filled in automatically; remove it")
    loss = build_loss(entry.name, num_classes=num_classes, embedding_dim=embedding_dim, **entry.options)
    return attach_miner(loss, entry.miner) if entry.miner is not None else loss


def build_loss_entries(specs: Sequence[Any], *, num_classes: int, embedding_dim: int) -> nn.ModuleList:
    """The loss modules of a ``losses`` list, in order."""
    return nn.ModuleList(
        [build_loss_entry(s, num_classes=num_classes, embedding_dim=embedding_dim) for s in specs])


def shared_heads(specs: Sequence[Any]) -> dict[str, str]:
    """``{loss name: name of the loss whose head it uses}`` for the entries with ``head:`` (checked).

    The named loss must be another loss of the list that has its own head (no chains).
    """
    entries = [loss_entry(s) for s in specs]
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise UserError(f"losses: each loss may appear once, got {names}")
    owners = {e.name: e.head for e in entries if e.head is not None}
    for name, head in owners.items():
        if head == name or head not in names:
            others = [n for n in names if n != name]
            raise UserError(f"loss '{name}': head must name another loss of the list ({', '.join(others)}), "
                            f"got {head!r}")
        if head in owners:
            raise UserError(f"loss '{name}': head '{head}' itself shares the head of '{owners[head]}'; "
                            f"name '{owners[head]}' instead")
    return owners


def validate_losses(specs: Any, embedding_dim: int) -> None:
    """Check loss names, options, miners and shared heads of a config's ``losses`` before any data is loaded.

    Each loss is built once for a dummy 2-class problem and thrown away, so a typo
    in a name or an option is reported in seconds, not after the dataset is ready.
    """
    shared_heads(specs)
    for spec in specs:
        build_loss_entry(spec, num_classes=2, embedding_dim=embedding_dim)
