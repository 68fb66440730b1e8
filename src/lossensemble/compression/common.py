"""What post-hoc compression and distillation share: the cached training embeddings and the fitting loop.

The backbone and heads are frozen, so the run's training split is embedded once (with
the evaluation transforms) and a compressor is fitted on the cached vectors in
class-balanced batches; see :mod:`lossensemble.compression.posthoc` for why.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from lossensemble.data import MPerClassBatchSampler, build_split
from lossensemble.errors import UserError
from lossensemble.evaluation import extract_embeddings
from lossensemble.models import ensemble_embedding
from lossensemble.training.joint import CompressorTrainer

__all__ = ["training_embeddings", "class_balanced_batches", "fit_compressor"]

log = logging.getLogger("lossensemble.compression")


def training_embeddings(loaded, batch_size: int, progress: bool) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Backbone features, ensemble embeddings and labels of the run's training split (eval transforms)."""
    from lossensemble.data import build_transforms

    cfg = loaded.cfg
    d = cfg.data
    dataset = build_split(d, d.train_split, transform=None)
    dataset.transform = build_transforms(dataset.kind, d.image_size, train=False, normalisation=loaded.normalisation)
    model = loaded.model
    weights = loaded.weights.to(loaded.device)

    def embed(images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = model.forward_features(images).float()
        return {"features": feats, "ensemble": ensemble_embedding(model.forward_heads(feats), weights)}

    model.eval()
    out, labels, _ = extract_embeddings(embed, dataset, batch_size=batch_size, num_workers=d.num_workers,
                                        device=loaded.device, progress=progress)
    if len(labels) < 3:
        raise UserError(f"{loaded.paths.root}: the training split has {len(labels)} readable images; "
                        f"compression needs at least 3")
    return torch.from_numpy(out["features"]), torch.from_numpy(out["ensemble"]), labels


def class_balanced_batches(labels: np.ndarray, batch_size: int, m: int, num_batches: int, seed: int, epoch: int):
    """Class-balanced index batches (falls back to shuffled batches when classes are too few)."""
    batch_size = min(batch_size, len(labels))
    try:
        sampler = MPerClassBatchSampler(labels, m, batch_size - batch_size % m or m, num_batches=num_batches,
                                        seed=seed)
        sampler.set_epoch(epoch)
        yield from sampler
    except UserError:
        rng = np.random.default_rng([seed, epoch])
        for _ in range(num_batches):
            yield rng.choice(len(labels), size=batch_size, replace=False).tolist()


def fit_compressor(trainer: CompressorTrainer, inputs: torch.Tensor, teacher: torch.Tensor, labels: np.ndarray, cfg,
         epochs: int, steps: int) -> list[float]:
    """Train ``trainer``'s compressor on cached (input, teacher) rows; returns the mean loss per epoch."""
    losses: list[float] = []
    for epoch in range(epochs):
        epoch_losses = []
        for batch in class_balanced_batches(labels, cfg.data.batch_size, cfg.data.m_per_class, steps, cfg.seed, epoch):
            idx = torch.as_tensor(batch, device=inputs.device)
            epoch_losses.append(trainer.step(inputs[idx], teacher[idx]))
        losses.append(float(np.mean(epoch_losses)))
        log.info("compression epoch %d/%d: %s loss %.4g", epoch + 1, epochs, trainer.objective, losses[-1])
    return losses


