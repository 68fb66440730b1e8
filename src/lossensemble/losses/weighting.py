"""How the per-loss terms of the ensemble are combined into one objective (docs/method.md).

A :class:`LossWeighting` takes the vector of raw losses of one batch (one entry per
baseline learner) and returns the scalar to back-propagate plus a dict of floats to
log. Two orthogonal choices:

* the **scheme** (how the weights ``w_k`` are obtained):

  - ``equal``: ``w_k = 1/m``;
  - ``fixed``: user weights normalised to sum 1;
  - ``learned`` (the paper, exactly): ``w_k = c_k^2 + 1/(4m)`` with free ``c_k``, plus
    the penalty ``P (sum_k w_k - 1)^2``; the weights are *not* renormalised;
  - ``uncertainty`` (Kendall, Gal & Cipolla 2018): learned log-variances ``s_k``;
  - ``gradnorm`` (simplified GradNorm, Chen et al. 2018): weights trained so that each
    loss's gradient norm at a shared tensor follows the common mean.

* the **scale** normalisation: ``none`` or ``running_mean`` (each raw loss multiplied by
  ``mean_j(Lbar_j) / Lbar_k``, ``Lbar_k`` the cumulative mean of loss k over all
  training batches so far, a constant without gradient).

``total = sum_k w_k * f_k * L_k + penalty`` for equal / fixed / learned; the
diversity regulariser is not included (the trainer adds it).
"""

from __future__ import annotations

import math
from typing import ClassVar, Sequence

import torch
from torch import Tensor, nn

from lossensemble.config import WeightingConfig
from lossensemble.errors import UserError
from lossensemble.registry import Registry, check_options, keyword_options

__all__ = [
    "SCHEMES",
    "WEIGHTINGS",
    "register_weighting",
    "RunningMeanScale",
    "LossWeighting",
    "EqualWeighting",
    "FixedWeighting",
    "LearnedWeighting",
    "UncertaintyWeighting",
    "GradNormWeighting",
    "build_weighting",
]


class RunningMeanScale(nn.Module):
    """Per-loss cumulative means of the raw losses and the scale factors derived from them.

    The means and counts are float64 buffers (saved in the state dict, so a resumed
    run continues with exactly the same factors). A non-finite loss value is not
    counted (the trainer stops on it; the means stay uncorrupted). The update has no
    host synchronisation.
    """

    def __init__(self, num_losses: int) -> None:
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(num_losses, dtype=torch.float64))
        self.register_buffer("running_count", torch.zeros(num_losses, dtype=torch.float64))

    @torch.no_grad()
    def update(self, raw_losses: Tensor) -> None:
        """Fold one batch's raw losses [m] into the cumulative means."""
        x = raw_losses.detach().to(self.running_mean.dtype)
        finite = torch.isfinite(x)
        count = self.running_count + finite.to(x.dtype)
        step = (torch.where(finite, x, 0.0) - self.running_mean) / count.clamp(min=1.0)
        self.running_mean.copy_(torch.where(finite, self.running_mean + step, self.running_mean))
        self.running_count.copy_(count)

    @torch.no_grad()
    def factors(self) -> Tensor:
        """``mean_j(Lbar_j) / Lbar_k`` per loss (float64, no gradient).

        A loss never observed or whose running mean is not positive gets factor 1
        (a zero mean would otherwise give an infinite factor) and is left out of
        ``mean_j``. No host synchronisation.
        """
        means = self.running_mean
        usable = (self.running_count > 0) & (means > 0)
        u = usable.to(means.dtype)
        overall = (means * u).sum() / u.sum().clamp(min=1.0)  # mean over the usable losses
        return torch.where(usable, overall / means.clamp(min=torch.finfo(means.dtype).tiny), 1.0)


class LossWeighting(nn.Module):
    """Combines the raw losses [m] of the ensemble into the scalar to back-propagate.

    Attributes:
        names: the loss names, in the order of ``raw_losses``.
        scale: ``"none"`` or ``"running_mean"``.
        needs_shared_tensor: True when :meth:`forward` must be given ``shared`` (the
            tensor all losses depend on, e.g. the backbone features) in training.

    Subclasses define :meth:`current_weights` and, if they add terms, :meth:`objective`.
    """

    scheme: ClassVar[str] = ""
    needs_shared_tensor: ClassVar[bool] = False

    def __init__(self, names: Sequence[str], *, scale: str = "none") -> None:
        super().__init__()
        names = list(names)
        if not names:
            raise UserError("weighting: needs at least one loss")
        if len(set(names)) != len(names):
            raise UserError(f"weighting: loss names must be unique, got {names}")
        if scale not in ("none", "running_mean"):
            raise UserError(f"weighting.scale: must be 'none' or 'running_mean', got {scale!r}")
        self.names = names
        self.scale = scale
        self.running = RunningMeanScale(len(names))

    @property
    def num_losses(self) -> int:
        return len(self.names)

    def current_weights(self) -> Tensor:
        """The weights [m], differentiable with respect to the scheme's parameters."""
        raise NotImplementedError  # pragma: no cover - abstract

    def weights(self) -> Tensor:
        """The current weights [m], detached (used for the sqrt(w)-weighted ensemble embedding)."""
        return self.current_weights().detach()

    def scale_factors(self) -> Tensor:
        """The factors [m] applied to the raw losses now (all 1 when scale is 'none')."""
        if self.scale == "running_mean":
            return self.running.factors()
        return torch.ones(self.num_losses, dtype=torch.float64, device=self.running.running_mean.device)

    def objective(self, raw: Tensor, scaled: Tensor, shared: Tensor | None) -> tuple[Tensor, Tensor]:
        """(total, penalty) from the raw and the scaled losses; default ``sum_k w_k scaled_k``."""
        total = (self.current_weights().to(scaled.dtype) * scaled).sum()
        return total, scaled.new_zeros(())

    def forward(self, raw_losses: Tensor, shared: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        """Weight one batch's raw losses.

        In training mode the running means are updated first, then the scale factors
        are computed from them and applied as constants.

        Args:
            raw_losses: [m] tensor, one loss value per name, in the order of ``names``.
            shared: only for schemes with ``needs_shared_tensor`` (see GradNormWeighting).

        Returns:
            ``(total, info)``: the scalar to back-propagate (with the scheme's penalty,
            without the diversity term) and floats ``weight_<name>``, ``scale_<name>``
            and ``penalty`` for logging.
        """
        if raw_losses.shape != (self.num_losses,):
            raise ValueError(f"expected {self.num_losses} raw losses ({self.names}), got shape {tuple(raw_losses.shape)}")
        if self.training:
            self.running.update(raw_losses)
        factors = self.scale_factors().to(device=raw_losses.device, dtype=raw_losses.dtype)
        scaled = raw_losses * factors
        total, penalty = self.objective(raw_losses, scaled, shared)
        logged = torch.cat([
            self.weights().to(torch.float64).reshape(-1),
            factors.detach().to(torch.float64),
            penalty.detach().to(torch.float64).reshape(1),
        ]).tolist()  # one host synchronisation per step
        m = self.num_losses
        info = {f"weight_{n}": logged[k] for k, n in enumerate(self.names)}
        info.update({f"scale_{n}": logged[m + k] for k, n in enumerate(self.names)})
        info["penalty"] = logged[2 * m]
        return total, info

    def extra_repr(self) -> str:
        return f"scheme={self.scheme}, scale={self.scale}, names={self.names}"


WEIGHTINGS: Registry[type[LossWeighting]] = Registry("weighting scheme", key="weighting.scheme")
"""Registry of weighting schemes by name (filled by :func:`register_weighting`)."""


def register_weighting(name: str):
    """Class decorator registering a :class:`LossWeighting` subclass as scheme ``name``.

    The scheme's options are the keyword-only arguments of its constructor; a config
    sets them in ``weighting.options`` (``prior``, ``weights`` and ``penalty`` may also be
    given as ``weighting.prior`` etc.).
    """

    return WEIGHTINGS.class_decorator(name, LossWeighting, "scheme")


@register_weighting("equal")
class EqualWeighting(LossWeighting):
    """Every loss weighted ``1/m``; no parameters."""

    def __init__(self, names: Sequence[str], *, scale: str = "none") -> None:
        super().__init__(names, scale=scale)
        self.register_buffer("fixed_weights", torch.full((len(self.names),), 1.0 / len(self.names)), persistent=False)

    def current_weights(self) -> Tensor:
        return self.fixed_weights


@register_weighting("fixed")
class FixedWeighting(LossWeighting):
    """User-given weights, normalised to sum 1; no parameters."""

    def __init__(self, names: Sequence[str], *, weights: Sequence[float] | None = None, scale: str = "none") -> None:
        super().__init__(names, scale=scale)
        if weights is None:
            raise UserError(f"weighting.weights: scheme 'fixed' needs one weight per loss ({len(self.names)})")
        w = _normalised(weights, len(self.names), "weighting.weights", allow_zero=True)
        self.register_buffer("fixed_weights", w, persistent=False)

    def current_weights(self) -> Tensor:
        return self.fixed_weights


@register_weighting("learned")
class LearnedWeighting(LossWeighting):
    """The paper's learned weights: ``w_k = c_k^2 + 1/(4m)`` and penalty ``P (sum w - 1)^2``.

    ``c_k`` (parameter ``coefficients``) is initialised to ``sqrt(prior_k - 1/(4m))``
    so that the weights start at the normalised prior (default uniform). A prior
    below the floor ``1/(4m)`` cannot be represented: that weight starts at the floor
    (``c_k`` = 1e-4 rather than exactly 0, because ``d(c^2)/dc = 0`` at 0 would freeze
    it there forever), and the initial sum then exceeds 1 slightly. The weights are
    never renormalised: :meth:`weights` returns ``c^2 + 1/(4m)`` as trained.
    """

    DEAD_START: ClassVar[float] = 1e-4

    def __init__(
        self, names: Sequence[str], *, prior: Sequence[float] | None = None, penalty: float = 1.0e4,
        scale: str = "none",
    ) -> None:
        super().__init__(names, scale=scale)
        m = len(self.names)
        if penalty < 0:
            raise UserError(f"weighting.penalty: must be >= 0, got {penalty}")
        self.penalty = float(penalty)
        self.floor = 1.0 / (4 * m)
        p = _normalised(prior if prior is not None else [1.0] * m, m, "weighting.prior", allow_zero=False)
        c = torch.sqrt((p.double() - self.floor).clamp(min=0.0)).clamp(min=self.DEAD_START)
        self.coefficients = nn.Parameter(c.float())

    def current_weights(self) -> Tensor:
        return self.coefficients**2 + self.floor

    def objective(self, raw: Tensor, scaled: Tensor, shared: Tensor | None) -> tuple[Tensor, Tensor]:
        w = self.current_weights()
        penalty = self.penalty * (w.sum() - 1.0) ** 2
        total = (w.to(scaled.dtype) * scaled).sum() + penalty.to(scaled.dtype)
        return total, penalty


@register_weighting("uncertainty")
class UncertaintyWeighting(LossWeighting):
    """Homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

    One learned log-variance ``s_k`` per loss (parameter ``log_vars``); the variant used is
    the common simplified one, ``total = sum_k exp(-s_k) L_k + s_k`` (no factor 1/2, the
    same form for every loss), with ``L_k`` the scaled loss. The reported ``penalty`` is
    the regulariser ``sum_k s_k``. :meth:`weights` returns ``exp(-s_k) / sum_j exp(-s_j)``
    (sums to 1). ``s`` starts at ``-log(m prior_k)`` so that the reported weights start
    at the normalised prior (uniform: ``s = 0``). Note that the optimum ``s_k = log L_k``
    gives a loss near zero a large effective weight.
    """

    def __init__(self, names: Sequence[str], *, prior: Sequence[float] | None = None, scale: str = "none") -> None:
        super().__init__(names, scale=scale)
        m = len(self.names)
        p = _normalised(prior if prior is not None else [1.0] * m, m, "weighting.prior", allow_zero=False)
        self.log_vars = nn.Parameter(-torch.log(p * m))

    def current_weights(self) -> Tensor:
        return torch.softmax(-self.log_vars, dim=0)

    def objective(self, raw: Tensor, scaled: Tensor, shared: Tensor | None) -> tuple[Tensor, Tensor]:
        s = self.log_vars.to(scaled.dtype)
        regulariser = s.sum()
        return (torch.exp(-s) * scaled).sum() + regulariser, regulariser


@register_weighting("gradnorm")
class GradNormWeighting(LossWeighting):
    """Simplified GradNorm (Chen et al., ICML 2018): balance the losses' gradient norms.

    Weights ``w = softmax(a)`` (parameter ``logits``, so they always sum to 1 and need no
    renormalisation step). In training, given the ``shared`` tensor (the backbone
    output that every head reads, part of the graph), for each loss k:

    * ``G_k = w_k ||d (f_k L_k) / d shared||`` (one ``autograd.grad`` per loss, through the
      heads and losses only, not the backbone);
    * ``r_k`` = relative inverse training rate ``(L_k / L_k(0)) / mean_j (L_j / L_j(0))``
      on the raw losses, ``L_k(0)`` the first training batch's losses (buffer);
    * target ``mean_j(G_j) r_k^alpha`` (a constant).

    ``total = sum_k w_k.detach() f_k L_k + sum_k |G_k - target_k|``: the network sees the
    current weights as constants, and the GradNorm term (reported as ``penalty``) only
    trains ``logits``. Without ``shared`` (evaluation, ``torch.no_grad``) only the first
    term is returned. Under mixed precision the per-loss gradients are computed on the
    unscaled losses (small norms may underflow in float16).
    """

    needs_shared_tensor = True

    def __init__(
        self, names: Sequence[str], *, prior: Sequence[float] | None = None, alpha: float = 1.5, scale: str = "none"
    ) -> None:
        super().__init__(names, scale=scale)
        m = len(self.names)
        if alpha < 0:
            raise UserError(f"weighting: gradnorm alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        p = _normalised(prior if prior is not None else [1.0] * m, m, "weighting.prior", allow_zero=False)
        self.logits = nn.Parameter(torch.log(p))
        self.register_buffer("initial_losses", torch.zeros(m, dtype=torch.float64))
        self.register_buffer("has_initial", torch.zeros((), dtype=torch.bool))

    def current_weights(self) -> Tensor:
        return torch.softmax(self.logits, dim=0)

    def objective(self, raw: Tensor, scaled: Tensor, shared: Tensor | None) -> tuple[Tensor, Tensor]:
        w = self.current_weights()
        main = (w.detach().to(scaled.dtype) * scaled).sum()
        if not self.training or not torch.is_grad_enabled():
            return main, scaled.new_zeros(())
        if shared is None or not shared.requires_grad:
            raise RuntimeError("gradnorm weighting needs forward(raw_losses, shared=<tensor every loss depends on>)")
        norms = torch.stack([self._grad_norm(scaled[k], shared) for k in range(self.num_losses)])
        with torch.no_grad():
            current = raw.detach().to(torch.float64)
            self.initial_losses.copy_(torch.where(self.has_initial, self.initial_losses, current))
            self.has_initial.fill_(True)
            ok = self.initial_losses > 0
            ratio = torch.where(ok, current / self.initial_losses.clamp(min=1e-30), 1.0)
            ratio = torch.where(torch.isfinite(ratio), ratio, 1.0)
            rel = ratio / ratio.mean().clamp(min=1e-30)
        g = w * norms.to(w.dtype)
        target = (g.detach().mean() * rel.to(w.dtype) ** self.alpha).detach()
        gradnorm = (g - target).abs().sum()
        return main + gradnorm.to(main.dtype), gradnorm

    @staticmethod
    def _grad_norm(loss: Tensor, shared: Tensor) -> Tensor:
        """||d loss / d shared|| as a constant (0 if the loss does not depend on ``shared``)."""
        if not loss.requires_grad:
            return shared.new_zeros((), dtype=torch.float32)
        (grad,) = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
        if grad is None:
            return shared.new_zeros((), dtype=torch.float32)
        return torch.linalg.vector_norm(grad.float()).detach()


#: The built-in scheme names (the registry may hold more: see :data:`WEIGHTINGS`).
SCHEMES: tuple[str, ...] = ("equal", "fixed", "learned", "uncertainty", "gradnorm")


def _normalised(values: Sequence[float] | None, m: int, key: str, *, allow_zero: bool) -> Tensor:
    """``values`` as a float32 tensor summing to 1, or a UserError naming ``key``."""
    if values is None or len(values) != m:
        raise UserError(f"{key}: needs {m} numbers, one per loss, got {values!r}")
    vals = [float(v) for v in values]
    if any(not math.isfinite(v) for v in vals):
        raise UserError(f"{key}: must be finite numbers, got {vals}")
    if allow_zero:
        if any(v < 0 for v in vals) or sum(vals) <= 0:
            raise UserError(f"{key}: must be >= 0 with a positive sum, got {vals}")
    elif any(v <= 0 for v in vals):
        raise UserError(f"{key}: must be > 0, got {vals}")
    t = torch.tensor(vals, dtype=torch.float64)
    return (t / t.sum()).float()


def build_weighting(cfg: WeightingConfig, loss_names: list[str]) -> LossWeighting:
    """The :class:`LossWeighting` for ``cfg.scheme`` over ``loss_names`` (in the order of the raw losses).

    The scheme's keyword-only options come from ``cfg.options``; ``cfg.prior``,
    ``cfg.weights`` and ``cfg.penalty`` are passed to the schemes that take them.
    """
    cls = WEIGHTINGS.get_or_raise(cfg.scheme)
    accepted = keyword_options(cls)
    kwargs = {k: getattr(cfg, k) for k in ("prior", "weights", "penalty") if k in accepted}
    kwargs.update(check_options(f"weighting '{cfg.scheme}'", cls, {k: v for k, v in cfg.options.items()}))
    kwargs["scale"] = cfg.scale
    return cls(loss_names, **kwargs)
