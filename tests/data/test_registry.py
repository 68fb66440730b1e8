"""Registry, build_dataset arguments, list_datasets and transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fabricate import make_cub
from lossensemble.data import DATASETS, DatasetSource, build_dataset, build_transforms, list_datasets, register_dataset
from lossensemble.data.images import ArrayImageDataset
from lossensemble.errors import UserError


def test_all_datasets_registered():
    assert {"glyphs", "cub200", "cars196", "sop", "inshop", "flowers102", "pets", "folder", "csv"} <= set(DATASETS)


def test_unknown_dataset_suggests_close_names():
    with pytest.raises(UserError, match=r"unknown dataset 'cub'; did you mean 'cub200'"):
        build_dataset("cub")
    with pytest.raises(UserError, match="unknown dataset 'glyph'; did you mean 'glyphs'"):
        build_dataset("glyph")


def test_bad_split_option_and_transform(tmp_path):
    root = make_cub(tmp_path, {1: 2, 2: 2, 101: 2})
    with pytest.raises(UserError, match="no split 'query'"):
        build_dataset("cub200", "query", root)
    with pytest.raises(UserError, match="has no option 'colour'"):
        build_dataset("cub200", "train", root, colour=1)
    with pytest.raises(UserError, match="transform must be"):
        build_dataset("cub200", "train", root, transform="fancy")
    with pytest.raises(UserError, match="val_fraction"):
        build_dataset("cub200", "train", root, val_fraction=1.0)
    custom = build_dataset("cub200", "train", root, transform=lambda img: img.size)
    assert custom[0] == ((12, 12), 0)


def test_auto_transform_depends_on_split(tmp_path):
    root = make_cub(tmp_path, {1: 2, 2: 2, 101: 2})
    train = build_dataset("cub200", "train", root, image_size=8)
    test = build_dataset("cub200", "test", root, image_size=8)
    assert "RandomResizedCrop" in repr(train.transform) and "RandomResizedCrop" not in repr(test.transform)
    assert "CenterCrop" in repr(test.transform)
    assert build_dataset("cub200", "test", root).transform(Image.new("RGB", (300, 300))).shape == (3, 224, 224)


def test_register_a_new_dataset():
    @register_dataset("tiny-test-dataset")
    class Tiny(DatasetSource):
        kind = "glyph"
        default_image_size = 16

        def build(self, split, *, val_fraction, seed):
            images = np.zeros((4, 8, 8), dtype=np.uint8)
            return ArrayImageDataset(name=self.name, split=split, kind=self.kind, labels=[0, 0, 1, 1],
                                     class_names=["a", "b"], images=images)

        def summary(self):
            return {"train_classes": 2, "train_images": 4, "test_classes": 0, "test_images": 0}

    try:
        ds = build_dataset("tiny-test-dataset")
        assert ds[0][0].shape == (3, 16, 16) and ds.num_classes == 2
        row = next(r for r in list_datasets() if r["name"] == "tiny-test-dataset")
        assert row["status"] == "ok" and row["train_images"] == 4
        with pytest.raises(ValueError, match="already registered"):
            register_dataset("tiny-test-dataset")(type("Other", (DatasetSource,), {}))
    finally:
        DATASETS.unregister("tiny-test-dataset")


def test_list_datasets_reports_presence(tmp_path):
    make_cub(tmp_path, {1: 2, 2: 3, 150: 2})
    rows = {r["name"]: r for r in list_datasets(tmp_path)}
    cub = rows["cub200"]
    assert cub["status"] == "ok"
    assert (cub["train_classes"], cub["train_images"], cub["test_classes"], cub["test_images"]) == (2, 5, 1, 2)
    assert cub["location"] == str(tmp_path / "CUB_200_2011")
    assert rows["sop"]["status"] == "not found" and rows["sop"]["train_images"] is None
    assert rows["sop"]["how_to_get"].startswith("https://")
    assert rows["folder"]["status"] == "user data"
    glyphs = rows["glyphs"]
    assert (glyphs["train_classes"], glyphs["train_images"]) == (300, 4800)
    assert list(rows)[0] == "glyphs"


def test_photo_transforms():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    for train in (True, False):
        out = build_transforms("photo", 32, train)(img)
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    grey = Image.new("L", (40, 40), 128)
    assert build_transforms("photo", 32, False)(grey).shape == (3, 32, 32)
    # eval is deterministic, train is random (crop + flip)
    ev = build_transforms("photo", 32, False)
    assert torch.equal(ev(img), ev(img))
    tr = build_transforms("photo", 32, True)
    torch.manual_seed(0)
    assert not all(torch.equal(tr(img), tr(img)) for _ in range(3))


def test_glyph_transforms_never_flip():
    img = Image.new("L", (64, 64), 255)
    img.paste(0, (4, 10, 20, 54))  # a bar on the left
    tr = build_transforms("glyph", 64, True)
    torch.manual_seed(0)
    for _ in range(20):
        out = tr(img.convert("RGB"))
        left, right = out[0, :, :32].mean(), out[0, :, 32:].mean()
        assert left < right  # the ink stays on the left
    with pytest.raises(ValueError, match="unknown image kind"):
        build_transforms("video", 64, True)
