"""Any picture Pillow opens, as the 8-bit RGB image a person would see.

``Image.convert("RGB")`` alone gets several modes wrong: 16- and 32-bit greyscale
values are clipped at 255 (a 16-bit PNG reads as solid white), and transparency is
dropped (a transparent pixel shows whatever colour it stores, often black).
:func:`to_rgb` handles each mode:

* ``I;16`` / ``I;16B`` / ``I;16L`` / ``I;16N`` (16-bit): scaled from 0..65535 to 0..255;
* ``I`` (32-bit integers): scaled from 0..65535 when every value is in that range (16-bit
  data, as TIFF and older Pillow versions store it), else from the image's min..max;
* ``F`` (32-bit floats): kept when every value is in 0..255, scaled from 0..1 when every
  value is in that range, else from the image's min..max; NaN or infinite values are an
  error (the reader skips and counts the image);
* modes with transparency (``LA``, ``La``, ``PA``, ``RGBA``, ``RGBa``, and ``P``, ``L``,
  ``RGB`` with a transparent colour): composited on white paper;
* every other mode (``1``, ``L``, ``P``, ``RGB``, ``RGBX``, ``CMYK``, ``YCbCr``, ``LAB``,
  ``HSV``): Pillow's own conversion.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["to_rgb"]

_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})


def _grey(values: np.ndarray, low: float, high: float) -> Image.Image:
    """``values`` mapped linearly from [low, high] to 0..255 (rounded, clipped), as RGB."""
    if high > low:
        scaled = (values.astype(np.float64) - low) * (255.0 / (high - low))
    else:  # a flat image: keep its level where it is a valid 8-bit value
        scaled = np.full(values.shape, low, dtype=np.float64)
    grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def _deep_grey(img: Image.Image) -> Image.Image:
    values = np.asarray(img)
    if img.mode.startswith("I;16"):
        return _grey(values, 0, 65535)
    if values.size == 0:
        return _grey(values, 0, 255)
    if img.mode == "F" and not np.isfinite(values).all():
        raise ValueError("float image with NaN or infinite pixels")
    low, high = float(values.min()), float(values.max())
    if img.mode == "I":
        return _grey(values, 0, 65535) if low >= 0 and high <= 65535 else _grey(values, low, high)
    if low >= 0 and high <= 1:
        return _grey(values, 0, 1)
    if low >= 0 and high <= 255:
        return _grey(values, 0, 255)
    return _grey(values, low, high)


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` (any mode Pillow opens) as an 8-bit RGB image; transparency is composited on white."""
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _deep_grey(img)
    if mode == "La":  # premultiplied alpha: Pillow converts it to LA only
        img = img.convert("LA")
    if img.mode in _ALPHA_MODES or (mode in ("P", "L", "RGB", "1") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, rgba).convert("RGB")
    return img.convert("RGB")
