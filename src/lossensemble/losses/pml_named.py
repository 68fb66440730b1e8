"""Any pytorch-metric-learning (pml) loss or miner by name: ``pml:<ClassName>`` in a config.

``losses: [{name: "pml:MultiSimilarityLoss", options: {...}, miner: {name:
"pml:MultiSimilarityMiner", options: {...}}}]`` builds pml's own class, so every loss and
miner pml has can join the ensemble without a wrapper written for it. Options are
checked against the class's constructor signature (and those of the pml base classes
its ``**kwargs`` reach): an unknown option or a value of the wrong type is a one-line
:class:`~lossensemble.errors.UserError` naming the loss and listing the valid options.
``num_classes`` and ``embedding_size`` (proxy and classification losses such as
``pml:ProxyAnchorLoss`` or ``pml:ArcFaceLoss``) are filled in from the run. Options
that pml expects as objects (``distance``, ``reducer``, ``embedding_regularizer``,
``weight_regularizer``) are given by pml class name, e.g. ``distance: CosineSimilarity``
or ``{name: LpDistance, options: {power: 2}}``.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Mapping

from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning import reducers as pml_reducers
from pytorch_metric_learning import regularizers as pml_regularizers
from torch import nn

from lossensemble.errors import UserError
from lossensemble.losses.base import MetricLoss, register_loss_prefix
from lossensemble.losses.pml import PMLLoss
from lossensemble.registry import check_options

__all__ = ["PREFIX", "PMLNamedLoss", "pml_loss_names", "pml_miner_names", "pml_options", "build_pml_loss",
           "build_miner", "attach_miner"]

PREFIX = "pml:"

#: pml classes that are bases, mixins or wrappers of other losses (they need objects a config cannot give).
_NOT_LOSSES = {"BaseMetricLossFunction", "GenericPairLoss", "EmbeddingRegularizerMixin", "WeightRegularizerMixin",
               "BaseLossWrapper", "CrossBatchMemory", "MultipleLosses", "SelfSupervisedLoss", "VICRegLoss"}
_NOT_MINERS = {"BaseMiner", "EmbeddingsAlreadyPackagedAsTriplets"}
#: Filled in from the run, never by the user.
_AUTOMATIC = {"num_classes": "num_classes", "embedding_size": "embedding_dim", "descriptors_dim": "embedding_dim"}
#: Options whose value is a pml object, given by class name: option -> the pml module holding the classes.
_OBJECT_OPTIONS = {"distance": pml_distances, "reducer": pml_reducers,
                   "embedding_regularizer": pml_regularizers, "weight_regularizer": pml_regularizers}


def _classes(module: Any, base: type, excluded: set[str]) -> dict[str, type]:
    return {n: c for n, c in vars(module).items()
            if isinstance(c, type) and issubclass(c, base) and n not in excluded and not n.startswith("_")}


def pml_loss_names() -> list[str]:
    """The pml losses usable by name (``pml:<name>``), sorted."""
    return sorted(_classes(pml_losses, pml_losses.BaseMetricLossFunction, _NOT_LOSSES))


def pml_miner_names() -> list[str]:
    """The pml miners usable by name (``pml:<name>``), sorted."""
    return sorted(_classes(pml_miners, pml_miners.BaseMiner, _NOT_MINERS))


def _lookup(kind: str, name: str, table: dict[str, type]) -> type:
    """The pml class ``name`` (with or without the ``pml:`` prefix); UserError with the closest names."""
    short = name[len(PREFIX):] if name.startswith(PREFIX) else name
    if short in table:
        return table[short]
    close = difflib.get_close_matches(short, list(table), n=3, cutoff=0.5)
    if not close:
        close = [n for n in table if n.lower() == short.lower()]
    hint = f"did you mean {', '.join(repr(PREFIX + c) for c in close)}? " if close else ""
    raise UserError(f"unknown pytorch-metric-learning {kind} {name!r}; {hint}"
                    f"available: {', '.join(PREFIX + n for n in sorted(table))}")


def pml_options(cls: type) -> dict[str, Any]:
    """The settable options of pml class ``cls`` with their defaults (``inspect.Parameter.empty``: required).

    Walks the class hierarchy while constructors pass ``**kwargs`` on, so base-class
    options (``reducer``, ``distance``, ``embedding_regularizer``...) are included;
    ``num_classes`` / ``embedding_size`` (filled in automatically) and callables
    (``weight_init_func``) are not.
    """
    options: dict[str, Any] = {}
    for klass, params in _constructors(cls):
        for p in params:
            if p.name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name in _AUTOMATIC:
                continue
            # a base class's required argument (GenericPairLoss's mat_based_loss) is the subclass's to pass
            if p.name != "weight_init_func" and (klass is cls or p.default is not p.empty):
                options.setdefault(p.name, p.default)
    return options


def _constructors(cls: type) -> list[tuple[type, list[inspect.Parameter]]]:
    """``(class, its __init__ parameters)`` along the MRO while each constructor passes ``*args/**kwargs`` on."""
    out = []
    for klass in cls.__mro__:
        if klass in (nn.Module, object) or "__init__" not in vars(klass):
            continue
        params = list(inspect.signature(klass.__init__).parameters.values())
        out.append((klass, params))
        if not any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params):
            break
    return out


def _checked(label: str, cls: type, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` checked against ``cls``'s constructor (names and types); object options resolved."""
    if not isinstance(options, Mapping):
        raise UserError(f"{label}: options must be a mapping, got {options!r}")
    spec = pml_options(cls)
    for auto in _AUTOMATIC:
        if auto in options:
            raise UserError(f"{label}: option '{auto}' is filled in automatically; remove it")
    # pml writes many float options with int defaults (alpha=2): those take any number, as given.
    numeric = {k for k, v in spec.items() if isinstance(v, int) and not isinstance(v, bool)}
    target = _signature_holder({k: (None if k in _OBJECT_OPTIONS or k in numeric else v) for k, v in spec.items()})
    checked = check_options(label, target, options)
    for key in numeric & set(checked):
        value = checked[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{label}: option '{key}' expects a number like {spec[key]!r}, got {value!r}")
    missing = [k for k, v in spec.items() if v is inspect.Parameter.empty and k not in checked]
    if missing:
        raise UserError(f"{label}: needs option(s) {', '.join(missing)}")
    for key, module in _OBJECT_OPTIONS.items():
        if key in checked and checked[key] is not None:
            checked[key] = _object_option(label, key, checked[key], module)
    return checked


def _signature_holder(spec: Mapping[str, Any]):
    """A callable whose keyword-only parameters are ``spec`` (what :func:`check_options` reads)."""
    def holder(**kwargs: Any) -> None:  # pragma: no cover - never called
        return None

    holder.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in spec.items()])
    return holder


def _object_option(label: str, key: str, value: Any, module: Any) -> Any:
    """The pml object named by ``value`` (``"CosineSimilarity"`` or ``{name: ..., options: {...}}``)."""
    name, options = (value, {}) if isinstance(value, str) else (
        (value.get("name"), value.get("options", {})) if isinstance(value, Mapping) else (None, None))
    table = {n: c for n, c in vars(module).items() if isinstance(c, type) and not n.startswith(("Base", "_"))}
    if not isinstance(name, str) or name.removeprefix(PREFIX) not in table:
        raise UserError(f"{label}: option '{key}' must name one of {', '.join(sorted(table))}, got {value!r}")
    cls = table[name.removeprefix(PREFIX)]
    return _construct(f"{label}: {key} {name!r}", cls, _checked(f"{label}: {key} {name!r}", cls, options or {}))


def _construct(label: str, cls: type, kwargs: dict[str, Any]) -> Any:
    try:
        return cls(**kwargs)
    except UserError:
        raise
    except (TypeError, ValueError, AssertionError, KeyError) as exc:
        raise UserError(f"{label}: invalid options {kwargs}: {exc}") from exc


@register_loss_prefix(PREFIX)
class PMLNamedLoss(PMLLoss):
    """A pml loss chosen by class name (``pml:<ClassName>``), with an optional pml miner.

    ``loss`` is pml's module (its proxies or class weights are parameters of this one);
    :meth:`compute` runs ``miner(embeddings, labels)`` then ``loss(embeddings, labels, indices)``.
    """

    normalize = True

    def __init__(self, num_classes: int, embedding_dim: int, pml_name: str, options: Mapping[str, Any]) -> None:
        super().__init__(num_classes, embedding_dim)
        cls = _lookup("loss", pml_name, _classes(pml_losses, pml_losses.BaseMetricLossFunction, _NOT_LOSSES))
        self.name = PREFIX + cls.__name__
        label = f"loss '{self.name}'"
        kwargs = _checked(label, cls, options)
        accepted = {p.name for _, params in _constructors(cls) for p in params}
        kwargs.update({k: num_classes if attr == "num_classes" else embedding_dim
                       for k, attr in _AUTOMATIC.items() if k in accepted})
        self.loss = _construct(label, cls, kwargs)


def build_pml_loss(name: str, *, num_classes: int, embedding_dim: int, **options: Any) -> MetricLoss:
    """The pml loss ``name`` (``pml:<ClassName>``) for ``num_classes`` classes, options checked."""
    return PMLNamedLoss(num_classes, embedding_dim, name, options)


def build_miner(spec: Any) -> nn.Module:
    """The pml miner of a loss entry's ``miner``: ``"pml:Name"`` or ``{name: "pml:Name", options: {...}}``."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise UserError(f"miner: expected {{name: pml:<Miner>, options: {{...}}}}, got {spec!r}")
    extra = sorted(set(spec) - {"name", "options"})
    if extra:
        raise UserError(f"miner: unknown key(s) {', '.join(map(str, extra))}; a miner takes name and options")
    cls = _lookup("miner", spec["name"], _classes(pml_miners, pml_miners.BaseMiner, _NOT_MINERS))
    label = f"miner '{PREFIX}{cls.__name__}'"
    return _construct(label, cls, _checked(label, cls, spec.get("options") or {}))


def attach_miner(loss: MetricLoss, spec: Any) -> MetricLoss:
    """Give ``loss`` the pml miner ``spec`` (replacing its own); only pml-backed losses take one."""
    if not isinstance(loss, PMLLoss):
        raise UserError(f"loss '{loss.name}': takes no miner (only pytorch-metric-learning losses do: "
                        f"pml:<Loss> or one of the built-in pml-backed losses)")
    loss.miner = build_miner(spec)
    return loss
