"""Every image mode Pillow opens is read as the 8-bit RGB picture it shows (or skipped and counted)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lossensemble.data import SafeImageReader
from lossensemble.preprocess import to_rgb


def _read(path: Path) -> np.ndarray:
    reader = SafeImageReader()
    img = reader.read(str(path))
    assert img is not None and img.mode == "RGB" and reader.num_skipped == 0
    return np.asarray(img).astype(int)


def _grey_rgb(values: list[int]) -> np.ndarray:
    return np.repeat(np.asarray(values, dtype=int)[None, :, None], 3, axis=2)


def test_16_bit_png_is_scaled_not_white(tmp_path):
    values = np.asarray([[0, 257 * 100, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as img:
        assert img.mode == "I;16"
    assert np.array_equal(_read(path), _grey_rgb([0, 100, 128, 255]))


def test_16_bit_big_endian_tiff(tmp_path):
    values = np.asarray([[0, 257 * 100, 32768, 65535]], dtype=">u2")
    path = tmp_path / "deep.tif"
    Image.frombytes("I;16B", (4, 1), values.tobytes()).save(path)
    with Image.open(path) as img:
        assert img.mode == "I;16B"
    assert np.array_equal(_read(path), _grey_rgb([0, 100, 128, 255]))


@pytest.mark.parametrize(("values", "expected"), [
    ([0, 257 * 50, 65535, 257], [0, 50, 255, 1]),  # 16-bit data in 32 bits
    ([-1000, 0, 99000, 49000], [0, 3, 255, 128]),  # beyond 16 bits: the image's own range
])
def test_32_bit_integer_tiff(tmp_path, values, expected):
    path = tmp_path / "int.tif"
    Image.fromarray(np.asarray([values], dtype=np.int32)).save(path)
    with Image.open(path) as img:
        assert img.mode == "I"
    assert np.array_equal(_read(path), _grey_rgb(expected))


@pytest.mark.parametrize(("values", "expected"), [
    ([0.0, 0.25, 0.5, 1.0], [0, 64, 128, 255]),  # 0..1 floats
    ([0.0, 12.0, 200.4, 255.0], [0, 12, 200, 255]),  # 8-bit values as floats
    ([-1.0, 0.0, 1.0, 3.0], [0, 64, 128, 255]),  # anything else: the image's own range
])
def test_float_tiff(tmp_path, values, expected):
    path = tmp_path / "float.tif"
    Image.fromarray(np.asarray([values], dtype=np.float32)).save(path)
    with Image.open(path) as img:
        assert img.mode == "F"
    assert np.array_equal(_read(path), _grey_rgb(expected))


def test_float_with_nan_is_skipped_and_counted(tmp_path):
    path = tmp_path / "nan.tif"
    Image.fromarray(np.asarray([[0.0, np.nan]], dtype=np.float32)).save(path)
    reader = SafeImageReader()
    assert reader.read(str(path)) is None and reader.num_skipped == 1


def test_grey_with_alpha_is_composited_on_white(tmp_path):
    la = np.asarray([[[0, 255], [0, 0], [0, 128], [200, 255]]], dtype=np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(path)
    with Image.open(path) as img:
        assert img.mode == "LA"
    assert np.array_equal(_read(path), _grey_rgb([0, 255, 127, 200]))


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.asarray([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 255, 128], [10, 20, 30, 255]]], dtype=np.uint8)
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    got = _read(path)[0]
    expected = np.asarray([[255, 0, 0], [255, 255, 255], [127, 127, 255], [10, 20, 30]])
    assert np.abs(got - expected).max() <= 1


@pytest.mark.parametrize("fmt", ["png", "gif"])
def test_palette_with_transparency(tmp_path, fmt):
    img = Image.new("P", (3, 1))
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0, 0, 0] * 253)
    img.putdata([0, 1, 2])  # black (transparent), red, green
    path = tmp_path / f"pal.{fmt}"
    img.save(path, transparency=0)
    with Image.open(path) as check:
        assert check.mode == "P" and "transparency" in check.info
    assert _read(path)[0].tolist() == [[255, 255, 255], [255, 0, 0], [0, 255, 0]]


def test_palette_without_transparency(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 0, 10, 200, 30] + [0, 0, 0] * 254)
    img.putdata([0, 1])
    path = tmp_path / "pal.png"
    img.save(path)
    assert _read(path)[0].tolist() == [[0, 0, 0], [10, 200, 30]]


def test_grey_and_rgb_with_a_transparent_colour(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(np.asarray([[0, 90, 255]], dtype=np.uint8)).save(path, transparency=90)
    assert np.array_equal(_read(path), _grey_rgb([0, 255, 255]))
    path = tmp_path / "rgb.png"
    Image.fromarray(np.asarray([[[1, 2, 3], [40, 50, 60]]], dtype=np.uint8)).save(path, transparency=(1, 2, 3))
    assert _read(path)[0].tolist() == [[255, 255, 255], [40, 50, 60]]


def test_cmyk_tiff(tmp_path):
    cmyk = np.asarray([[[0, 255, 255, 0], [0, 0, 0, 255], [0, 0, 0, 0], [255, 0, 255, 0]]], dtype=np.uint8)
    path = tmp_path / "cmyk.tif"
    Image.fromarray(cmyk, mode="CMYK").save(path)
    with Image.open(path) as img:
        assert img.mode == "CMYK"
    assert _read(path)[0].tolist() == [[255, 0, 0], [0, 0, 0], [255, 255, 255], [0, 255, 0]]


def test_one_bit_and_grey(tmp_path):
    path = tmp_path / "bits.png"
    Image.fromarray(np.asarray([[True, False, True]])).save(path)
    with Image.open(path) as img:
        assert img.mode == "1"
    assert np.array_equal(_read(path), _grey_rgb([255, 0, 255]))
    path = tmp_path / "grey.png"
    Image.fromarray(np.asarray([[0, 17, 255]], dtype=np.uint8)).save(path)
    assert np.array_equal(_read(path), _grey_rgb([0, 17, 255]))


@pytest.mark.parametrize(("mode", "pixel", "expected"), [
    ("PA", None, [255, 255, 255]),  # palette index 0 red, alpha 0
    ("La", (100, 0), [255, 255, 255]),
    ("RGBa", (0, 0, 0, 0), [255, 255, 255]),
    ("RGBX", (1, 2, 3, 0), [1, 2, 3]),
    ("HSV", (0, 255, 255), [255, 0, 0]),
    ("YCbCr", (100, 128, 128), [100, 100, 100]),
    ("I;16N", 65535, [255, 255, 255]),
])
def test_in_memory_modes(mode, pixel, expected):
    if mode == "PA":
        img = Image.new("PA", (1, 1))
        img.putpalette([255, 0, 0] + [0, 0, 0] * 255)
        img.putpixel((0, 0), (0, 0))
    else:
        img = Image.new(mode, (1, 1), pixel)
    out = to_rgb(img)
    assert out.mode == "RGB" and list(out.getpixel((0, 0))) == expected
