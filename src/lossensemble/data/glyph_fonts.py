"""The fonts and the character pool of the ``glyphs`` dataset.

:class:`FontSet` finds the TrueType faces matplotlib ships (DejaVu and STIX for any
character they cover, Computer Modern for printable ASCII only) and their character
maps; :func:`select_glyph_pool` chooses the characters that make good classes: drawn by
at least ``MIN_FACES`` faces with enough ink, whitespace, marks, Braille and box drawing
excluded, and look-alikes across scripts merged (Latin A is kept, Greek Alpha and
Cyrillic A dropped), in a fixed pseudo-random order. Caching the pool is the job of
:mod:`lossensemble.data.glyphs`.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features
from tqdm.auto import tqdm

from lossensemble.errors import DataError

__all__ = [
    "FontSet", "GlyphClass", "FULL_FACES", "ASCII_FACES", "MIN_FACES", "POOL_VERSION", "draw_fitted",
    "select_glyph_pool", "pool_settings",
]

_STYLES = {"Sans": ("", "-Bold", "-Oblique", "-BoldOblique"),
           "SansMono": ("", "-Bold", "-Oblique", "-BoldOblique"),
           "Serif": ("", "-Bold", "-Italic", "-BoldItalic")}
#: Faces usable for every character they cover (DejaVu and STIX: Latin, Greek, Cyrillic, symbols).
FULL_FACES: tuple[str, ...] = tuple(
    f"DejaVu{family}{style}.ttf" for family, styles in _STYLES.items() for style in styles
) + ("STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf")
#: Computer Modern faces: usable for printable ASCII only (other code points are TeX-encoded).
ASCII_FACES: tuple[str, ...] = ("cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf")

POOL_VERSION = 1
MIN_FACES = 12  # a character needs this many usable faces
LOOKALIKE_COSINE = 0.95  # two characters whose renders are this similar are one class
FACE_MIN_INK = 0.02  # a face whose fitted render has less ink does not count for the character
CHAR_MIN_INK = 0.05  # median ink over faces: below it (hyphens, accents, modifier letters) little signal
_SIM_SIZE = 24  # renders compared for look-alikes (pixels)
_SIM_FONT_SIZE = 48


def _excluded(code: int) -> bool:
    """Whitespace, control, combining marks, Braille and box drawing are not classes."""
    if 0x2800 <= code <= 0x28FF or 0x2500 <= code <= 0x257F:
        return True
    return unicodedata.category(chr(code))[0] in "ZCM"


class FontSet:
    """The usable TrueType faces that matplotlib installs and the characters each covers."""

    def __init__(self, font_dir: str | Path | None = None) -> None:
        if font_dir is None:
            import matplotlib

            font_dir = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        self.font_dir = Path(font_dir)
        names = [n for n in FULL_FACES + ASCII_FACES if (self.font_dir / n).is_file()]
        if len([n for n in names if n in FULL_FACES]) < MIN_FACES:
            raise DataError(
                f"glyphs: found {len(names)} of matplotlib's fonts in {self.font_dir}; need at least "
                f"{MIN_FACES} of {', '.join(FULL_FACES)} (reinstall matplotlib)"
            )
        self.names: list[str] = names
        self._fonts: dict[tuple[int, int], ImageFont.FreeTypeFont] = {}

    def fingerprint(self) -> dict[str, Any]:
        """What the renders depend on: face files (name, size), Pillow and FreeType versions."""
        return {
            "faces": [[n, (self.font_dir / n).stat().st_size] for n in self.names],
            "pillow": Image.__version__,
            "freetype": features.version("freetype2"),
        }

    def coverage(self) -> list[set[int]]:
        """For each face, the code points it can draw (ASCII-only faces restricted to printable ASCII)."""
        from fontTools.ttLib import TTFont

        out = []
        for name in self.names:
            with TTFont(self.font_dir / name, lazy=True) as font:
                codes = set(font.getBestCmap() or {})
            if name in ASCII_FACES:
                codes = {c for c in codes if 0x21 <= c <= 0x7E}
            out.append(codes)
        return out

    def font(self, face: int, size: int) -> ImageFont.FreeTypeFont:
        key = (face, size)
        if key not in self._fonts:
            # BASIC layout: one character needs no shaping, and it is faster than raqm.
            self._fonts[key] = ImageFont.truetype(
                str(self.font_dir / self.names[face]), size, layout_engine=ImageFont.Layout.BASIC
            )
        return self._fonts[key]


def draw_fitted(font: ImageFont.FreeTypeFont, char: str, box: int, margin: float) -> Image.Image | None:
    """``char`` drawn white on black, scaled (aspect kept) to fill ``box`` less a margin, centred; None if blank."""
    left, top, right, bottom = font.getbbox(char)
    width, height = right - left, bottom - top
    if width <= 0 or height <= 0:
        return None
    glyph = Image.new("L", (width, height), 0)
    ImageDraw.Draw(glyph).text((-left, -top), char, font=font, fill=255)
    inner = max(1.0, box * (1 - 2 * margin))
    scale = inner / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    glyph = glyph.resize(size, Image.Resampling.BILINEAR)
    left, top = (box - size[0]) // 2, (box - size[1]) // 2
    return glyph.crop((-left, -top, box - left, box - top))  # outside the glyph: zeros


@dataclass(frozen=True)
class GlyphClass:
    """One class of the pool: a character and the faces (indices into :class:`FontSet`) that draw it well."""

    char: str
    faces: tuple[int, ...]


def _order_key(char: str) -> bytes:
    """Fixed pseudo-random order of the pool, stable across versions (a hash of the character)."""
    return hashlib.blake2b(char.encode("utf-8"), digest_size=8).digest()


def select_glyph_pool(fonts: FontSet, progress: bool = True) -> list[GlyphClass]:
    """Compute the pool: characters drawn by >= MIN_FACES faces with enough ink, look-alikes removed.

    Two characters are look-alikes when the cosine similarity of their fitted renders,
    averaged over the faces that draw both, reaches LOOKALIKE_COSINE; the one with the
    lower code point is kept (Latin A over Greek Alpha and Cyrillic A).
    """
    coverage = fonts.coverage()
    counts: dict[int, int] = {}
    for codes in coverage:
        for code in codes:
            counts[code] = counts.get(code, 0) + 1
    candidates = sorted(c for c, n in counts.items() if n >= MIN_FACES and not _excluded(c))
    n, dim = len(candidates), _SIM_SIZE * _SIM_SIZE
    renders = np.zeros((len(fonts.names), n, dim), dtype=np.uint8)
    bar = tqdm(candidates, desc="glyphs: choosing characters", unit="char", disable=None if progress else True)
    for j, code in enumerate(bar):
        for face, codes in enumerate(coverage):
            if code in codes:
                tile = draw_fitted(fonts.font(face, _SIM_FONT_SIZE), chr(code), _SIM_SIZE, 1 / _SIM_SIZE)
                if tile is not None:
                    renders[face, j] = np.asarray(tile).ravel()
    ink = renders.mean(axis=2) / 255.0  # faces x chars
    usable = ink >= FACE_MIN_INK
    median_ink = _masked_median(ink, usable)
    keep = np.flatnonzero((usable.sum(axis=0) >= MIN_FACES) & (median_ink >= CHAR_MIN_INK))

    # Mean over shared faces of the per-face cosine similarity, for the kept characters only.
    usable_kept = usable[:, keep]
    similarity = np.zeros((len(keep), len(keep)), dtype=np.float32)
    for face in range(len(fonts.names)):
        rows = np.flatnonzero(usable_kept[face])
        if len(rows) == 0:
            continue
        dense = len(rows) > len(keep) // 2  # scattering into a sub-matrix costs more than zero rows
        vectors = renders[face, keep if dense else keep[rows]].astype(np.float32)
        if dense:
            vectors *= usable_kept[face][:, None]
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-6)
        if dense:
            similarity += vectors @ vectors.T
        else:
            similarity[np.ix_(rows, rows)] += vectors @ vectors.T
    shared = usable_kept.T.astype(np.float32) @ usable_kept.astype(np.float32)
    similarity /= np.maximum(shared, 1.0)

    kept: list[int] = []  # positions in ``keep``, in code-point order
    for j in range(len(keep)):
        if not kept or similarity[j, kept].max() < LOOKALIKE_COSINE:
            kept.append(j)
    pool = [
        GlyphClass(chr(candidates[keep[j]]), tuple(int(f) for f in np.flatnonzero(usable_kept[:, j]))) for j in kept
    ]
    return sorted(pool, key=lambda g: _order_key(g.char))


def _masked_median(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median over axis 0 of the entries where ``mask`` is true (0 for an all-false column)."""
    ordered = np.sort(np.where(mask, values, np.inf), axis=0)  # masked entries sort last
    count = mask.sum(axis=0)
    cols = np.arange(values.shape[1])
    low = ordered[np.maximum(count - 1, 0) // 2, cols]
    high = ordered[np.maximum(count, 1) // 2 - (count == 0), cols]
    return np.where(count > 0, (low + high) / 2, 0.0)


def pool_settings(fonts: FontSet) -> dict[str, Any]:
    """What the pool depends on (fonts and thresholds): a change means a new pool."""
    return {
        "version": POOL_VERSION, "fonts": fonts.fingerprint(), "min_faces": MIN_FACES,
        "cosine": LOOKALIKE_COSINE, "face_ink": FACE_MIN_INK, "char_ink": CHAR_MIN_INK,
    }

