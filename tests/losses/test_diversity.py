"""The head-diversity regulariser R_div = relu(margin - mean pairwise head distance)."""

from __future__ import annotations

import math

import pytest
import torch

from lossensemble.errors import UserError
from lossensemble.losses import diversity_penalty


def test_hand_computed_three_heads() -> None:
    e1 = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    e2 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    e3 = torch.tensor([[0.0, 1.0], [4.0, 5.0]])
    # pair (1,2): distances 1, 0 -> 0.5; (1,3): 1, 5 -> 3; (2,3): sqrt 2, 5 -> (sqrt2 + 5) / 2
    mean = (0.5 + 3.0 + (math.sqrt(2) + 5.0) / 2) / 3
    assert diversity_penalty([e1, e2, e3], margin=4.0).item() == pytest.approx(4.0 - mean)
    assert diversity_penalty([e1, e2, e3]).item() == 0.0  # mean 2.24 > default margin 2


def test_two_heads_and_gradient_pushes_apart() -> None:
    a = torch.tensor([[0.0, 0.0]], requires_grad=True)
    b = torch.tensor([[3.0, 4.0]], requires_grad=True)
    r = diversity_penalty([a, b], margin=6.0)
    assert r.item() == pytest.approx(1.0)
    r.backward()
    assert a.grad[0].tolist() == pytest.approx([0.6, 0.8])  # moving a towards b increases R
    assert b.grad[0].tolist() == pytest.approx([-0.6, -0.8])


def test_identical_heads_give_margin_with_finite_gradient() -> None:
    e = torch.randn(4, 3)
    a, b = e.clone().requires_grad_(), e.clone().requires_grad_()
    r = diversity_penalty([a, b])
    assert r.item() == pytest.approx(2.0)
    r.backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_single_head_is_zero() -> None:
    e = torch.randn(4, 3, requires_grad=True)
    r = diversity_penalty([e])
    assert r.item() == 0.0
    r.backward()
    assert diversity_penalty([]).item() == 0.0


def test_heads_of_different_sizes_are_refused() -> None:
    with pytest.raises(UserError, match="same embedding size"):
        diversity_penalty([torch.zeros(4, 3), torch.zeros(4, 5)])
