"""Components a user adds from outside the package: each is one decorator in one file.

Imported by ``test_plugins.py``; nothing in ``src/`` knows these names.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lossensemble.data import ArrayImageDataset, DatasetSource, register_dataset
from lossensemble.losses import LossWeighting, MetricLoss, register_loss, register_weighting
from lossensemble.models import Backbone, register_backbone


@register_loss("plugin_center")
class CenterPull(MetricLoss):
    """Mean squared distance of each embedding to the mean of its class in the batch."""

    def __init__(self, num_classes: int, embedding_dim: int, *, scale: float = 1.0) -> None:
        super().__init__(num_classes, embedding_dim)
        self.scale = scale

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        onehot = torch.nn.functional.one_hot(labels).float()
        centres = (onehot.t() @ embeddings) / onehot.sum(0).clamp(min=1)[:, None]
        return self.scale * ((embeddings - centres[labels]) ** 2).sum(1).mean()


@register_weighting("plugin_first_heavy")
class FirstHeavy(LossWeighting):
    """The first loss weighted ``share``, the rest share what is left."""

    def __init__(self, names, *, share: float = 0.7, scale: str = "none") -> None:
        super().__init__(names, scale=scale)
        m = len(self.names)
        w = torch.full((m,), (1 - share) / max(m - 1, 1))
        w[0] = share if m > 1 else 1.0
        self.register_buffer("fixed_weights", w, persistent=False)

    def current_weights(self) -> torch.Tensor:
        return self.fixed_weights


@register_dataset("plugin_blobs")
class Blobs(DatasetSource):
    """Classes are grey squares of different brightness and position, with noise."""

    kind = "glyph"
    title = "Blobs (test plug-in)"
    default_image_size = 16
    options = {"classes": 12, "per_class": 6}

    def build(self, split, *, val_fraction, seed):
        n, per = int(self.opts["classes"]), int(self.opts["per_class"])
        rng = np.random.default_rng(0)
        classes = range(n // 2) if split == "train" else range(n // 2, n)
        images, labels = [], []
        for new, c in enumerate(classes):
            for _ in range(per):
                img = rng.integers(0, 40, (16, 16)).astype(np.uint8)
                r, k = divmod(c, 4)
                img[r * 4:r * 4 + 6, k * 4:k * 4 + 6] = 120 + 10 * c
                images.append(img)
                labels.append(new)
        return ArrayImageDataset(name=self.name, split=split, kind=self.kind, labels=labels,
                                 class_names=[str(c) for c in classes], images=np.stack(images))

    def summary(self):
        n, per = int(self.opts["classes"]), int(self.opts["per_class"])
        return {"train_classes": n // 2, "train_images": n // 2 * per, "test_classes": n - n // 2,
                "test_images": (n - n // 2) * per}


@register_backbone("plugin_tiny_cnn", "two conv layers (test plug-in)")
def tiny_cnn(pretrained: bool, weights: str | None) -> Backbone:
    body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                         nn.ReLU())
    return Backbone(body, 16)
