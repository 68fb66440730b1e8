"""The loss registry: every loss trains (forward + backward), errors are user-facing."""

from __future__ import annotations

import pytest
import torch

from lossensemble.errors import UserError
from lossensemble.losses import LOSSES, MetricLoss, available_losses, build_loss, loss_options, register_loss

ALL = available_losses()
EXPECTED = {
    "classification", "triplet", "binomial", "proxy_nca", "npair", "softtriple",
    "multi_similarity", "proxy_anchor", "margin", "arcface", "contrastive",
}
NUM_CLASSES = 8
DIM = 16


def _batch(labels: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings loosely clustered by class (so that every kind of pair occurs)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor(labels)
    centres = torch.randn(NUM_CLASSES, DIM, generator=g)
    emb = centres[y] + 0.8 * torch.randn(len(labels), DIM, generator=g)
    return emb.requires_grad_(), y


def _build(name: str) -> MetricLoss:
    torch.manual_seed(0)
    return build_loss(name, num_classes=NUM_CLASSES, embedding_dim=DIM)


def test_registry_holds_the_required_losses() -> None:
    assert EXPECTED <= set(ALL)
    assert ALL == sorted(LOSSES)


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_gives_finite_loss_and_gradients(name: str) -> None:
    loss_fn = _build(name)
    emb, labels = _batch([c for c in range(4) for _ in range(4)])  # 4 classes x 4
    loss = loss_fn(emb, labels)
    assert loss.ndim == 0
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert torch.isfinite(emb.grad).all()
    assert emb.grad.abs().sum() > 0
    for pname, p in loss_fn.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("labels", [[0] * 8, list(range(8)), [3]], ids=["single-class", "no-positives", "one-item"])
def test_degenerate_batches_are_finite(name: str, labels: list[int]) -> None:
    loss_fn = _build(name)
    emb, y = _batch(labels, seed=1)
    loss = loss_fn(emb, y)
    assert torch.isfinite(loss)
    loss.backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all()
    for p in loss_fn.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", ["triplet", "multi_similarity", "margin"])
@pytest.mark.parametrize("labels", [[0] * 8, list(range(8))], ids=["single-class", "no-positives"])
def test_mined_losses_without_triplets_are_zero(name: str, labels: list[int]) -> None:
    emb, y = _batch(labels)
    loss = _build(name)(emb, y)
    assert loss.item() == 0.0
    loss.backward()
    assert emb.grad is not None and emb.grad.abs().sum() == 0


def test_normalize_flags() -> None:
    assert LOSSES["classification"].normalize is False
    assert LOSSES["npair"].normalize is False
    for name in ("triplet", "binomial", "proxy_nca", "proxy_anchor", "softtriple", "arcface", "multi_similarity"):
        assert LOSSES[name].normalize is True


def test_parameters_are_module_parameters() -> None:
    counts = {name: sum(p.numel() for p in _build(name).parameters()) for name in ALL}
    assert counts["proxy_nca"] == NUM_CLASSES * DIM
    assert counts["proxy_anchor"] == NUM_CLASSES * DIM
    assert counts["classification"] == NUM_CLASSES * DIM + NUM_CLASSES
    assert counts["softtriple"] == NUM_CLASSES * 10 * DIM
    assert counts["arcface"] == NUM_CLASSES * DIM
    assert counts["margin"] == 1  # learned beta
    assert counts["triplet"] == counts["binomial"] == counts["contrastive"] == 0


def test_float16_embeddings_are_computed_in_float32() -> None:
    loss_fn = _build("proxy_anchor")
    emb, y = _batch([c for c in range(4) for _ in range(4)])
    loss = loss_fn(emb.detach().half().requires_grad_(), y)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in loss_fn.parameters())


def test_unknown_loss_suggests_close_names() -> None:
    with pytest.raises(UserError, match="did you mean 'triplet'") as exc:
        build_loss("triplett", num_classes=4, embedding_dim=8)
    assert "available losses" in str(exc.value)
    with pytest.raises(UserError, match="'proxy_nca'"):
        build_loss("proxynca", num_classes=4, embedding_dim=8)


def test_unknown_option_names_loss_and_option() -> None:
    with pytest.raises(UserError, match=r"loss 'triplet': unknown option 'marign'; did you mean 'margin'"):
        build_loss("triplet", num_classes=4, embedding_dim=8, marign=0.2)


@pytest.mark.parametrize(
    "name, options, fragment",
    [
        ("triplet", {"margin": "big"}, "option 'margin' expects float"),
        ("triplet", {"margin": -1.0}, "option 'margin' must be >= 0"),
        ("triplet", {"type_of_triplets": "medium"}, "option 'type_of_triplets'"),
        ("classification", {"smoothing": 1.5}, "option 'smoothing'"),
        ("classification", {"bias": 1}, "option 'bias' expects bool"),
        ("softtriple", {"centers_per_class": 2.5}, "option 'centers_per_class' expects int"),
        ("proxy_nca", {"scale": 0}, "option 'scale' must be > 0"),
    ],
)
def test_bad_option_values(name: str, options: dict, fragment: str) -> None:
    with pytest.raises(UserError, match=f"loss '{name}'") as exc:
        build_loss(name, num_classes=4, embedding_dim=8, **options)
    assert fragment in str(exc.value)


def test_options_are_applied() -> None:
    loss_fn = build_loss("triplet", num_classes=4, embedding_dim=8, margin=0.3)
    assert loss_fn.loss.margin == 0.3 and loss_fn.miner.margin == 0.3
    assert build_loss("classification", num_classes=4, embedding_dim=8, smoothing=0).smoothing == 0.0
    assert loss_options("binomial") == {"pos_scale": 2.0, "neg_scale": 25.0, "margin": 0.5}
    assert loss_options("triplet")["margin"] == 1.0


def test_bad_sizes() -> None:
    with pytest.raises(UserError, match="num_classes"):
        build_loss("proxy_nca", num_classes=0, embedding_dim=8)
    with pytest.raises(UserError, match="embedding_dim"):
        build_loss("proxy_nca", num_classes=3, embedding_dim=-1)


def test_register_loss_rejects_duplicates_and_non_losses() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_loss("triplet")(type("Other", (MetricLoss,), {}))
    with pytest.raises(TypeError):
        register_loss("not_a_loss")(int)  # type: ignore[arg-type]
    assert "not_a_loss" not in LOSSES
