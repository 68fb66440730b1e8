"""The frozen-backbone fast mode: backbone features computed once per image, cached on disk.

With ``model.freeze_backbone: true`` the backbone is fixed (no gradients, always in eval
mode), so a training image always gives the same features as long as its input is
deterministic (``data.augment: none``). Then each training image goes through the
backbone once; the cached (N, F) features are reused by every epoch, every later run
with the same backbone weights and data (a comparison's methods, seeds, resumes), and
training runs the heads, the losses, the weights and the compressor only.

Written here because no library caches a model's intermediate outputs across runs.
The cache is a float32 .npy file in ``$LOSSENSEMBLE_CACHE/features/``, named by a
SHA-256 of everything that decides the features: the backbone's name and tensors, the
dataset (name, split, images: file paths with sizes and modification times, or the
bytes of in-memory images), the labels and the evaluation transform. A damaged file
is recomputed with a warning; an unwritable cache folder computes in memory.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lossensemble.data.cache import cache_dir
from lossensemble.data.transforms import EvalTransform
from lossensemble.io import atomic_write_bytes

__all__ = ["FeatureDataset", "compute_features", "dataset_fingerprint", "feature_cache_key", "frozen_feature_set"]

log = logging.getLogger("lossensemble.training")


class FeatureDataset(Dataset):
    """Cached backbone features of a split: ``dataset[i] -> (features[i], label[i])``, like an image split.

    The row of an image that could not be read is NaN and its item is ``None``, which
    :func:`~lossensemble.data.collate_batch` drops and counts, as for images.
    """

    def __init__(self, features: torch.Tensor, labels: np.ndarray) -> None:
        self.features = features
        self.labels = labels
        self.readable = torch.isfinite(features).all(dim=1) if len(features) else torch.zeros(0, dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return (self.features[index], int(self.labels[index])) if bool(self.readable[index]) else None


def dataset_fingerprint(dataset: Any) -> str:
    """SHA-256 of what a split's inputs are: images (paths with size and mtime, or in-memory bytes), labels,
    transform and the reader's pixel limit."""
    h = hashlib.sha256()
    max_pixels = getattr(getattr(dataset, "reader", None), "max_pixels", None)  # decides which images are readable
    h.update(f"{dataset.name}|{dataset.split}|{dataset.kind}|{dataset.transform!r}|{len(dataset)}|{max_pixels}".encode())
    h.update(np.ascontiguousarray(dataset.labels, dtype=np.int64).tobytes())
    if dataset.paths is not None:
        for path in dataset.paths:
            try:
                st = os.stat(path)
                h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{path}|missing\n".encode())
    else:
        h.update(np.ascontiguousarray(getattr(dataset, "images")).tobytes())
    return h.hexdigest()


def feature_cache_key(backbone_name: str, backbone: torch.nn.Module, dataset: Any) -> str:
    """The cache file's name: SHA-256 of the backbone (name and tensors) and :func:`dataset_fingerprint`."""
    h = hashlib.sha256(backbone_name.encode())
    for name, tensor in sorted(backbone.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    h.update(dataset_fingerprint(dataset).encode())
    return h.hexdigest()


@torch.inference_mode()
def compute_features(backbone: torch.nn.Module, dataset: Any, device: torch.device, batch_size: int = 128,
                     num_workers: int = 0) -> np.ndarray:
    """The (N, F) float32 backbone features of every item of ``dataset``, in order, in eval mode.

    An unreadable image gets a row of NaN (its items are dropped at training time as
    the image loader drops them).
    """
    was_training = backbone.training
    backbone.eval()
    rows = []
    loader = torch.utils.data.DataLoader(range(len(dataset)), batch_size=batch_size, num_workers=0)
    try:
        for indices in loader:
            items = [dataset[int(i)] for i in indices]
            ok = [it is not None for it in items]
            images = torch.stack([it[0] for it in items if it is not None]) if any(ok) else None
            feats = backbone(images.to(device)).float().cpu().numpy() if images is not None else None
            out = np.full((len(items), backbone.feature_dim), np.nan, np.float32)
            if feats is not None:
                out[np.asarray(ok)] = feats
            rows.append(out)
    finally:
        backbone.train(was_training)
    return np.concatenate(rows) if rows else np.zeros((0, backbone.feature_dim), np.float32)


def _load(path: Path, n: int, dim: int) -> np.ndarray | None:
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        log.warning("feature cache %s is damaged (%s): recomputing it", path, exc)
        return None
    if x.dtype != np.float32 or x.shape != (n, dim):
        log.warning("feature cache %s holds %s %s, expected float32 (%d, %d): recomputing it",
                    path, x.dtype, x.shape, n, dim)
        return None
    return x


def frozen_feature_set(trainer) -> FeatureDataset | None:
    """The cached-feature training set of a frozen-backbone run, or None when the backbone must run every step.

    None when ``model.freeze_backbone`` is off, when ``model.feature_cache`` is off, or
    when the training transform is random (``data.augment`` other than ``none``: a
    warning says so, and the frozen backbone then runs on every augmented batch).
    """
    cfg = trainer.cfg
    if not (cfg.model.freeze_backbone and cfg.model.feature_cache):
        return None
    train = trainer.train_set
    if not isinstance(train.transform, EvalTransform):
        log.warning("model.freeze_backbone with data.augment=%s: the backbone runs on every augmented batch "
                    "(set data.augment=none to compute its features once and cache them)", cfg.data.augment)
        return None
    backbone = trainer.model.backbone
    key = feature_cache_key(cfg.model.backbone, backbone, train)
    n, dim = len(train), backbone.feature_dim
    features = None
    try:
        folder = cache_dir("features")
    except OSError:
        folder = None
    path = folder / f"{key}.npy" if folder is not None else None
    if path is not None and path.is_file():
        features = _load(path, n, dim)
        if features is not None:
            log.info("frozen backbone: %d cached training features from %s", n, path)
    if features is None:
        features = compute_features(backbone, train, trainer.device, batch_size=max(cfg.data.batch_size, 64))
        if path is not None:
            buf = io.BytesIO()
            np.save(buf, features, allow_pickle=False)
            try:
                atomic_write_bytes(path, buf.getvalue())
                log.info("frozen backbone: %d training features computed and cached in %s", n, path)
            except OSError as exc:
                log.warning("frozen backbone: cannot write the feature cache %s (%s); kept in memory", path, exc)
    return FeatureDataset(torch.from_numpy(features), train.labels)
