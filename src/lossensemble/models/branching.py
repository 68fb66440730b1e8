"""Partial sharing (``model.branch_at``): one backbone trunk, then one branch per embedding head.

Between the paper's shared backbone (every head reads the same features) and independent
models (nothing shared) lies a family of networks: the first stages shared, the last
``branch_at`` stages copied once per head (a loss that shares another loss's head shares
its branch too). ``branch_at=0`` is the shared backbone; the largest value leaves only the
stem shared, which is nearly an independent ensemble at nearly its cost. A branch's head
alone (stem + trunk + its branch) is exactly one backbone at query time.

Written here because torchvision and timm build single networks only. The stages are cut
along the networks' own structure (:func:`~lossensemble.models.backbones.split_stages`;
:data:`STAGE_COUNTS` lists the supported backbones): ``small_cnn`` is a stem (its first conv
block) and 3 stages, the torchvision ResNets a stem and ``layer1``-``layer4``. Each branch's
stages come from a separately built backbone, so from random initialisation every branch
starts from its own draw, and from ``model.weights`` or ``model.pretrained`` every branch
starts from the same pretrained weights.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Collection, Sequence

import torch
from torch import nn

from lossensemble.errors import UserError
from lossensemble.models.backbones import STAGE_COUNTS, Backbone, split_stages

__all__ = ["STAGE_COUNTS", "BranchedBackbone", "check_branch_at", "build_branched", "backbone_cost"]


def check_branch_at(backbone: str, branch_at: int) -> None:
    """Raise :class:`UserError` unless ``branch_at`` is a valid branch point of ``backbone``."""
    if isinstance(branch_at, bool) or not isinstance(branch_at, int) or branch_at < 0:
        raise UserError(f"model.branch_at: must be a whole number >= 0 (0 = one shared backbone), got {branch_at!r}")
    if branch_at == 0:
        return
    if backbone not in STAGE_COUNTS:
        raise UserError(f"model.branch_at: partial sharing is available for {', '.join(STAGE_COUNTS)}, "
                        f"not {backbone!r} (set model.branch_at=0)")
    if branch_at > STAGE_COUNTS[backbone]:
        raise UserError(f"model.branch_at: {backbone} has {STAGE_COUNTS[backbone]} stages after its stem, so "
                        f"branch_at is 0..{STAGE_COUNTS[backbone]}, got {branch_at}")


class BranchedBackbone(Backbone):
    """A shared trunk (``body``) and one branch per name (``branches[name]``: the last stages, pooled).

    Its features are the branches' features side by side, ``(B, len(branches) * branch_dim)``;
    :meth:`feature_slice` says where each branch's part is, so each head reads its own.
    """

    def __init__(self, trunk: nn.Module, branches: dict[str, nn.Module], branch_dim: int, branch_at: int,
                 normalisation) -> None:
        super().__init__(trunk, branch_dim * len(branches), pool=False, normalisation=normalisation)
        self.branches = nn.ModuleDict(branches)
        self.branch_names = list(branches)
        self.branch_dim = int(branch_dim)
        self.branch_at = int(branch_at)

    def feature_slice(self, name: str) -> slice:
        """The columns of the features that branch ``name`` fills."""
        i = self.branch_names.index(name)
        return slice(i * self.branch_dim, (i + 1) * self.branch_dim)

    def forward(self, x: torch.Tensor, only: Collection[str] | None = None) -> torch.Tensor:
        """The features of every branch; with ``only``, branches not named are not run and their part is zeros."""
        shared = self.body(x)
        parts = {n: branch(shared) for n, branch in self.branches.items() if only is None or n in only}
        if len(parts) < len(self.branches):
            like = next(iter(parts.values())) if parts else shared.new_zeros(shared.shape[0], self.branch_dim)
            parts = {n: parts[n] if n in parts else like.new_zeros(like.shape[0], self.branch_dim)
                     for n in self.branches}
        return torch.cat([parts[n] for n in self.branches], dim=1)


def build_branched(name: str, branch_at: int, branch_names: Sequence[str],
                   build: Callable[[], Backbone]) -> BranchedBackbone:
    """A :class:`BranchedBackbone` of backbone ``name`` split ``branch_at`` stages from the end.

    ``build()`` makes one backbone (with its weights, if any); it is called once per branch.
    """
    check_branch_at(name, branch_at)
    if not branch_names:
        raise ValueError("build_branched needs at least one branch name")
    first = build()
    stem, stages = split_stages(name, first.body)
    cut = len(stages) - branch_at
    trunk = nn.Sequential(stem, *stages[:cut])
    branches: dict[str, nn.Module] = {}
    for i, branch in enumerate(branch_names):
        own = stages if i == 0 else split_stages(name, build().body)[1]
        branches[branch] = nn.Sequential(*own[cut:], nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    return BranchedBackbone(trunk, branches, first.feature_dim, branch_at, first.normalisation)


@lru_cache(maxsize=64)
def backbone_cost(backbone: str, branch_at: int, branches: int, image_size: int) -> float:
    """Backbone compute per image of a model with ``branches`` branches, as a multiple of one whole backbone.

    ``(trunk + branches x branch) / (trunk + branch)`` in forward FLOPs at ``image_size``, counted
    by torch's ``FlopCounterMode`` (convolutions and matrix products; normalisation, activations
    and pooling are not counted). 1 for a shared backbone (``branch_at=0``) or a single branch.
    """
    if branch_at == 0 or branches <= 1:
        return 1.0
    from torch.utils.flop_counter import FlopCounterMode

    from lossensemble.models.backbones import build_backbone

    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        net = build_branched(backbone, branch_at, ["one"], lambda: build_backbone(backbone)).eval()
    x = torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            shared = net.body(x)
        trunk = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            net.branches["one"](shared)
        branch = counter.get_total_flops()
    return float(trunk + branches * branch) / float(trunk + branch)
