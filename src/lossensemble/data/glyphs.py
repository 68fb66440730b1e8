"""``glyphs``: the embedded offline dataset of characters rendered from matplotlib's fonts.

Class = character; the images of a class are the character drawn in different font
faces, each with a random affine jitter and stroke width. Three parts make it:

* :mod:`~lossensemble.data.glyph_fonts`: the usable faces (:class:`FontSet`) and the pool
  of usable characters (covered by many faces, with enough ink, look-alikes removed), in
  a fixed pseudo-random order; :func:`load_glyph_pool` caches the pool as JSON;
* :class:`GlyphRenderer`: draws the jittered samples of one class, deterministically for
  a seed; :func:`render_glyph_block` renders a list of classes and caches the arrays;
* :class:`Glyphs`: the registered dataset source.

Splits take classes from the pool's fixed order: train classes first, then test
classes; "pretrain" takes classes from the end of the pool, disjoint from both.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from lossensemble.errors import DataError

from .cache import cache_dir, cached
from .glyph_fonts import (
    ASCII_FACES,
    FULL_FACES,
    MIN_FACES,
    POOL_VERSION,
    FontSet,
    GlyphClass,
    draw_fitted,
    pool_settings,
    select_glyph_pool,
)
from .images import ArrayImageDataset
from .registry import DatasetSource, register_dataset
from .splits import Catalog, select_split

__all__ = [
    "FontSet", "GlyphClass", "GlyphRenderer", "load_glyph_pool", "render_glyph_block", "Glyphs",
    "ASCII_FACES", "FULL_FACES", "MIN_FACES", "select_glyph_pool",
]

log = logging.getLogger(__name__)

_MARGIN = 0.12  # empty border kept around a fitted glyph, room for the jitter


def _key(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _cache_folder(folder: Path | None) -> Path:
    return cache_dir("glyphs", create=False) if folder is None else Path(folder)


def load_glyph_pool(
    fonts: FontSet | None = None, progress: bool = True, folder: Path | None = None
) -> list[GlyphClass]:
    """The pool of glyph classes in its fixed order, read from the cache or computed (seconds) and cached.

    ``folder``: where the cache lives (default ``cache_dir("glyphs")``). A damaged cache
    file is rebuilt, an unwritable folder means computing in memory (both warned about).
    """
    fonts = fonts or FontSet()
    settings = pool_settings(fonts)

    def load(data: bytes) -> list[GlyphClass]:
        content = json.loads(data.decode("utf-8"))
        if content["settings"] != settings:
            raise ValueError("made with other settings")
        return [GlyphClass(str(c), tuple(int(f) for f in faces)) for c, faces in content["classes"]]

    def dump(pool: list[GlyphClass]) -> bytes:
        return json.dumps({"settings": settings, "classes": [[g.char, list(g.faces)] for g in pool]}).encode()

    return cached(_cache_folder(folder) / f"pool-{_key(settings)}.json", load=load, dump=dump,
                  build=lambda: select_glyph_pool(fonts, progress=progress), what="glyphs")


class GlyphRenderer:
    """Draws the samples of a class: faces in a seeded order, each with a random affine jitter and stroke width.

    Each glyph is drawn at twice the output size, fitted to the box, thickened or
    thinned (dilation/erosion; thinning only if most of the ink survives), then
    rotated, scaled, sheared and shifted, and reduced to ``size`` x ``size``. Output:
    uint8, black ink on white paper.
    """

    ROTATION = 12.0  # degrees, +-
    SCALE = (0.8, 1.05)
    SHEAR = 0.2  # +-
    SHIFT = 0.06  # fraction of the size, +-
    STROKES = (-1, 0, 1, 2)  # dilation radius at twice the resolution; negative = erosion

    def __init__(self, fonts: FontSet, size: int) -> None:
        if size < 8:
            raise DataError(f"glyphs: render_size must be >= 8, got {size}")
        self.fonts = fonts
        self.size = size

    def render_class(self, glyph: GlyphClass, count: int, seed: int) -> np.ndarray:
        """``count`` images (count, size, size) of one class; a function of (glyph, count, seed) only."""
        rng = np.random.default_rng([seed, ord(glyph.char)])
        faces = np.asarray(glyph.faces)[rng.permutation(len(glyph.faces))]
        out = np.empty((count, self.size, self.size), dtype=np.uint8)
        for i in range(count):
            out[i] = self._sample(glyph.char, int(faces[i % len(faces)]), rng)
        return out

    def _sample(self, char: str, face: int, rng: np.random.Generator) -> np.ndarray:
        big = 2 * self.size
        tile = draw_fitted(self.fonts.font(face, big), char, big, _MARGIN)
        if tile is None:  # not expected for pool characters; keep the shape
            return np.full((self.size, self.size), 255, dtype=np.uint8)
        stroke = int(rng.choice(self.STROKES))
        if stroke:
            ink = np.asarray(tile)
            changed = _morph(ink, abs(stroke), np.maximum if stroke > 0 else np.minimum)
            if stroke > 0 or changed.mean() >= 0.6 * ink.mean():  # thin strokes must not vanish
                tile = Image.fromarray(changed)
        tile = tile.reduce(2)  # antialiased down to the output size
        angle = np.deg2rad(rng.uniform(-self.ROTATION, self.ROTATION))
        scale = rng.uniform(*self.SCALE)
        shear = rng.uniform(-self.SHEAR, self.SHEAR)
        shift = rng.uniform(-self.SHIFT, self.SHIFT, size=2) * self.size
        rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        inverse = np.linalg.inv(rotate @ np.array([[1.0, shear], [0.0, 1.0]]) * scale)
        centre = np.full(2, self.size / 2)
        offset = centre - inverse @ (centre + shift)  # output pixel p samples input inverse @ p + offset
        coeffs = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
        moved = tile.transform((self.size, self.size), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)
        return 255 - np.asarray(moved)


def _morph(image: np.ndarray, radius: int, op: np.ufunc) -> np.ndarray:
    """Grey dilation (``np.maximum``) or erosion (``np.minimum``) by a square of side 2*radius+1 (separable)."""
    height, width = image.shape
    fill = 0 if op is np.maximum else 255
    padded = np.pad(image, radius, constant_values=fill)
    rows = padded[:, :width].copy()
    for k in range(1, 2 * radius + 1):
        op(rows, padded[:, k : k + width], out=rows)
    out = rows[:height].copy()
    for k in range(1, 2 * radius + 1):
        op(out, rows[k : k + height], out=out)
    return out


def render_glyph_block(
    classes: Sequence[GlyphClass],
    images_per_class: int,
    render_size: int,
    seed: int,
    fonts: FontSet | None = None,
    progress: bool = True,
    desc: str = "glyphs: rendering",
    folder: Path | None = None,
) -> np.ndarray:
    """Images (len(classes) * images_per_class, size, size) uint8, class-major; cached on disk by their options.

    ``folder``: where the cache lives (default ``cache_dir("glyphs")``). The cache file is
    verified on load (a damaged one is rebuilt) and written under a lock, so concurrent
    runs render a block once; an unwritable folder means rendering in memory (warned).
    """
    fonts = fonts or FontSet()
    settings = {
        "version": POOL_VERSION, "fonts": fonts.fingerprint(), "chars": "".join(g.char for g in classes),
        "faces": [list(g.faces) for g in classes], "images_per_class": images_per_class,
        "render_size": render_size, "seed": seed,
        "jitter": [GlyphRenderer.ROTATION, GlyphRenderer.SCALE, GlyphRenderer.SHEAR,
                   GlyphRenderer.SHIFT, GlyphRenderer.STROKES, _MARGIN],
    }
    shape = (len(classes) * images_per_class, render_size, render_size)

    def load(data: bytes) -> np.ndarray:
        with np.load(io.BytesIO(data), allow_pickle=False) as content:
            images = content["images"]
        if images.shape != shape or images.dtype != np.uint8:
            raise ValueError(f"holds {images.dtype} images of shape {images.shape}, expected uint8 {shape}")
        return images

    def build() -> np.ndarray:
        renderer = GlyphRenderer(fonts, render_size)
        images = np.empty(shape, dtype=np.uint8)
        for k, glyph in enumerate(tqdm(classes, desc=desc, unit="class", disable=None if progress else True)):
            images[k * images_per_class : (k + 1) * images_per_class] = renderer.render_class(
                glyph, images_per_class, seed)
        return images

    def dump(images: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, images=images)
        return buffer.getvalue()

    return cached(_cache_folder(folder) / f"renders-{_key(settings)}.npz", load=load, build=build, dump=dump,
                  what="glyphs")


def _positive_int(opts: dict[str, Any], key: str, minimum: int) -> int:
    value = opts[key]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"glyphs: option {key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@register_dataset("glyphs")
class Glyphs(DatasetSource):
    """Characters rendered from matplotlib's fonts: offline, deterministic for a seed, cached.

    Options: ``num_train_classes``, ``num_test_classes``, ``num_pretrain_classes``,
    ``images_per_class`` (>= 16), ``render_size`` (pixels), ``progress`` (progress bars).
    The build's ``seed`` drives the renders (faces order, jitter). ``root``, if given, is
    the folder of the cache (default ``$LOSSENSEMBLE_CACHE/glyphs``).
    """

    kind = "glyph"
    title = "Glyphs (embedded)"
    source = "rendered from matplotlib's TrueType fonts, cached under $LOSSENSEMBLE_CACHE/glyphs"
    how_to_get = "built in: generated on first use (seconds)"
    extra_splits = ("pretrain",)
    options: ClassVar[dict[str, Any]] = {
        "num_train_classes": 300,
        "num_test_classes": 300,
        "num_pretrain_classes": 500,
        "images_per_class": 16,
        "render_size": 64,
        "progress": True,
    }
    MIN_IMAGES_PER_CLASS = 16

    def __init__(self, root: str | Path | None = None, **options: Any) -> None:
        super().__init__(root, **options)
        self.num_train = _positive_int(self.opts, "num_train_classes", 2)
        self.num_test = _positive_int(self.opts, "num_test_classes", 2)
        self.num_pretrain = _positive_int(self.opts, "num_pretrain_classes", 2)
        self.images_per_class = _positive_int(self.opts, "images_per_class", self.MIN_IMAGES_PER_CLASS)
        self.render_size = _positive_int(self.opts, "render_size", 8)

    @property
    def default_image_size(self) -> int:  # type: ignore[override]
        return self.render_size

    def location(self) -> str:
        return str(self.root) if self.root is not None else str(cache_dir("glyphs", create=False))

    def summary(self) -> dict[str, Any]:
        """Counts from the options alone: nothing is rendered."""
        return {
            "train_classes": self.num_train, "train_images": self.num_train * self.images_per_class,
            "test_classes": self.num_test, "test_images": self.num_test * self.images_per_class,
        }

    def blocks(self, pool: Sequence[GlyphClass]) -> dict[str, list[GlyphClass]]:
        """The classes of each part of the pool: train, test (next), pretrain (the end)."""
        need = self.num_train + self.num_test
        if need > len(pool):
            raise DataError(
                f"glyphs: {self.num_train} train + {self.num_test} test classes exceed the {len(pool)} usable characters"
            )
        return {
            "train": list(pool[: self.num_train]),
            "test": list(pool[self.num_train : need]),
            "pretrain": list(pool[len(pool) - self.num_pretrain :]),
        }

    def build(self, split: str, *, val_fraction: float, seed: int) -> ArrayImageDataset:
        fonts = FontSet()
        progress = bool(self.opts["progress"])
        pool = load_glyph_pool(fonts, progress=progress, folder=self.root)
        blocks = self.blocks(pool)
        if split == "pretrain" and self.num_train + self.num_test + self.num_pretrain > len(pool):
            raise DataError(
                f"glyphs: {self.num_pretrain} pretrain classes would overlap the {self.num_train} train + "
                f"{self.num_test} test classes (pool: {len(pool)}); lower num_pretrain_classes"
            )
        parts = {"train": ["train"], "val": ["train"], "test": ["test"], "all": ["train", "test"],
                 "pretrain": ["pretrain"]}[split]
        images, chars, tags = [], [], []
        for part in parts:
            classes = blocks[part]
            images.append(render_glyph_block(classes, self.images_per_class, self.render_size, seed, fonts,
                                             progress, desc=f"glyphs: rendering {part} classes", folder=self.root))
            chars.extend(g.char for g in classes for _ in range(self.images_per_class))
            tags.extend(["test" if part == "test" else "train"] * (len(classes) * self.images_per_class))
        order = [g.char for part in parts for g in blocks[part]]
        catalog = Catalog(classes=np.asarray(chars), tags=np.asarray(tags), class_order=order)
        sel = select_split(catalog, "train" if split == "pretrain" else split,
                           val_fraction=0.0 if split == "pretrain" else val_fraction, seed=seed, dataset=self.name)
        all_images = np.concatenate(images) if len(images) > 1 else images[0]
        return ArrayImageDataset(
            name=self.name, split=split, kind=self.kind, labels=sel.labels, class_names=sel.class_names,
            images=all_images[sel.indices],
        )
