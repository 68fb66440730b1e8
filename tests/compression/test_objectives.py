"""The distance-matching objectives against loop references, and their invariances."""

from __future__ import annotations

import math

import pytest
import torch

from lossensemble.losses import distance_matching_loss
from lossensemble.losses.distance_matching import squared_distances
from lossensemble.errors import UserError


def _frobenius_reference(s: torch.Tensor, t: torch.Tensor) -> float:
    n = len(s)
    ds = [[float(((s[i] - s[j]) ** 2).sum()) for j in range(n)] for i in range(n)]
    dt = [[float(((t[i] - t[j]) ** 2).sum()) for j in range(n)] for i in range(n)]
    ss, st = sum(map(sum, ds)), sum(map(sum, dt))
    total = sum((ds[i][j] / ss - dt[i][j] / st) ** 2 for i in range(n) for j in range(n))
    return math.sqrt(total) / (n * n)


def _softmax_reference(s: torch.Tensor, t: torch.Tensor, temperature: float) -> float:
    n = len(s)

    def rows(x):
        d = [[float(((x[i] - x[j]) ** 2).sum()) for j in range(n) if j != i] for i in range(n)]
        mean = sum(map(sum, d)) / (n * (n - 1))
        out = []
        for row in d:
            z = [math.exp(-v / (temperature * mean)) for v in row]
            out.append([v / sum(z) for v in z])
        return out

    ps, pt = rows(s), rows(t)
    return sum(sum(b * math.log(b / a) for a, b in zip(rs, rt)) for rs, rt in zip(ps, pt)) / n


def test_squared_distances_match_cdist():
    x = torch.randn(7, 5, dtype=torch.float64)
    assert torch.allclose(squared_distances(x), torch.cdist(x, x) ** 2, atol=1e-10)
    assert (squared_distances(x).diagonal() == 0).all()


def test_frobenius_matches_the_loop_reference():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 4, generator=g), torch.randn(6, 9, generator=g)
    assert float(distance_matching_loss(s, t, "frobenius")) == pytest.approx(_frobenius_reference(s, t), rel=1e-4)


def test_softmax_matches_the_loop_reference():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(6, 4, generator=g), torch.randn(6, 9, generator=g)
    got = float(distance_matching_loss(s, t, "softmax", temperature=0.5))
    assert got == pytest.approx(_softmax_reference(s, t, 0.5), rel=1e-4)


@pytest.mark.parametrize("objective", ["frobenius", "softmax"])
def test_zero_for_a_scaled_copy_and_finite_gradients(objective):
    t = torch.randn(8, 6)
    s = (3.0 * t).requires_grad_(True)
    loss = distance_matching_loss(s, t, objective)
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    assert torch.isfinite(s.grad).all()
    other = distance_matching_loss(torch.randn(8, 6), t, objective)
    assert float(other) > 10 * float(loss) + 1e-6


def test_tiny_batches_and_bad_objective():
    assert float(distance_matching_loss(torch.randn(1, 3), torch.randn(1, 3))) == 0.0
    assert float(distance_matching_loss(torch.randn(2, 3), torch.randn(2, 3), "softmax")) == 0.0
    with pytest.raises(UserError, match="objective"):
        distance_matching_loss(torch.randn(4, 3), torch.randn(4, 3), "ranks")
