"""Test-split embeddings of a run, cached beside its checkpoints (for derived methods and the report)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lossensemble.config import Config
from lossensemble.data import build_split
from lossensemble.evaluation import extract_embeddings
from lossensemble.evaluation.evaluate import query_gallery_masks
from lossensemble.io import atomic_save_npz
from lossensemble.preprocess import IMAGENET, Normalisation
from lossensemble.training.loading import compressed_checkpoint_path, load_run
from lossensemble.training.run import RunPaths

__all__ = ["TestEmbeddings", "test_split", "embeddings_cache_path", "save_test_embeddings", "load_test_embeddings",
           "embed_test_split", "run_test_embeddings", "cached_test_embeddings"]


@dataclass
class TestEmbeddings:
    """Embeddings of a run's test split: by name, with labels, dataset indices and query/gallery masks."""

    embeddings: dict[str, np.ndarray]
    labels: np.ndarray
    kept: np.ndarray
    is_query: np.ndarray | None = None
    is_gallery: np.ndarray | None = None

    def masks(self) -> dict[str, np.ndarray]:
        """``is_query``/``is_gallery`` keyword arguments for ``compute_metrics`` (empty without such masks)."""
        if self.is_query is None or self.is_gallery is None:
            return {}
        return {"is_query": self.is_query, "is_gallery": self.is_gallery}


def test_split(cfg: Config, transform: Any = "auto", normalisation: Normalisation = IMAGENET):
    """The test split of ``cfg``'s dataset, built exactly as the trainer builds it (``transform=None``: PIL images);
    ``normalisation`` is the model's (``LoadedRun.normalisation``)."""
    return build_split(cfg.data, "test", transform=transform, normalisation=normalisation)


def embeddings_cache_path(run_dir: Path, checkpoint: str) -> Path:
    """Where the test embeddings of ``run_dir`` with ``checkpoint`` ("last" or "compressed") are cached."""
    return Path(run_dir) / f"test-embeddings-{checkpoint}.npz"


def save_test_embeddings(path: Path, emb: TestEmbeddings) -> None:
    """Write :class:`TestEmbeddings` as a compressed npz (atomically)."""
    arrays = {f"emb:{k}": v for k, v in emb.embeddings.items()}
    arrays.update(labels=emb.labels, kept=emb.kept)
    if emb.is_query is not None and emb.is_gallery is not None:
        arrays.update(is_query=emb.is_query, is_gallery=emb.is_gallery)
    atomic_save_npz(path, **arrays)


def load_test_embeddings(path: Path) -> TestEmbeddings:
    """Read what :func:`save_test_embeddings` wrote."""
    with np.load(path) as z:
        embeddings = {k[4:]: z[k] for k in z.files if k.startswith("emb:")}
        return TestEmbeddings(embeddings, z["labels"], z["kept"],
                              z["is_query"] if "is_query" in z.files else None,
                              z["is_gallery"] if "is_gallery" in z.files else None)


def _checkpoint_file(run_dir: Path, checkpoint: str) -> Path:
    if checkpoint == "compressed":
        return compressed_checkpoint_path(run_dir)
    return RunPaths(Path(run_dir)).last


def embed_test_split(embed_fn, cfg: Config, device, progress: bool = False,
                     normalisation: Normalisation = IMAGENET) -> TestEmbeddings:
    """Embed ``cfg``'s test split with ``embed_fn`` (the items evaluation uses, with their query/gallery masks);
    ``normalisation`` is the model's (``LoadedRun.normalisation``)."""
    dataset = test_split(cfg, normalisation=normalisation)
    o = cfg.eval_options()
    embeddings, labels, kept = extract_embeddings(
        embed_fn, dataset, batch_size=o["batch_size"], num_workers=o["num_workers"], device=device,
        progress=progress, max_items=o["max_items"], seed=o["seed"],
    )
    masks = query_gallery_masks(dataset, kept)
    return TestEmbeddings(embeddings, labels, kept, masks.get("is_query"), masks.get("is_gallery"))


def run_test_embeddings(run_dir: Path, checkpoint: str = "last", progress: bool = False) -> TestEmbeddings:
    """Every embedding (heads, ensemble, compressed) of a run's test split, cached in the run folder.

    ``checkpoint`` is ``last`` (the model whose metrics are in metrics.json) or
    ``compressed`` (the post-hoc compressed checkpoint). The cache is reused while it is
    newer than the checkpoint file.
    """
    cache = embeddings_cache_path(run_dir, checkpoint)
    ckpt = _checkpoint_file(run_dir, checkpoint)
    if cache.is_file() and (not ckpt.is_file() or cache.stat().st_mtime >= ckpt.stat().st_mtime):
        return load_test_embeddings(cache)
    loaded = load_run(run_dir, checkpoint="last" if checkpoint == "last" else str(ckpt))
    result = embed_test_split(loaded.embed_fn(), loaded.cfg, loaded.device, progress, loaded.normalisation)
    save_test_embeddings(cache, result)
    return result


def cached_test_embeddings(run_dir: Path, checkpoint: str = "last") -> TestEmbeddings:
    """The cached test embeddings of a run (written by :func:`run_test_embeddings`); never runs a model."""
    from lossensemble.errors import UserError

    cache = embeddings_cache_path(run_dir, checkpoint)
    if not cache.is_file():
        raise UserError(f"{cache}: no cached test embeddings (run the comparison again to compute them)")
    return load_test_embeddings(cache)
