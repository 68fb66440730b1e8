"""The loss registry: :class:`MetricLoss`, :func:`register_loss`, :func:`build_loss`.

Every baseline learner of the ensemble is a :class:`MetricLoss` registered under a name.
A loss's options are the keyword-only arguments of its constructor (with defaults);
:func:`build_loss` checks the options a config gives against them (unknown names and
wrong types become a :class:`~lossensemble.errors.UserError` naming the loss and the
option) before constructing the loss.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from lossensemble.errors import UserError
from lossensemble.registry import Registry, check_options, keyword_options

__all__ = ["MetricLoss", "LOSSES", "register_loss", "register_loss_prefix", "available_losses", "build_loss",
           "loss_options"]


class MetricLoss(nn.Module):
    """One metric-learning loss on a batch of embeddings and their class labels.

    Subclasses implement :meth:`compute`; :meth:`forward` runs it in float32 with
    autocast disabled (losses with exponentials and large scales are not safe in
    float16, and pytorch-metric-learning would otherwise cast its own parameters to
    half precision). Parameters of a loss (classifier weights, proxies, class
    centres) are ordinary ``nn.Parameter``s of the module.

    Class attributes:
        name: the registry name (set by :func:`register_loss`).
        normalize: whether the model's head should L2-normalise its output for this
            loss (True for pair and proxy losses, False for classification).
    """

    name: ClassVar[str] = ""
    normalize: ClassVar[bool] = True

    def __init__(self, num_classes: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.embedding_dim = int(embedding_dim)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The scalar loss of ``embeddings`` [B, d] with integer ``labels`` [B]."""
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return self.compute(embeddings.float(), labels.to(device=embeddings.device, dtype=torch.long))

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:  # pragma: no cover - abstract
        """The loss itself, on float32 embeddings and long labels."""
        raise NotImplementedError

    def require(self, ok: bool, option: str, message: str) -> None:
        """Raise a UserError naming this loss and ``option`` unless ``ok``."""
        if not ok:
            raise UserError(f"loss '{self.name}': option '{option}' {message}")

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}"


LOSSES: Registry[type[MetricLoss]] = Registry("loss", key="losses", plural="losses")
"""Registry of loss classes by name (filled by :func:`register_loss`)."""

_L = TypeVar("_L", bound=type[MetricLoss])


def register_loss(name: str) -> Callable[[_L], _L]:
    """Class decorator registering a :class:`MetricLoss` subclass under ``name``."""
    return LOSSES.class_decorator(name, MetricLoss)


#: Loss families named by a prefix (``pml:<ClassName>``): prefix -> ``cls(num_classes, embedding_dim, name, options)``.
LOSS_PREFIXES: dict[str, type[MetricLoss]] = {}


def register_loss_prefix(prefix: str) -> Callable[[_L], _L]:
    """Class decorator making every name ``<prefix><rest>`` build ``cls(num_classes, embedding_dim, name, options)``."""

    def decorate(cls: _L) -> _L:
        LOSS_PREFIXES[prefix] = cls
        return cls

    return decorate


def available_losses() -> list[str]:
    """The registered loss names, sorted."""
    return sorted(LOSSES)


def loss_options(name: str) -> dict[str, Any]:
    """The options of loss ``name`` with their defaults (keyword-only constructor arguments)."""
    return keyword_options(LOSSES.get_or_raise(name))


def build_loss(name: str, *, num_classes: int, embedding_dim: int, **options: Any) -> MetricLoss:
    """Construct the registered loss ``name`` for ``num_classes`` training classes.

    Raises:
        UserError: unknown loss name (the message suggests the closest registered
            names), unknown option, an option of the wrong type or out of range.
    """
    prefixed = next((c for p, c in LOSS_PREFIXES.items() if isinstance(name, str) and name.startswith(p)), None)
    if prefixed is None and (not isinstance(name, str) or name not in LOSSES):
        raise UserError(LOSSES.unknown_message(name) + " (or pml:<ClassName>, any pytorch-metric-learning loss)")
    cls = prefixed or LOSSES[name]
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UserError(f"loss '{name}': num_classes must be a positive integer, got {num_classes!r}")
    if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
        raise UserError(f"loss '{name}': embedding_dim must be a positive integer, got {embedding_dim!r}")
    if prefixed is not None:
        return prefixed(num_classes, embedding_dim, name, options)
    checked = check_options(f"loss '{name}'", cls, options)
    try:
        return cls(num_classes=num_classes, embedding_dim=embedding_dim, **checked)
    except UserError:
        raise
    except (TypeError, ValueError, AssertionError) as exc:
        raise UserError(f"loss '{name}': invalid options {checked}: {exc}") from exc

