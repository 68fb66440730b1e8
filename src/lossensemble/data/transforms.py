"""Train and evaluation transforms for photos and glyphs.

Training transforms are torchvision's (random crops, flips, affine jitter). Evaluation
transforms are written here with Pillow and torch only, because they are what every
query of ``lossensemble search`` / ``serve`` runs, and importing torchvision costs
about 1.3 s of CPU (its ``ops`` load ``torch._dynamo``): more than the rest of a
one-image search. They are three Pillow calls each and reproduce torchvision's
``Resize``/``CenterCrop``/``Grayscale``/``ToTensor``/``Normalize`` exactly (a test
compares them with torchvision's own pipeline, value for value).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "KINDS", "EvalTransform", "build_transforms"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Image kinds: ``photo`` (natural images) and ``glyph`` (characters, drawn on white).
KINDS = ("photo", "glyph")


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
    """The deterministic evaluation transform of ``kind`` at ``image_size`` (picklable, for DataLoader workers).

    ``photo``: RGB, shorter side resized to ``int(image_size * 256 / 224)`` (bilinear, as
    torchvision's ``Resize(int)``), centre crop of ``image_size``. ``glyph``: resized to
    ``image_size x image_size`` (bilinear), greyscale replicated to 3 channels. Then
    ``/255`` and ImageNet normalisation.
    """

    def __init__(self, kind: str, image_size: int) -> None:
        self.kind = kind
        self.image_size = int(image_size)

    def __repr__(self) -> str:
        size = self.image_size
        steps = (f"RGB, Resize(shorter={int(size * 256 / 224)}), CenterCrop({size})" if self.kind == "photo"
                 else f"Resize({size}x{size}), Grayscale(3)")
        return f"EvalTransform({self.kind}: {steps}, ToTensor, Normalize(ImageNet))"

    def __call__(self, img: Image.Image) -> torch.Tensor:
        size = self.image_size
        if self.kind == "photo":
            img = _center_crop(_resize_shorter(_to_rgb(img), int(size * 256 / 224)), size)
        else:
            img = img.resize((size, size), Image.BILINEAR).convert("L").convert("RGB")
        return _normalise(img)


def _resize_shorter(img: Image.Image, short: int) -> Image.Image:
    """torchvision's ``Resize(short)``: the shorter side becomes ``short``, the longer side is truncated."""
    w, h = img.size
    if w <= h:
        size = (short, int(short * h / w))
    else:
        size = (int(short * w / h), short)
    return img if size == (w, h) else img.resize(size, Image.BILINEAR)


def _center_crop(img: Image.Image, size: int) -> Image.Image:
    """torchvision's ``CenterCrop(size)`` (zero padding first when the image is smaller)."""
    w, h = img.size
    if w < size or h < size:
        padded = Image.new(img.mode, (max(w, size), max(h, size)))
        padded.paste(img, ((max(w, size) - w) // 2, (max(h, size) - h) // 2))
        img, (w, h) = padded, padded.size
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _normalise(img: Image.Image) -> torch.Tensor:
    """An RGB image as a (3, H, W) float tensor: ``/255``, then ImageNet mean and std (torchvision's order)."""
    x = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()
    return x.to(torch.float32).div(255).sub(_MEAN).div(_STD)


def _to_rgb(img):  # module-level so the transform pickles into DataLoader workers
    return img if img.mode == "RGB" else img.convert("RGB")
