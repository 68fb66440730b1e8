"""Loss weighting schemes and running-mean scale normalisation."""

from __future__ import annotations

import math

import pytest
import torch

from lossensemble.config import WeightingConfig
from lossensemble.errors import UserError
from lossensemble.losses import build_weighting
from lossensemble.losses.weighting import GradNormWeighting, LearnedWeighting

NAMES = ["classification", "triplet", "binomial", "proxy_nca"]


def _cfg(**kwargs) -> WeightingConfig:
    return WeightingConfig(**kwargs)


def _info_weights(info: dict[str, float], names=NAMES) -> list[float]:
    return [info[f"weight_{n}"] for n in names]


# ---------------------------------------------------------------- fixed schemes


def test_equal_weights_are_one_over_m_and_have_no_parameters() -> None:
    w = build_weighting(_cfg(scheme="equal"), NAMES)
    assert torch.allclose(w.weights(), torch.full((4,), 0.25))
    assert list(w.parameters()) == []
    raw = torch.tensor([1.0, 2.0, 3.0, 6.0])
    total, info = w(raw)
    assert total.item() == pytest.approx(3.0)
    assert _info_weights(info) == pytest.approx([0.25] * 4)
    assert [info[f"scale_{n}"] for n in NAMES] == [1.0] * 4
    assert info["penalty"] == 0.0


def test_fixed_weights_are_normalised() -> None:
    w = build_weighting(_cfg(scheme="fixed", weights=[2, 1, 1, 0]), NAMES)
    assert w.weights().tolist() == pytest.approx([0.5, 0.25, 0.25, 0.0])
    assert list(w.parameters()) == []
    total, _ = w(torch.tensor([1.0, 2.0, 4.0, 100.0]))
    assert total.item() == pytest.approx(0.5 + 0.5 + 1.0)


@pytest.mark.parametrize("weights", [None, [1, 2], [0, 0, 0, 0], [1, -1, 1, 1], [1, float("nan"), 1, 1]])
def test_fixed_bad_weights_are_user_errors(weights) -> None:
    with pytest.raises(UserError, match="weighting.weights"):
        build_weighting(_cfg(scheme="fixed", weights=weights), NAMES)


def test_bad_scheme_scale_and_names() -> None:
    with pytest.raises(UserError, match="weighting.scheme"):
        build_weighting(_cfg(scheme="magic"), NAMES)
    with pytest.raises(UserError, match="weighting.scale"):
        build_weighting(_cfg(scale="log"), NAMES)
    with pytest.raises(UserError, match="unique"):
        build_weighting(_cfg(), ["triplet", "triplet"])
    with pytest.raises(UserError, match="weighting.prior"):
        build_weighting(_cfg(scheme="learned", prior=[1.0, 2.0]), NAMES)
    with pytest.raises(ValueError, match="expected 4 raw losses"):
        build_weighting(_cfg(), NAMES)(torch.ones(3))


# ---------------------------------------------------------------- learned (the paper)


def test_learned_starts_at_uniform_prior() -> None:
    w = build_weighting(_cfg(scheme="learned"), NAMES)
    assert w.weights().tolist() == pytest.approx([0.25] * 4, abs=1e-7)
    assert [p.shape for p in w.parameters()] == [torch.Size([4])]
    assert w.floor == pytest.approx(1 / 16)


def test_learned_starts_at_the_papers_prior() -> None:
    w = build_weighting(_cfg(scheme="learned", prior=[2, 1, 2, 3]), NAMES)
    assert w.weights().tolist() == pytest.approx([0.25, 0.125, 0.25, 0.375], abs=1e-7)
    _, info = w(torch.ones(4))
    assert info["penalty"] == pytest.approx(0.0, abs=1e-6)


def test_learned_prior_below_floor_starts_at_floor() -> None:
    w = build_weighting(_cfg(scheme="learned", prior=[1, 100]), ["a", "b"])  # floor 1/8 > 1/101
    got = w.weights().tolist()
    assert got[0] == pytest.approx(1 / 8, abs=1e-7)
    assert got[1] == pytest.approx(100 / 101, abs=1e-6)
    assert w.coefficients[0].item() > 0  # not stuck at the zero-gradient point c = 0


def test_learned_total_includes_penalty() -> None:
    w = build_weighting(_cfg(scheme="learned", penalty=100.0), ["a", "b"])
    with torch.no_grad():
        w.coefficients.copy_(torch.tensor([0.5, 1.0]))  # w = [0.375, 1.125], sum 1.5
    raw = torch.tensor([2.0, 4.0])
    total, info = w(raw)
    assert info["penalty"] == pytest.approx(100 * 0.25)
    assert total.item() == pytest.approx(0.375 * 2 + 1.125 * 4 + 25.0)
    assert _info_weights(info, ["a", "b"]) == pytest.approx([0.375, 1.125])


def test_learned_weights_stay_above_floor_and_sum_near_one_under_training() -> None:
    torch.manual_seed(0)
    w = build_weighting(_cfg(scheme="learned", penalty=1e4), NAMES)
    opt = torch.optim.Adam(w.parameters(), lr=1e-2)
    base = torch.tensor([2.5, 0.07, 1.0, 3.0])
    for _ in range(300):
        raw = base * (1 + 0.1 * torch.rand(4))
        total, info = w(raw)
        opt.zero_grad()
        total.backward()
        opt.step()
    weights = w.weights()
    assert (weights >= w.floor).all()
    assert weights.sum().item() == pytest.approx(1.0, abs=0.01)
    # without scale normalisation the weights drift to the numerically smallest loss
    # (order of the weights = reverse order of the losses 0.07 < 1.0 < 2.5 < 3.0)
    assert weights[1] > weights[2] > weights[0] > weights[3]
    assert weights[1] > 0.27
    assert info["penalty"] < 1.0


# ---------------------------------------------------------------- running-mean scale


def test_running_means_are_cumulative_and_factors_follow_them() -> None:
    torch.manual_seed(1)
    w = build_weighting(_cfg(scheme="equal", scale="running_mean"), NAMES)
    history = []
    for _ in range(7):
        raw = torch.rand(4) * torch.tensor([3.0, 0.1, 1.0, 2.0]) + 0.01
        history.append(raw)
        total, info = w(raw)
        means = torch.stack(history).double().mean(0)
        assert torch.allclose(w.running.running_mean, means, rtol=1e-12, atol=0)
        want = means.mean() / means
        assert [info[f"scale_{n}"] for n in NAMES] == pytest.approx(want.tolist(), rel=1e-6)
        assert total.item() == pytest.approx((0.25 * want.float() * raw).sum().item(), rel=1e-5)


def test_first_batch_uses_its_own_losses() -> None:
    w = build_weighting(_cfg(scheme="equal", scale="running_mean"), ["a", "b"])
    _, info = w(torch.tensor([1.0, 3.0]))
    assert info["scale_a"] == pytest.approx(2.0) and info["scale_b"] == pytest.approx(2 / 3)


def test_scale_factors_are_constants_in_the_graph() -> None:
    w = build_weighting(_cfg(scheme="fixed", weights=[1, 3], scale="running_mean"), ["a", "b"])
    w(torch.tensor([1.0, 4.0]))
    raw = torch.tensor([2.0, 1.0], requires_grad=True)
    _, info = w(raw)
    w.zero_grad()
    total, info = w.eval()(raw)  # eval: no update, same factors
    total.backward()
    factors = torch.tensor([info["scale_a"], info["scale_b"]])
    assert raw.grad.tolist() == pytest.approx((torch.tensor([0.25, 0.75]) * factors).tolist())


def test_eval_mode_does_not_update_running_means() -> None:
    w = build_weighting(_cfg(scheme="equal", scale="running_mean"), ["a", "b"])
    w(torch.tensor([1.0, 3.0]))
    w.eval()
    w(torch.tensor([100.0, 100.0]))
    assert w.running.running_mean.tolist() == [1.0, 3.0]
    assert w.running.running_count.tolist() == [1.0, 1.0]


def test_scale_none_applies_factor_one_but_still_tracks_means() -> None:
    w = build_weighting(_cfg(scheme="equal", scale="none"), ["a", "b"])
    total, info = w(torch.tensor([1.0, 3.0]))
    assert info["scale_a"] == info["scale_b"] == 1.0
    assert total.item() == pytest.approx(2.0)
    assert w.running.running_mean.tolist() == [1.0, 3.0]


def test_non_finite_losses_do_not_corrupt_running_means() -> None:
    w = build_weighting(_cfg(scheme="equal", scale="running_mean"), ["a", "b"])
    w(torch.tensor([1.0, 3.0]))
    w(torch.tensor([float("nan"), 5.0]))
    w(torch.tensor([float("inf"), 1.0]))
    assert w.running.running_mean.tolist() == [1.0, 3.0]
    assert w.running.running_count.tolist() == [1.0, 3.0]


def test_zero_running_mean_gets_factor_one() -> None:
    w = build_weighting(_cfg(scheme="equal", scale="running_mean"), ["a", "b", "c"])
    _, info = w(torch.tensor([0.0, 1.0, 3.0]))
    assert info["scale_a"] == 1.0
    assert info["scale_b"] == pytest.approx(2.0) and info["scale_c"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("scheme", ["equal", "learned", "uncertainty", "gradnorm"])
def test_state_dict_round_trip_restores_running_means_exactly(scheme: str) -> None:
    torch.manual_seed(2)
    cfg = _cfg(scheme=scheme, scale="running_mean")
    a = build_weighting(cfg, NAMES)
    for _ in range(5):
        raw = torch.rand(4) + 0.1
        if a.needs_shared_tensor:
            a.running.update(raw)
        else:
            a(raw)
    with torch.no_grad():
        for p in a.parameters():
            p.add_(0.01)
    b = build_weighting(cfg, NAMES)
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.running.running_mean, a.running.running_mean)
    assert torch.equal(b.running.running_count, a.running.running_count)
    assert torch.equal(b.weights(), a.weights())
    raw = torch.rand(4) + 0.1
    ta, ia = a.eval()(raw)
    tb, ib = b.eval()(raw)
    assert ta.item() == tb.item() and ia == ib
    assert "running.running_mean" in a.state_dict()


# ---------------------------------------------------------------- uncertainty (Kendall et al.)


def test_uncertainty_weights_sum_to_one_and_total_follows_kendall() -> None:
    w = build_weighting(_cfg(scheme="uncertainty"), ["a", "b", "c"])
    assert w.weights().tolist() == pytest.approx([1 / 3] * 3)
    with torch.no_grad():
        w.log_vars.copy_(torch.tensor([0.0, 1.0, -1.0]))
    raw = torch.tensor([1.0, 2.0, 0.5])
    total, info = w(raw)
    s = [0.0, 1.0, -1.0]
    want = sum(math.exp(-sk) * lk + sk for sk, lk in zip(s, raw.tolist()))
    assert total.item() == pytest.approx(want, rel=1e-6)
    z = sum(math.exp(-sk) for sk in s)
    assert _info_weights(info, ["a", "b", "c"]) == pytest.approx([math.exp(-sk) / z for sk in s])
    assert sum(_info_weights(info, ["a", "b", "c"])) == pytest.approx(1.0)
    total.backward()
    assert w.log_vars.grad.tolist() == pytest.approx([1 - math.exp(-sk) * lk for sk, lk in zip(s, raw.tolist())], rel=1e-6)


def test_uncertainty_prior_sets_initial_weights() -> None:
    w = build_weighting(_cfg(scheme="uncertainty", prior=[2, 1, 2, 3]), NAMES)
    assert w.weights().tolist() == pytest.approx([0.25, 0.125, 0.25, 0.375], rel=1e-6)


# ---------------------------------------------------------------- gradnorm


def _gradnorm_setup():
    torch.manual_seed(3)
    features = torch.randn(8, 5, requires_grad=True)
    heads = [torch.randn(5, 3) for _ in range(2)]
    return features, heads


def _two_losses(features, heads) -> torch.Tensor:
    # loss a's gradient at the features is 10x loss b's
    return torch.stack([10 * (features @ heads[0]).pow(2).mean(), (features @ heads[1]).pow(2).mean()])


def test_gradnorm_needs_the_shared_tensor_in_training() -> None:
    w = build_weighting(_cfg(scheme="gradnorm"), ["a", "b"])
    assert w.needs_shared_tensor and isinstance(w, GradNormWeighting)
    features, heads = _gradnorm_setup()
    with pytest.raises(RuntimeError, match="shared"):
        w(_two_losses(features, heads))
    total, info = w.eval()(_two_losses(features, heads))  # evaluation: no shared tensor needed
    assert info["penalty"] == 0.0


def test_gradnorm_balances_gradient_norms() -> None:
    w = build_weighting(_cfg(scheme="gradnorm"), ["a", "b"])
    assert not LearnedWeighting.needs_shared_tensor
    opt = torch.optim.Adam(w.parameters(), lr=0.05)
    features, heads = _gradnorm_setup()
    for _ in range(200):
        raw = _two_losses(features, heads)
        total, info = w(raw, shared=features)
        opt.zero_grad()
        total.backward()
        opt.step()
    weights = w.weights()
    assert weights.sum().item() == pytest.approx(1.0, abs=1e-6)
    # equal training rates (the losses are constant): the weighted gradient norms become
    # equal, w_a |g_a| = w_b |g_b|, so w_a = |g_b| / (|g_a| + |g_b|)
    raw = _two_losses(features, heads)
    n_a, n_b = (torch.autograd.grad(raw[k], features, retain_graph=True)[0].norm().item() for k in range(2))
    assert n_a > 5 * n_b
    assert weights[0].item() == pytest.approx(n_b / (n_a + n_b), rel=0.1)
    assert features.grad is not None  # the main term still reaches the network


def test_gradnorm_main_term_uses_detached_weights() -> None:
    w = build_weighting(_cfg(scheme="gradnorm"), ["a", "b"])
    features, heads = _gradnorm_setup()
    raw = _two_losses(features, heads)
    total, info = w(raw, shared=features)
    gn = info["penalty"]
    assert total.item() == pytest.approx(0.5 * raw.sum().item() + gn, rel=1e-5)
    # d total / d logits comes only from the GradNorm term: its sign pushes weight off loss a
    (g,) = torch.autograd.grad(total, w.logits)
    assert g[0] > 0 > g[1]
