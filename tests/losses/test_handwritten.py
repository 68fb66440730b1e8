"""The losses written here (not in pml) against slow, loop-by-loop references."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lossensemble.losses import build_loss


def _ref_binomial(emb: torch.Tensor, labels: torch.Tensor, a: float = 2.0, b: float = 25.0, m: float = 0.5) -> float:
    """Per anchor: mean positive deviance, mean negative deviance; averaged over anchors having them."""
    x = [[t / math.sqrt(sum(u * u for u in v)) for t in v] for v in emb.tolist()]
    y = labels.tolist()
    n = len(y)
    pos_rows, neg_rows = [], []
    for i in range(n):
        pos, neg = [], []
        for j in range(n):
            s = sum(p * q for p, q in zip(x[i], x[j]))
            if i != j and y[i] == y[j]:
                pos.append(math.log(1 + math.exp(-a * (s - m))))
            elif y[i] != y[j]:
                neg.append(math.log(1 + math.exp(b * (s - m))))
        if pos:
            pos_rows.append(sum(pos) / len(pos))
        if neg:
            neg_rows.append(sum(neg) / len(neg))
    mean = lambda v: sum(v) / len(v) if v else 0.0  # noqa: E731
    return mean(pos_rows) + mean(neg_rows)


def _ref_proxy_nca(emb: torch.Tensor, labels: torch.Tensor, proxies: torch.Tensor, scale: float, smoothing: float) -> float:
    """Squared Euclidean distances of scale*normalised vectors; smoothed-label cross-entropy."""
    def unit(v: list[float]) -> list[float]:
        norm = math.sqrt(sum(t * t for t in v))
        return [scale * t / norm for t in v]

    xs = [unit(v) for v in emb.tolist()]
    ps = [unit(v) for v in proxies.tolist()]
    c = len(ps)
    total = 0.0
    for x, y in zip(xs, labels.tolist()):
        d = [sum((p_ - x_) ** 2 for p_, x_ in zip(p, x)) for p in ps]
        log_z = math.log(sum(math.exp(-dk) for dk in d))
        for k in range(c):
            target = 1 - smoothing if k == y else smoothing / (c - 1)
            total -= target * (-d[k] - log_z)
    return total / len(xs)


def _ref_classification(emb: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> float:
    w, b = weight.tolist(), bias.tolist()
    c = len(w)
    total = 0.0
    for x, y in zip(emb.tolist(), labels.tolist()):
        logits = [sum(wi * xi for wi, xi in zip(row, x)) + bk for row, bk in zip(w, b)]
        top = max(logits)
        log_z = top + math.log(sum(math.exp(z - top) for z in logits))
        for k in range(c):
            target = (1 - eps) * (k == y) + eps / c
            total -= target * (logits[k] - log_z)
    return total / len(labels)


LABEL_SETS = {
    "balanced": [0, 0, 1, 1, 2, 2, 3, 3, 0, 1],
    "unbalanced": [0, 0, 0, 1, 2, 2, 4, 5],  # classes 1, 4, 5 have no positive
    "single-class": [2] * 6,
    "no-positives": [0, 1, 2, 3, 4],
}


@pytest.mark.parametrize("labels", list(LABEL_SETS.values()), ids=list(LABEL_SETS))
@pytest.mark.parametrize("seed", [0, 1])
def test_binomial_matches_reference(labels: list[int], seed: int) -> None:
    torch.manual_seed(seed)
    emb, y = torch.randn(len(labels), 5, dtype=torch.float64), torch.tensor(labels)
    loss_fn = build_loss("binomial", num_classes=6, embedding_dim=5)
    got = loss_fn.compute(emb, y).item()  # compute(): float64 kept for the comparison
    assert got == pytest.approx(_ref_binomial(emb, y), rel=1e-9, abs=1e-12)


def test_binomial_options_change_the_value() -> None:
    torch.manual_seed(0)
    emb, y = torch.randn(8, 4, dtype=torch.float64), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss_fn = build_loss("binomial", num_classes=4, embedding_dim=4, pos_scale=3.0, neg_scale=10.0, margin=0.2)
    assert loss_fn.compute(emb, y).item() == pytest.approx(_ref_binomial(emb, y, 3.0, 10.0, 0.2), rel=1e-9)


@pytest.mark.parametrize("labels", list(LABEL_SETS.values()), ids=list(LABEL_SETS))
@pytest.mark.parametrize("scale, smoothing", [(3.0, 0.1), (1.0, 0.0), (5.0, 0.3)])
def test_proxy_nca_matches_reference(labels: list[int], scale: float, smoothing: float) -> None:
    torch.manual_seed(2)
    loss_fn = build_loss("proxy_nca", num_classes=6, embedding_dim=5, scale=scale, smoothing=smoothing).double()
    emb, y = torch.randn(len(labels), 5, dtype=torch.float64), torch.tensor(labels)
    want = _ref_proxy_nca(emb, y, loss_fn.proxies.detach(), scale, smoothing)
    assert loss_fn.compute(emb, y).item() == pytest.approx(want, rel=1e-9)


def test_proxy_nca_targets_sum_to_one_and_follow_the_paper_convention() -> None:
    loss_fn = build_loss("proxy_nca", num_classes=5, embedding_dim=3)
    t = loss_fn.smoothed_targets(torch.tensor([0, 4]))
    assert torch.allclose(t.sum(1), torch.ones(2))
    assert t[0, 0].item() == pytest.approx(0.9) and t[0, 1].item() == pytest.approx(0.1 / 4)


def test_proxy_nca_single_class_has_no_smoothing_division_by_zero() -> None:
    loss_fn = build_loss("proxy_nca", num_classes=1, embedding_dim=3)
    loss = loss_fn(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("smoothing", [0.15, 0.0])
def test_classification_matches_reference(smoothing: float) -> None:
    torch.manual_seed(3)
    loss_fn = build_loss("classification", num_classes=4, embedding_dim=5, smoothing=smoothing).double()
    emb, y = torch.randn(7, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1, 2])
    want = _ref_classification(emb, y, loss_fn.classifier.weight.detach(), loss_fn.classifier.bias.detach(), smoothing)
    assert loss_fn.compute(emb, y).item() == pytest.approx(want, rel=1e-9)


def test_classification_uses_unnormalised_embeddings() -> None:
    torch.manual_seed(4)
    loss_fn = build_loss("classification", num_classes=3, embedding_dim=4)
    emb, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    assert loss_fn(emb, y).item() != pytest.approx(loss_fn(3 * emb, y).item(), rel=1e-3)


def test_binomial_and_proxy_nca_gradients_match_reference_by_finite_differences() -> None:
    torch.manual_seed(5)
    y = torch.tensor([0, 0, 1, 1, 2])
    for name in ("binomial", "proxy_nca"):
        loss_fn = build_loss(name, num_classes=3, embedding_dim=4).double()
        emb = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda e: loss_fn.compute(e, y), (emb,))


@settings(max_examples=25, deadline=None)
@given(labels=st.lists(st.integers(0, 3), min_size=1, max_size=9), seed=st.integers(0, 2**16))
def test_binomial_and_proxy_nca_match_references_on_any_labels(labels: list[int], seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    emb, y = torch.randn(len(labels), 3, dtype=torch.float64, generator=g), torch.tensor(labels)
    binomial = build_loss("binomial", num_classes=4, embedding_dim=3)
    assert binomial.compute(emb, y).item() == pytest.approx(_ref_binomial(emb, y), rel=1e-9, abs=1e-12)
    proxy = build_loss("proxy_nca", num_classes=4, embedding_dim=3).double()
    want = _ref_proxy_nca(emb, y, proxy.proxies.detach(), 3.0, 0.1)
    assert proxy.compute(emb, y).item() == pytest.approx(want, rel=1e-9)
