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

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "KINDS", "describe_eval", "eval_array"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Image kinds: ``photo`` (natural images) and ``glyph`` (characters, drawn on white).
KINDS = ("photo", "glyph")

_MEAN = np.asarray(IMAGENET_MEAN, dtype=np.float32).reshape(3, 1, 1)
_STD = np.asarray(IMAGENET_STD, dtype=np.float32).reshape(3, 1, 1)


def eval_array(img: Image.Image, kind: str, image_size: int) -> np.ndarray:
    """``img`` as the (3, image_size, image_size) float32 array the model sees at evaluation.

    ``photo``: RGB, shorter side resized to ``int(image_size * 256 / 224)`` (bilinear, as
    torchvision's ``Resize(int)``), centre crop of ``image_size``. ``glyph``: resized to
    ``image_size x image_size`` (bilinear), greyscale replicated to 3 channels. Then
    ``/255`` and ImageNet normalisation, in float32 and in torchvision's order.
    """
    if kind == "photo":
        img = _center_crop(_resize_shorter(img if img.mode == "RGB" else img.convert("RGB"),
                                           int(image_size * 256 / 224)), image_size)
    elif kind == "glyph":
        img = img.resize((image_size, image_size), Image.BILINEAR).convert("L").convert("RGB")
    else:
        raise ValueError(f"unknown image kind {kind!r} (expected 'photo' or 'glyph')")
    x = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    return np.ascontiguousarray((x - _MEAN) / _STD)


def describe_eval(kind: str, image_size: int) -> str:
    """One line naming the steps of :func:`eval_array` (for reprs and model cards)."""
    steps = (f"RGB, Resize(shorter={int(image_size * 256 / 224)}), CenterCrop({image_size})" if kind == "photo"
             else f"Resize({image_size}x{image_size}), Grayscale(3)")
    return f"{kind}: {steps}, ToTensor, Normalize(ImageNet)"


def _resize_shorter(img: Image.Image, short: int) -> Image.Image:
    """torchvision's ``Resize(short)``: the shorter side becomes ``short``, the longer side is truncated."""
    w, h = img.size
    size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
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
