"""The hand-written ProxyNCA (``proxy_nca``) against pytorch-metric-learning's ``ProxyNCALoss``."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses

from lossensemble.losses import build_loss


@pytest.mark.parametrize("scale, seed", [(3.0, 0), (1.0, 1), (5.0, 2)])
def test_handwritten_proxy_nca_equals_pml_at_label_smoothing_zero(scale, seed):
    """At ``smoothing`` 0 ours is pml's ``ProxyNCALoss`` once the scale convention is mapped.

    Ours multiplies the unit embeddings and proxies by ``scale`` before taking squared
    distances; pml takes squared distances of unit vectors (``LpDistance(power=2)``,
    normalised) and multiplies them by ``softmax_scale``. Since
    ``||s x - s p||^2 = s^2 ||x - p||^2``, ``softmax_scale = scale**2`` gives the same logits;
    both keep the positive proxy in the denominator and average over the batch.
    """
    g = torch.Generator().manual_seed(seed)
    num_classes, dim = 7, 12
    ours = build_loss("proxy_nca", num_classes=num_classes, embedding_dim=dim, scale=scale, smoothing=0.0)
    with torch.no_grad():
        ours.proxies.copy_(torch.randn(num_classes, dim, generator=g))
    theirs = pml_losses.ProxyNCALoss(num_classes, dim, softmax_scale=scale**2)
    with torch.no_grad():
        theirs.proxies.copy_(ours.proxies)
    labels = torch.randint(0, num_classes, (20,), generator=g)
    embeddings = torch.randn(20, dim, generator=g) * 3  # not unit length: both normalise
    ours_value, theirs_value = ours(embeddings, labels), theirs(embeddings, labels)
    assert ours_value.item() > 0.1  # a real loss, not a degenerate zero
    assert ours_value.item() == pytest.approx(theirs_value.item(), abs=1e-5, rel=1e-5)
    # and the gradients with respect to the embeddings agree as well
    x1 = embeddings.clone().requires_grad_()
    x2 = embeddings.clone().requires_grad_()
    ours(x1, labels).backward()
    theirs(x2, labels).backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-5)


def test_smoothing_makes_them_differ():
    """With label smoothing (ours only) the values part: the comparison above is not vacuous."""
    g = torch.Generator().manual_seed(3)
    ours = build_loss("proxy_nca", num_classes=5, embedding_dim=8, scale=3.0, smoothing=0.1)
    theirs = pml_losses.ProxyNCALoss(5, 8, softmax_scale=9.0)
    with torch.no_grad():
        theirs.proxies.copy_(ours.proxies)
    x, y = torch.randn(10, 8, generator=g), torch.randint(0, 5, (10,), generator=g)
    assert abs(ours(x, y).item() - theirs(x, y).item()) > 1e-3
