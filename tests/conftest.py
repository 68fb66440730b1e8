"""Shared test setup: one torch thread (CI has 2 cores), a private cache folder per session."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Glyph renders and other caches go to a per-session folder unless one is given."""
    if "LOSSENSEMBLE_CACHE" not in os.environ:
        os.environ["LOSSENSEMBLE_CACHE"] = str(tmp_path_factory.mktemp("lossensemble-cache"))
    yield


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)
    yield


# ----------------------------------------------------------------------------- tiny training config
#: Overrides that make a glyph run train in seconds on one CPU thread: 32 px, 16 + 16 classes,
#: two losses with 16-d heads on the small CNN, one epoch of three steps, no progress bars.
TINY_OVERRIDES = (
    "data.name=glyphs",
    "data.image_size=32",
    "data.options.num_train_classes=16",
    "data.options.num_test_classes=16",
    "data.options.progress=false",
    "data.batch_size=16",
    "data.m_per_class=4",
    "model.backbone=small_cnn",
    "model.embedding_dim=16",
    "losses=[triplet,proxy_nca]",
    "train.steps_per_epoch=3",
    "train.epochs=1",
    "train.device=cpu",
    "train.threads=1",
    "train.progress=false",
    "eval.batch_size=128",
)


class TinyConfig:
    """``tiny_config(*overrides)``: the tiny run's :class:`Config`; later overrides win.

    ``tiny_config.overrides(*extra)`` gives the same settings as ``KEY=VALUE`` strings, for a
    command line (``lossensemble train ... *overrides``) or a worker process.
    """

    base = TINY_OVERRIDES

    def overrides(self, *extra: str) -> list[str]:
        return [*self.base, *extra]

    def __call__(self, *extra: str, path=None):
        from lossensemble.config import load_config

        return load_config(path, self.overrides(*extra))


@pytest.fixture(scope="session")
def tiny_config() -> TinyConfig:
    """The one tiny training config of the test suite (see :data:`TINY_OVERRIDES`)."""
    return TinyConfig()


# ----------------------------------------------------------------------------- metric oracle
def brute_force_retrieval_metrics(embeddings, labels, ks=(1, 2, 4, 8)) -> dict[str, float]:
    """Recall@K, kNN accuracy, MAP@R and R-precision (percent) by brute force, all pairwise cosine similarities.

    Written from the definitions (Musgrave et al. 2020), independently of ``lossensemble.evaluation``:
    each item queries all *other* items; R = number of other items of its class.
    """
    import numpy as np

    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    order = np.argsort(-sim, axis=1, kind="stable")[:, : len(x) - 1]
    relevant = y[order] == y[:, None]
    out = {f"recall@{k}": 100.0 * float(relevant[:, :k].any(axis=1).mean()) for k in ks}
    votes = []  # kNN accuracy: majority of the 3 nearest others; no majority -> the nearest one's class
    for row in y[order[:, :3]]:
        values, counts = np.unique(row, return_counts=True)
        votes.append(values[counts.argmax()] if counts.max() > 1 else row[0])
    out["knn_acc"] = 100.0 * float(np.mean(np.asarray(votes) == y))
    aps, precisions = [], []
    for row in relevant:
        r = int(row.sum())
        if r == 0:
            continue
        top = row[:r]
        precision_at_i = np.cumsum(top) / np.arange(1, r + 1)
        aps.append(float((precision_at_i * top).sum() / r))
        precisions.append(float(top.sum() / r))
    out["map@r"] = 100.0 * float(np.mean(aps))
    out["r_precision"] = 100.0 * float(np.mean(precisions))
    return out


@pytest.fixture(scope="session")
def retrieval_oracle():
    """:func:`brute_force_retrieval_metrics`, the independent check of reported retrieval metrics."""
    return brute_force_retrieval_metrics


def kmeans_nmi_range(embeddings, labels, restarts: int = 10) -> tuple[float, float]:
    """(min, max) NMI (percent) over scikit-learn k-means runs of one initialisation each (k = classes).

    The library's NMI is one faiss k-means run (one initialisation, as pytorch-metric-learning
    does); k-means optima differ from run to run by several points on embeddings whose classes
    overlap (on a 256-item, 16-class test split, faiss's single runs spread over 8 points across
    seeds), so a reported NMI is checked against the spread of independent single runs of
    another implementation, on the L2-normalised embeddings, not against one value.
    """
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    k = len(np.unique(labels))
    values = [100.0 * float(normalized_mutual_info_score(labels, KMeans(k, n_init=1, random_state=seed).fit_predict(x)))
              for seed in range(restarts)]
    return min(values), max(values)


class NMIOracle:
    """``nmi_oracle.check(reported, embeddings, labels)``: the reported NMI lies within the spread of
    independent single k-means runs (:func:`kmeans_nmi_range`), widened by ``slack`` points."""

    @staticmethod
    def check(reported: float, embeddings, labels, slack: float = 5.0) -> bool:
        low, high = kmeans_nmi_range(embeddings, labels)
        return low - slack <= reported <= high + slack


@pytest.fixture(scope="session")
def nmi_oracle() -> NMIOracle:
    return NMIOracle()
