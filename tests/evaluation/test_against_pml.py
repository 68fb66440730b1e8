"""compute_metrics against pytorch-metric-learning's AccuracyCalculator on random data.

PML semantics checked here: with ``ref_includes_query=True`` (or no reference)
each query's own entry is removed from its neighbours; ``k="max_bin_count"``
retrieves enough neighbours for MAP@R / R-precision; its kNN is faiss
``IndexFlatL2`` on the raw embeddings, so its ranking equals our "euclidean"
(and our "cosine" on pre-normalised embeddings). PML leaves queries of
single-item classes out of *every* metric, including precision_at_1, so the
data here has no such class.
"""

from __future__ import annotations

import numpy as np
import pytest

from lossensemble.evaluation import compute_metrics

import torch  # noqa: E402
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator  # noqa: E402

INCLUDE = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


def random_data(seed, n=240, n_classes=20, dim=12):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n // n_classes)
    rng.shuffle(y)
    centres = rng.normal(size=(n_classes, dim))
    return (centres[y] * 0.7 + rng.normal(size=(n, dim))).astype(np.float32), y


def pml(query, query_labels, reference=None, reference_labels=None):
    calc = AccuracyCalculator(include=INCLUDE, k="max_bin_count", device=torch.device("cpu"))
    if reference is None:
        return calc.get_accuracy(torch.from_numpy(query), torch.from_numpy(query_labels))
    return calc.get_accuracy(
        torch.from_numpy(query),
        torch.from_numpy(query_labels),
        torch.from_numpy(reference),
        torch.from_numpy(reference_labels),
        ref_includes_query=False,
    )


def assert_matches(ours, theirs):
    assert ours["recall@1"] == pytest.approx(100 * theirs["precision_at_1"], abs=1e-6)
    assert ours["r_precision"] == pytest.approx(100 * theirs["r_precision"], abs=1e-6)
    assert ours["map@r"] == pytest.approx(100 * theirs["mean_average_precision_at_r"], abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_euclidean_self_retrieval_matches_pml(seed):
    x, y = random_data(seed)
    assert_matches(compute_metrics(x, y, distance="euclidean", nmi=False, k=(1,)), pml(x, y))


def test_cosine_matches_pml_on_normalised_embeddings():
    x, y = random_data(3)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert_matches(compute_metrics(x, y, distance="cosine", nmi=False, k=(1,)), pml(unit, y))


def test_query_gallery_mode_matches_pml():
    x, y = random_data(4, n=300, n_classes=15)
    is_query = np.zeros(300, bool)
    is_query[::3] = True
    ours = compute_metrics(
        x, y, distance="euclidean", nmi=False, k=(1,), is_query=is_query, is_gallery=~is_query
    )
    assert_matches(ours, pml(x[is_query], y[is_query], x[~is_query], y[~is_query]))


def test_nmi_agrees_with_pml_on_separated_clusters():
    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(6), 20)
    x = (np.eye(6, 16)[y] * 5 + 0.05 * rng.normal(size=(120, 16))).astype(np.float32)
    calc = AccuracyCalculator(include=("NMI",), device=torch.device("cpu"))
    theirs = calc.get_accuracy(torch.from_numpy(x), torch.from_numpy(y))["NMI"]
    assert compute_metrics(x, y, distance="euclidean")["nmi"] == pytest.approx(100 * theirs, abs=1e-6)
