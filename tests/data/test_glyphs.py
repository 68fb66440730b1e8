"""The embedded glyph dataset: class split, cache, determinism, pool quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossensemble.data import IMAGENET_MEAN, IMAGENET_STD, build_dataset, cache_dir
from lossensemble.data import glyphs as glyph_module
from lossensemble.errors import DataError, UserError

SMALL = {"num_train_classes": 6, "num_test_classes": 5, "num_pretrain_classes": 4, "progress": False}


@pytest.fixture(scope="module")
def pool():
    return glyph_module.load_glyph_pool(progress=False)


def _renders() -> list:
    return sorted(cache_dir("glyphs").glob("renders-*.npz"))


def test_pool_has_enough_distinct_characters(pool):
    chars = [g.char for g in pool]
    assert 1200 <= len(chars) <= 2200  # about 1,580 expected after look-alike removal
    assert len(set(chars)) == len(chars)
    assert all(len(g.faces) >= glyph_module.MIN_FACES for g in pool)
    # look-alikes across scripts are one class: Latin A kept, Greek Alpha / Cyrillic A dropped
    assert "A" in chars and "\u0391" not in chars and "\u0410" not in chars
    # distinct letters that are not look-alikes stay apart
    assert {"B", "8", "E", "F"} <= set(chars)
    # no whitespace, marks or box drawing
    assert not any(c.isspace() or 0x2500 <= ord(c) <= 0x257F for c in chars)
    ascii_faces = {glyph_module.FontSet().names.index(n) for n in glyph_module.ASCII_FACES}
    assert all(not (set(g.faces) & ascii_faces) for g in pool if ord(g.char) > 0x7E)


def test_pool_is_cached(pool, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("pool recomputed despite the cache")

    monkeypatch.setattr(glyph_module, "select_glyph_pool", boom)
    assert glyph_module.load_glyph_pool(progress=False) == pool


def test_splits_are_class_disjoint_and_follow_the_pool(pool):
    train = build_dataset("glyphs", "train", **SMALL)
    test = build_dataset("glyphs", "test", **SMALL)
    pretrain = build_dataset("glyphs", "pretrain", **SMALL)
    assert train.class_names == [g.char for g in pool[:6]]
    assert test.class_names == [g.char for g in pool[6:11]]
    assert pretrain.class_names == [g.char for g in pool[-4:]]
    assert set(train.class_names).isdisjoint(test.class_names)
    assert set(pretrain.class_names).isdisjoint(train.class_names + test.class_names)
    assert (len(train), len(test), len(pretrain)) == (96, 80, 64)
    assert np.bincount(train.labels).tolist() == [16] * 6
    assert train.paths is None and train.kind == "glyph"
    everything = build_dataset("glyphs", "all", **SMALL)
    assert everything.class_names == train.class_names + test.class_names


def test_items_are_three_channel_tensors():
    train = build_dataset("glyphs", "train", **SMALL)
    image, label = train[5]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32 and label == 0
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    grey = image * std + mean
    assert torch.allclose(grey[0], grey[1], atol=1e-5) and torch.allclose(grey[0], grey[2], atol=1e-5)
    assert grey.min() < 0.3 and grey.max() > 0.95  # ink and paper, ImageNet-normalised
    resized = build_dataset("glyphs", "test", image_size=32, **SMALL)
    assert resized[0][0].shape == (3, 32, 32)
    raw = build_dataset("glyphs", "test", transform=None, **SMALL)
    pil, _ = raw[0]
    assert pil.mode == "RGB" and pil.size == (64, 64)
    pixels = np.asarray(raw.get_image(0).convert("L"))
    assert pixels.min() < 60 and np.median(pixels) > 200  # dark ink on white paper


def test_glyphs_have_ink_and_vary():
    images = build_dataset("glyphs", "train", **SMALL)._read
    data = np.stack([np.asarray(images(i)) for i in range(32)]).astype(np.float32)
    ink = (255 - data).mean(axis=(1, 2)) / 255
    assert (ink > 0.02).all()
    assert len({d.tobytes() for d in data}) == 32  # no two samples identical


def test_second_build_reads_the_cache(monkeypatch):
    first = build_dataset("glyphs", "test", seed=11, **SMALL)
    assert len(_renders()) >= 1

    def boom(*args, **kwargs):
        raise AssertionError("re-rendered despite the cache")

    monkeypatch.setattr(glyph_module.GlyphRenderer, "render_class", boom)
    second = build_dataset("glyphs", "test", seed=11, **SMALL)
    assert np.array_equal(first.images, second.images)


def test_root_is_the_cache_folder(tmp_path, pool):
    for path in cache_dir("glyphs").glob("pool-*.json"):  # share the pool, render afresh
        (tmp_path / path.name).write_bytes(path.read_bytes())
    ds = build_dataset("glyphs", "test", root=tmp_path, seed=5, **SMALL)
    assert len(list(tmp_path.glob("renders-*.npz"))) == 1
    assert np.array_equal(ds.images, build_dataset("glyphs", "test", seed=5, **SMALL).images)


def test_deterministic_for_a_seed():
    a = build_dataset("glyphs", "train", seed=3, **SMALL).images.copy()
    for path in _renders():
        path.unlink()
    b = build_dataset("glyphs", "train", seed=3, **SMALL).images
    c = build_dataset("glyphs", "train", seed=4, **SMALL).images
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_class_renders_do_not_depend_on_the_split_size():
    small = build_dataset("glyphs", "train", **SMALL)
    bigger = build_dataset("glyphs", "train", **{**SMALL, "num_train_classes": 7})
    assert np.array_equal(small.images, bigger.images[: len(small)])


def test_val_split(pool):
    opts = {**SMALL, "num_train_classes": 10}
    val = build_dataset("glyphs", "val", val_fraction=0.3, **opts)
    train = build_dataset("glyphs", "train", val_fraction=0.3, **opts)
    test = build_dataset("glyphs", "test", val_fraction=0.3, **opts)
    assert val.num_classes == 3 and train.num_classes == 7
    assert set(val.class_names) | set(train.class_names) == {g.char for g in pool[:10]}
    assert set(val.class_names).isdisjoint(train.class_names + test.class_names)


def test_option_errors(pool):
    with pytest.raises(DataError, match="images_per_class must be an integer >= 16"):
        build_dataset("glyphs", "train", images_per_class=4)
    with pytest.raises(UserError, match="no option 'num_train_class'.*did you mean 'num_train_classes'"):
        build_dataset("glyphs", "train", num_train_class=5)
    with pytest.raises(DataError, match="exceed the"):
        build_dataset("glyphs", "train", num_train_classes=len(pool), num_test_classes=10, progress=False)
    with pytest.raises(DataError, match="overlap"):
        build_dataset("glyphs", "pretrain", num_pretrain_classes=len(pool) - 5, **{
            k: v for k, v in SMALL.items() if k != "num_pretrain_classes"})


def test_public_names_importable_from_glyphs():
    from lossensemble.data import glyph_fonts

    for name in ("FontSet", "GlyphClass", "select_glyph_pool", "FULL_FACES", "ASCII_FACES", "MIN_FACES"):
        assert getattr(glyph_module, name) is getattr(glyph_fonts, name)
    for name in ("GlyphRenderer", "load_glyph_pool", "render_glyph_block", "Glyphs"):
        assert name in glyph_module.__all__ and hasattr(glyph_module, name)
