"""How a backbone wants its pixels: mean/std, resampling filter and evaluation crop (torch-free).

:data:`IMAGENET` (ImageNet mean/std, bilinear, crop 224/256) is what torchvision and our
own backbones use; a ``timm:<name>`` backbone carries the data config timm resolves for
its model (:meth:`Normalisation.from_timm`). The input size is never taken from here:
``data.image_size`` decides it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["IMAGENET", "IMAGENET_MEAN", "IMAGENET_STD", "INTERPOLATIONS", "Normalisation"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Resampling filters understood (timm's names; Pillow's filter of the same name is used).
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")


@dataclass(frozen=True)
class Normalisation:
    """Per-channel ``mean``/``std`` (of pixels in [0, 1]), the resampling ``interpolation`` and the evaluation
    ``crop_pct`` (photos: the shorter side is resized to ``int(image_size / crop_pct)``, then centre-cropped)."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 0.875

    def __post_init__(self) -> None:
        mean = tuple(float(v) for v in self.mean)
        std = tuple(float(v) for v in self.std)
        if len(mean) != 3 or len(std) != 3 or not all(v > 0 for v in std):
            raise ValueError(f"normalisation needs 3 means and 3 positive stds, got {self.mean!r} / {self.std!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}")
        if not 0.0 < float(self.crop_pct) <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "crop_pct", float(self.crop_pct))

    def resize_shorter(self, image_size: int) -> int:
        """The shorter side photos are resized to before the centre crop of ``image_size``."""
        if self.crop_pct == 0.875:  # ImageNet's 256/224, written as before (same value)
            return int(image_size * 256 / 224)
        return int(image_size / self.crop_pct)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written into an exported model's config.json (``normalisation``)."""
        return {"mean": list(self.mean), "std": list(self.std), "interpolation": self.interpolation,
                "crop_pct": self.crop_pct}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "Normalisation":
        """Read :meth:`to_dict`'s form; missing keys (older exports wrote only mean/std) take ImageNet's values."""
        data = data or {}
        return cls(tuple(data.get("mean", IMAGENET_MEAN)), tuple(data.get("std", IMAGENET_STD)),
                   str(data.get("interpolation", "bilinear")), float(data.get("crop_pct", 0.875)))

    @classmethod
    def from_timm(cls, config: Mapping[str, Any]) -> "Normalisation":
        """From ``timm.data.resolve_data_config(...)``; a filter we do not know (e.g. ``random``) is bilinear."""
        interpolation = str(config.get("interpolation", "bilinear"))
        return cls(tuple(config.get("mean", IMAGENET_MEAN)), tuple(config.get("std", IMAGENET_STD)),
                   interpolation if interpolation in INTERPOLATIONS else "bilinear",
                   float(config.get("crop_pct", 0.875) or 0.875))

    def describe(self) -> str:
        """``Normalize(ImageNet)`` for :data:`IMAGENET`, else the values (for reprs and model cards)."""
        if self == IMAGENET:
            return "Normalize(ImageNet)"
        fmt = lambda v: "(" + ", ".join(f"{x:g}" for x in v) + ")"  # noqa: E731
        return f"Normalize(mean={fmt(self.mean)}, std={fmt(self.std)})"


#: ImageNet statistics, bilinear, crop 224/256: torchvision and ``small_cnn`` backbones.
IMAGENET = Normalisation()
