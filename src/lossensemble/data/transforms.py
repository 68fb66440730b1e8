"""Train and evaluation transforms for photos and glyphs.

Training transforms are torchvision's (random crops, flips, affine jitter). Evaluation
transforms wrap :mod:`lossensemble.preprocess` (Pillow + numpy, equal to torchvision's
pipeline value for value), which the query path of ``search`` and ``serve`` shares.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image

from lossensemble.preprocess import IMAGENET_MEAN, IMAGENET_STD, KINDS, describe_eval, eval_array

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "KINDS", "EvalTransform", "build_transforms"]


def build_transforms(kind: str, image_size: int, train: bool) -> Callable:
    """The transform from a PIL image to a normalised float tensor (3 x image_size x image_size).

    Photos (the usual deep-metric-learning recipe): train = RandomResizedCrop + horizontal
    flip; eval = resize to ``image_size * 256/224`` then centre crop. Glyphs: train = a small
    random affine jitter (no flip: mirrored characters are other characters), eval = resize
    only; glyphs become 3-channel tensors so the same backbones work. Both use ImageNet
    normalisation so that pretrained backbones see familiar statistics.
    """
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    if kind not in KINDS:
        raise ValueError(f"unknown image kind {kind!r} (expected 'photo' or 'glyph')")
    if not train:
        return EvalTransform(kind, image_size)
    from torchvision import transforms as T

    normalise = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if kind == "photo":
        steps = [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip()]
        return T.Compose([T.Lambda(_to_rgb), *steps, *normalise])
    steps = [
        T.Resize((image_size, image_size)),
        T.RandomAffine(degrees=5, translate=(0.04, 0.04), scale=(0.92, 1.08), shear=4,
                       interpolation=T.InterpolationMode.BILINEAR, fill=255),
    ]
    return T.Compose([*steps, T.Grayscale(num_output_channels=3), *normalise])


class EvalTransform:
    """The deterministic evaluation transform of ``kind`` at ``image_size`` as a torch tensor (picklable).

    The pixels come from :func:`lossensemble.preprocess.eval_array` (Pillow + numpy), which
    ``search`` and ``serve`` also use without importing torch.
    """

    def __init__(self, kind: str, image_size: int) -> None:
        self.kind = kind
        self.image_size = int(image_size)

    def __repr__(self) -> str:
        return f"EvalTransform({describe_eval(self.kind, self.image_size)})"

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return torch.from_numpy(eval_array(img, self.kind, self.image_size))


def _to_rgb(img):  # module-level so the transform pickles into DataLoader workers
    return img if img.mode == "RGB" else img.convert("RGB")
