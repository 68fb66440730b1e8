"""Training the compressor jointly with the ensemble, as the paper does.

Written here because it is the method's own training scheme (docs/method.md, "Compression"). The
compressor has its own Adam optimiser (learning rate ``train.lr.compressor``) and
learns only from *detached* inputs, so it can never change the backbone, the heads
or the loss weights: the ensemble trains exactly as it would without it.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lossensemble.losses.distance_matching import distance_matching_loss
from lossensemble.models.compressor import build_compressor, compressor_input, compressor_meta
from lossensemble.models.ensemble import EnsembleModel, ensemble_embedding
from lossensemble.training.checkpoint import flatten_optimizer_state, unflatten_optimizer_state

__all__ = ["CompressorTrainer", "JointCompression"]

_OPTIM_PREFIX = "compression.optim."


class CompressorTrainer:
    """One compressor + its optimiser + its objective: ``step(features, heads, weights)`` trains it once.

    Shared by joint training (:class:`JointCompression`) and post-hoc compression
    (:func:`lossensemble.compression.compress_run`). The student is the
    L2-normalised compressor output, exactly the vector used at test time.
    """

    def __init__(self, compressor: nn.Module, variant: str, objective: str, lr: float) -> None:
        self.compressor = compressor
        self.variant = variant
        self.input = compressor_input(variant)
        self.objective = objective
        self.optimizer = torch.optim.Adam(compressor.parameters(), lr=lr)

    def loss(self, features: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The distance-matching loss of the current compressor on one batch."""
        src = features if self.input == "features" else teacher
        student = F.normalize(self.compressor(src), dim=1)
        return distance_matching_loss(student, teacher, self.objective)

    def step(self, features: torch.Tensor, teacher: torch.Tensor) -> float:
        """One optimiser step on a batch of (detached) features and ensemble embeddings; returns the loss."""
        self.compressor.train()
        loss = self.loss(features.detach(), teacher.detach())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def state_tensors(self, prefix: str = _OPTIM_PREFIX) -> dict[str, torch.Tensor]:
        """The optimiser's state as tensors (scalars become 0-d tensors) under ``prefix``."""
        tensors, meta = flatten_optimizer_state(self.optimizer, prefix)
        for idx, extra in meta["scalars"].items():
            for key, value in extra.items():
                tensors[f"{prefix}{idx}.{key}"] = torch.tensor(value)
        return tensors

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], prefix: str = _OPTIM_PREFIX) -> bool:
        """Restore the optimiser from :meth:`state_tensors`; returns False when ``tensors`` hold none."""
        if not any(k.startswith(prefix) for k in tensors):
            return False
        groups = self.optimizer.state_dict()["param_groups"]
        self.optimizer.load_state_dict(unflatten_optimizer_state(tensors, {"param_groups": groups}, prefix))
        return True


class JointCompression:
    """The trainer's hook for ``compression.enabled``: attaches a compressor and trains it after each step.

    The compressor becomes ``model.compressor`` (so its weights are saved with the
    model and ``model.embed`` returns ``compressed``); its optimiser state is saved
    under ``compression.optim.*`` by :meth:`state_tensors`.
    """

    def __init__(self, model: EnsembleModel, cfg, device: torch.device | str) -> None:
        c = cfg.compression
        d = int(cfg.model.embedding_dim)
        self.variant = c.variant
        self.dim = int(c.dim or d)
        self.hidden = 2 * d if c.variant == "mlp" else None
        self.in_dim = model.compressor_in_dim(c.variant)
        compressor = build_compressor(c.variant, self.in_dim, self.dim, hidden=self.hidden).to(device)
        model.set_compressor(compressor, c.variant)
        self.trainer = CompressorTrainer(compressor, c.variant, c.objective, cfg.train.lr.compressor)

    def step(self, features: torch.Tensor, heads: Sequence[torch.Tensor], weights: torch.Tensor) -> dict[str, float]:
        """Train the compressor once on a batch (inputs are detached here); returns ``{"compress_loss": ...}``."""
        with torch.no_grad():
            teacher = ensemble_embedding([h.detach().float() for h in heads], weights.detach())
        return {"compress_loss": self.trainer.step(features.detach().float(), teacher)}

    def meta(self) -> dict:
        return compressor_meta(self.variant, self.in_dim, self.dim, self.hidden, self.trainer.objective)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return self.trainer.state_tensors()

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.trainer.load_state_tensors(tensors)
