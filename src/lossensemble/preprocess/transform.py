"""The deterministic evaluation preprocessing of images, in Pillow and numpy only.

Training-time evaluation (:class:`lossensemble.data.transforms.EvalTransform`) and every
query of ``lossensemble search`` / ``serve`` share these few lines. They are written here
instead of using torchvision's ``Resize``/``CenterCrop``/``Grayscale``/``ToTensor``/
``Normalize`` because importing torchvision (about 1.3 s of CPU: its ``ops`` load
``torch._dynamo``), or even torch (about 1.2 s), costs more than the rest of a one-image
search, and a search with an ONNX model needs neither. The results equal torchvision's
pipeline value for value (a test compares them over sizes and image modes).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from lossensemble.preprocess.normalisation import IMAGENET, IMAGENET_MEAN, IMAGENET_STD, Normalisation

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "KINDS", "describe_eval", "eval_array", "pil_filter"]

#: Image kinds: ``photo`` (natural images) and ``glyph`` (characters, drawn on white).
KINDS = ("photo", "glyph")

_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST,
            "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}


def pil_filter(normalisation: Normalisation = IMAGENET) -> int:
    """Pillow's resampling filter for ``normalisation.interpolation``."""
    return _FILTERS[normalisation.interpolation]


def eval_array(img: Image.Image, kind: str, image_size: int, normalisation: Normalisation = IMAGENET) -> np.ndarray:
    """``img`` as the (3, image_size, image_size) float32 array the model sees at evaluation.

    ``photo``: RGB, shorter side resized to ``int(image_size / crop_pct)`` (``image_size * 256 / 224``
    for ImageNet; as torchvision's ``Resize(int)``), centre crop of ``image_size``. ``glyph``: resized
    to ``image_size x image_size``, greyscale replicated to 3 channels. Then ``/255`` and the
    ``normalisation``'s mean/std (ImageNet's by default), in float32 and in torchvision's order;
    resizing uses its filter (bilinear by default).
    """
    resample = pil_filter(normalisation)
    if kind == "photo":
        img = _center_crop(_resize_shorter(img if img.mode == "RGB" else img.convert("RGB"),
                                           normalisation.resize_shorter(image_size), resample), image_size)
    elif kind == "glyph":
        img = img.resize((image_size, image_size), resample).convert("L").convert("RGB")
    else:
        raise ValueError(f"unknown image kind {kind!r} (expected 'photo' or 'glyph')")
    x = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    mean = np.asarray(normalisation.mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(normalisation.std, dtype=np.float32).reshape(3, 1, 1)
    return np.ascontiguousarray((x - mean) / std)


def describe_eval(kind: str, image_size: int, normalisation: Normalisation = IMAGENET) -> str:
    """One line naming the steps of :func:`eval_array` (for reprs and model cards)."""
    steps = (f"RGB, Resize(shorter={normalisation.resize_shorter(image_size)}), CenterCrop({image_size})"
             if kind == "photo" else f"Resize({image_size}x{image_size}), Grayscale(3)")
    if normalisation.interpolation != "bilinear":
        steps += f" ({normalisation.interpolation})"
    return f"{kind}: {steps}, ToTensor, {normalisation.describe()}"


def _resize_shorter(img: Image.Image, short: int, resample: int = Image.BILINEAR) -> Image.Image:
    """torchvision's ``Resize(short)``: the shorter side becomes ``short``, the longer side is truncated."""
    w, h = img.size
    size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    return img if size == (w, h) else img.resize(size, resample)


def _center_crop(img: Image.Image, size: int) -> Image.Image:
    """torchvision's ``CenterCrop(size)`` (zero padding first when the image is smaller)."""
    w, h = img.size
    if w < size or h < size:
        padded = Image.new(img.mode, (max(w, size), max(h, size)))
        padded.paste(img, ((max(w, size) - w) // 2, (max(h, size) - h) // 2))
        img, (w, h) = padded, padded.size
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))
