"""Train and evaluation transforms for photos and glyphs (torchvision)."""

from __future__ import annotations

from collections.abc import Callable

from torchvision import transforms as T

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "build_transforms"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    normalise = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if kind == "photo":
        if train:
            steps = [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip()]
        else:
            steps = [T.Resize(int(image_size * 256 / 224)), T.CenterCrop(image_size)]
        return T.Compose([T.Lambda(_to_rgb), *steps, *normalise])
    if kind == "glyph":
        steps = [T.Resize((image_size, image_size))]
        if train:
            steps.append(
                T.RandomAffine(degrees=5, translate=(0.04, 0.04), scale=(0.92, 1.08), shear=4,
                               interpolation=T.InterpolationMode.BILINEAR, fill=255)
            )
        return T.Compose([*steps, T.Grayscale(num_output_channels=3), *normalise])
    raise ValueError(f"unknown image kind {kind!r} (expected 'photo' or 'glyph')")


def _to_rgb(img):  # module-level so the transform pickles into DataLoader workers
    return img if img.mode == "RGB" else img.convert("RGB")
