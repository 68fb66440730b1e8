"""The optimiser of a training run: per-group learning rates as the paper's recipe has them."""

from __future__ import annotations

import torch
from torch import nn

from lossensemble.config import TrainConfig

__all__ = ["build_optimizer"]


def build_optimizer(t: TrainConfig, model: nn.Module, losses: nn.Module, weighting: nn.Module) -> torch.optim.Optimizer:
    """One optimiser with a parameter group (and learning rate) each for backbone, heads, loss parameters, weights."""
    groups = [
        {"name": "backbone", "params": [p for p in model.backbone.parameters() if p.requires_grad],
         "lr": t.lr.backbone, "weight_decay": t.weight_decay},
        {"name": "heads", "params": list(model.heads.parameters()), "lr": t.lr.heads,
         "weight_decay": t.weight_decay},
        {"name": "loss_params", "params": list(losses.parameters()), "lr": t.lr.loss_params,
         "weight_decay": t.weight_decay},
        {"name": "weights", "params": list(weighting.parameters()), "lr": t.lr.weights, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if t.optimizer == "adam":
        return torch.optim.Adam(groups, eps=t.eps)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(groups, eps=t.eps)
    return torch.optim.SGD(groups, momentum=t.momentum)
