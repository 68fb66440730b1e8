"""Train and evaluation transforms for photos and glyphs.

Training transforms are torchvision's (random crops, flips, affine jitter). Evaluation
transforms wrap :mod:`lossensemble.preprocess` (Pillow + numpy, equal to torchvision's
pipeline value for value), which the query path of ``search`` and ``serve`` shares.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from lossensemble.errors import UserError
from lossensemble.preprocess import (IMAGENET, IMAGENET_MEAN, IMAGENET_STD, KINDS, Normalisation, describe_eval,
                                     eval_array)
from lossensemble.registry import Registry, check_options

__all__ = [
    "AUGMENTATIONS", "IMAGENET_MEAN", "IMAGENET_STD", "KINDS", "EvalTransform", "augment_entry", "build_transforms", "check_augment",
    "register_augmentation",
]


#: Augmentations of the training split by name; each is a function
#: ``(kind, image_size, *, options...) -> transform`` whose keyword-only arguments are its options.
#: One that takes a third positional parameter ``normalisation`` is given the backbone's
#: :class:`~lossensemble.preprocess.Normalisation` (mean/std, filter); the built-in ones do.
AUGMENTATIONS: Registry[Callable] = Registry("augmentation", key="data.augment")


def register_augmentation(name: str) -> Callable[[Callable], Callable]:
    """Register a training augmentation ``(kind, image_size, *, options...) -> transform`` under ``name``."""
    return AUGMENTATIONS.register(name)


def augment_entry(augment: Any) -> tuple[str, dict[str, Any]]:
    """``data.augment`` as ``(name, options)``: a name, or ``{name: ..., options: {...}}``; checked.

    Raises :class:`~lossensemble.errors.UserError` (one line) for an unknown name, an unknown
    option or an option of the wrong type.
    """
    if isinstance(augment, str):
        name, options = augment, {}
    elif isinstance(augment, dict) and set(augment) <= {"name", "options"} and isinstance(augment.get("name"), str) \
            and isinstance(augment.get("options", {}), dict):
        name, options = augment["name"], dict(augment.get("options", {}))
    else:
        raise UserError(f"data.augment: expected a name ({', '.join(AUGMENTATIONS.names())}) or "
                        f"{{name: ..., options: {{...}}}}, got {augment!r}")
    fn = AUGMENTATIONS.get_or_raise(name)
    return name, check_options(f"data.augment {name!r}", fn, options)


def check_augment(augment: Any, kind: str = "photo") -> None:
    """Check ``data.augment`` (name, options, values) before any long work; raises a one-line UserError."""
    build_transforms(kind if kind in KINDS else "photo", 32, train=True, augment=augment)


def build_transforms(kind: str, image_size: int, train: bool, augment: Any = "auto",
                     normalisation: Normalisation = IMAGENET) -> Callable:
    """The transform from a PIL image to a normalised float tensor (3 x image_size x image_size).

    Evaluation (``train=False``): for photos, resize to ``image_size * 256/224`` then centre
    crop; for glyphs, resize only (:class:`EvalTransform`). Training: the augmentation
    ``augment`` names (``data.augment``): ``auto`` (default) is the kind's own, ``photo``
    for photos and ``glyph`` for glyphs; ``none`` trains on the evaluation transform. All
    normalise with ``normalisation`` and resize with its filter: the backbone's own
    (``Backbone.normalisation``: a timm model's data config; ImageNet statistics and bilinear
    for the others), so that pretrained backbones see familiar statistics. The size is always
    ``image_size`` (``data.image_size``), never the backbone's default input size.
    """
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    if kind not in KINDS:
        raise ValueError(f"unknown image kind {kind!r} (expected 'photo' or 'glyph')")
    if not train:
        return EvalTransform(kind, image_size, normalisation)
    name, options = augment_entry(augment)
    return _call_augmentation(AUGMENTATIONS[name], kind, image_size, normalisation, options)


def _call_augmentation(fn: Callable, kind: str, image_size: int, normalisation: Normalisation,
                       options: dict[str, Any]) -> Callable:
    positional = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 3:
        return fn(kind, image_size, normalisation, **options)
    if normalisation != IMAGENET:  # an augmentation written before normalisations: it normalises its own way
        import logging

        logging.getLogger(__name__).warning("augmentation %s takes no normalisation; the backbone's (%s) is not "
                                            "passed to it", getattr(fn, "__name__", fn), normalisation.describe())
    return fn(kind, image_size, **options)


@register_augmentation("auto")
def _auto(kind: str, image_size: int, normalisation: Normalisation = IMAGENET) -> Callable:
    """The image kind's own augmentation: ``photo`` for photos, ``glyph`` for glyphs."""
    return AUGMENTATIONS[kind](kind, image_size, normalisation)


@register_augmentation("photo")
def _photo(kind: str, image_size: int, normalisation: Normalisation = IMAGENET, *, crop_scale: list = (0.08, 1.0),
           crop_ratio: list = (0.75, 4 / 3), flip: bool = True, color_jitter: float = 0.0) -> Callable:
    """Photos: random resized crop (area fraction ``crop_scale``, aspect ``crop_ratio``), horizontal
    flip (``flip``), optional colour jitter of strength ``color_jitter`` (brightness, contrast, saturation)."""
    from torchvision import transforms as T

    lo, hi = _pair("crop_scale", crop_scale, 0.0, 1.0)
    r_lo, r_hi = _pair("crop_ratio", crop_ratio, 0.0, float("inf"))
    if not 0.0 <= float(color_jitter) <= 1.0:
        raise UserError(f"data.augment 'photo': color_jitter must be in [0, 1], got {color_jitter!r}")
    steps = [T.Lambda(_to_rgb), T.RandomResizedCrop(image_size, scale=(lo, hi), ratio=(r_lo, r_hi),
                                                    interpolation=_tv_interpolation(normalisation))]
    if flip:
        steps.append(T.RandomHorizontalFlip())
    if color_jitter:
        steps.append(T.ColorJitter(color_jitter, color_jitter, color_jitter))
    return T.Compose([*steps, T.ToTensor(), T.Normalize(normalisation.mean, normalisation.std)])


@register_augmentation("glyph")
def _glyph(kind: str, image_size: int, normalisation: Normalisation = IMAGENET, *, degrees: float = 5.0,
           translate: float = 0.04, scale: list = (0.92, 1.08), shear: float = 4.0, flip: bool = False) -> Callable:
    """Characters, logos, documents: a small random affine jitter on a white background; no flip by
    default (mirrored characters are other characters); greyscale replicated to 3 channels."""
    from torchvision import transforms as T

    lo, hi = _pair("scale", scale, 0.0, float("inf"))
    if not (0.0 <= float(translate) <= 1.0 and float(degrees) >= 0 and float(shear) >= 0):
        raise UserError("data.augment 'glyph': translate must be in [0, 1], degrees and shear >= 0")
    interpolation = _tv_interpolation(normalisation)
    steps = [T.Resize((image_size, image_size), interpolation=interpolation),
             T.RandomAffine(degrees=float(degrees), translate=(float(translate), float(translate)), scale=(lo, hi),
                            shear=float(shear), interpolation=_affine_interpolation(interpolation), fill=255)]
    if flip:
        steps.append(T.RandomHorizontalFlip())
    return T.Compose([*steps, T.Grayscale(num_output_channels=3), T.ToTensor(),
                      T.Normalize(normalisation.mean, normalisation.std)])


@register_augmentation("none")
def _none(kind: str, image_size: int, normalisation: Normalisation = IMAGENET) -> Callable:
    """No random augmentation: training images get the evaluation transform."""
    return EvalTransform(kind, image_size, normalisation)


def _tv_interpolation(normalisation: Normalisation):
    """torchvision's ``InterpolationMode`` of ``normalisation.interpolation`` (the same Pillow filter)."""
    from torchvision.transforms import InterpolationMode

    return InterpolationMode(normalisation.interpolation)


def _affine_interpolation(mode):
    """Pillow's affine transform takes only nearest, bilinear and bicubic; others fall back to bilinear."""
    from torchvision.transforms import InterpolationMode

    ok = (InterpolationMode.NEAREST, InterpolationMode.BILINEAR, InterpolationMode.BICUBIC)
    return mode if mode in ok else InterpolationMode.BILINEAR


def _pair(option: str, value: Any, low: float, high: float) -> tuple[float, float]:
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok or not (low < float(value[0]) <= float(value[1]) <= high):
        raise UserError(f"data.augment: {option} must be two numbers [min, max] with {low} < min <= max <= {high}, "
                        f"got {value!r}")
    return float(value[0]), float(value[1])


class EvalTransform:
    """The deterministic evaluation transform of ``kind`` at ``image_size`` as a torch tensor (picklable).

    The pixels come from :func:`lossensemble.preprocess.eval_array` (Pillow + numpy), which
    ``search`` and ``serve`` also use without importing torch.
    """

    def __init__(self, kind: str, image_size: int, normalisation: Normalisation = IMAGENET) -> None:
        self.kind = kind
        self.image_size = int(image_size)
        self.normalisation = normalisation

    def __repr__(self) -> str:
        return f"EvalTransform({describe_eval(self.kind, self.image_size, self.normalisation)})"

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return torch.from_numpy(eval_array(img, self.kind, self.image_size, self.normalisation))


def _to_rgb(img):  # module-level so the transform pickles into DataLoader workers
    return img if img.mode == "RGB" else img.convert("RGB")
