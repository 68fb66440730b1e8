"""Reading image files without ever raising: :class:`SafeImageReader`.

Lives with the preprocessing (Pillow + numpy, no torch) because both training and
the query path of ``search``/``serve`` read images through it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from PIL import Image

from lossensemble.preprocess.pixels import to_rgb

__all__ = ["SafeImageReader"]

log = logging.getLogger(__name__)


class SafeImageReader:
    """Opens image files without ever raising: a file that cannot be decoded gives ``None``.

    Corrupt, truncated, zero-byte and non-image files, and images larger than
    ``max_pixels`` (decompression bombs, checked from the header before decoding),
    are skipped: each file is warned about once and counted. The count is per process
    (DataLoader workers keep their own); :func:`collate_batch` reports the skips that a
    training loop actually sees. PIL's global settings are left untouched.

    Every mode is converted to the 8-bit RGB picture it shows (:func:`~lossensemble.preprocess.to_rgb`):
    16- and 32-bit images are scaled by their range, transparency is composited on white.
    """

    def __init__(self, max_pixels: int | None = None) -> None:
        self.max_pixels = Image.MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
        self._lock = threading.Lock()
        self._bad: set[str] = set()
        self._skipped = 0

    @property
    def num_skipped(self) -> int:
        """How many reads failed in this process so far (a file read twice counts twice)."""
        return self._skipped

    @property
    def bad_files(self) -> list[str]:
        """The files that failed to load in this process, sorted."""
        with self._lock:
            return sorted(self._bad)

    def read(self, path: str) -> Image.Image | None:
        """The image at ``path`` as RGB, or ``None`` (warned once, counted) if unusable."""
        try:
            with Image.open(path) as img:
                width, height = img.size
                if self.max_pixels and width * height > self.max_pixels:
                    raise ValueError(
                        f"{width}x{height} pixels exceeds the limit of {self.max_pixels} (decompression bomb?)"
                    )
                return to_rgb(img)  # decodes the whole file
        except Exception as exc:  # any decoding failure is a skipped item, never a crash mid-epoch
            self._record(path, exc)
            return None

    def _record(self, path: str, exc: Exception) -> None:
        with self._lock:
            self._skipped += 1
            first = path not in self._bad
            self._bad.add(path)
        if first:
            log.warning("skipping unreadable image %s (%s: %s)", path, type(exc).__name__, exc)

    def __getstate__(self) -> dict[str, Any]:  # locks do not pickle (DataLoader workers)
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
