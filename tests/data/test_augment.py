"""``data.augment``: the training augmentation by name, with options, for every dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lossensemble.config import load_config
from lossensemble.data import build_split
from lossensemble.data.transforms import AUGMENTATIONS, build_transforms, register_augmentation
from lossensemble.errors import UserError
from lossensemble.models import check_components


def asymmetric(size: int = 32) -> Image.Image:
    """A square RGB image whose left half is dark and right half bright (a flip is visible)."""
    x = np.zeros((size, size, 3), dtype=np.uint8)
    x[:, size // 2:] = 220
    x[:, : size // 2] = np.arange(size // 2, dtype=np.uint8)[None, :, None] * 4
    return Image.fromarray(x)


def draws(transform, img, n=24) -> list[torch.Tensor]:
    torch.manual_seed(0)
    return [transform(img) for _ in range(n)]


def test_auto_is_the_kinds_own():
    assert "RandomResizedCrop" in repr(build_transforms("photo", 32, True))
    assert "RandomHorizontalFlip" in repr(build_transforms("photo", 32, True))
    glyph = repr(build_transforms("glyph", 32, True))
    assert "RandomAffine" in glyph and "Flip" not in glyph


def test_none_trains_on_the_evaluation_transform():
    img = asymmetric()
    for kind in ("photo", "glyph"):
        train = build_transforms(kind, 32, True, augment="none")
        assert all(torch.equal(x, build_transforms(kind, 32, False)(img)) for x in draws(train, img, 5))


@pytest.mark.parametrize("flip", [True, False])
def test_photo_flip_switch(flip):
    img = asymmetric()
    # the whole image every time: only the flip can change it
    t = build_transforms("photo", 32, True, augment={"name": "photo", "options": {
        "crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0], "flip": flip}})
    from torchvision import transforms as T

    plain = T.Compose([T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])(img)
    mirrored = torch.flip(plain, dims=[2])
    outs = draws(t, img)
    n_mirrored = sum(torch.allclose(x, mirrored, atol=1e-5) for x in outs)
    n_plain = sum(torch.allclose(x, plain, atol=1e-5) for x in outs)
    assert n_plain + n_mirrored == len(outs)
    assert (n_mirrored > 0) == flip


def test_glyph_flip_opt_in():
    img = asymmetric().convert("L")
    opts = {"degrees": 0.0, "translate": 0.0, "scale": [1.0, 1.0], "shear": 0.0}
    still = build_transforms("glyph", 32, True, augment={"name": "glyph", "options": opts})
    flipping = build_transforms("glyph", 32, True, augment={"name": "glyph", "options": {**opts, "flip": True}})
    base = build_transforms("glyph", 32, False)(img)
    assert all(torch.allclose(x, base, atol=1e-5) for x in draws(still, img, 6))
    assert any(torch.allclose(x, torch.flip(base, dims=[2]), atol=1e-5) for x in draws(flipping, img))


def test_config_reaches_the_training_split():
    cfg = load_config(None, ["data.augment=none", "data.options.num_train_classes=4", "data.options.num_test_classes=4", "data.options.images_per_class=16"])
    check_components(cfg)
    assert "EvalTransform" in repr(build_split(cfg.data, "train").transform)
    cfg = load_config(None, ["data.augment={name: photo, options: {flip: false}}"])
    check_components(cfg)
    assert "Flip" not in repr(build_split(cfg.data, "train").transform)


@pytest.mark.parametrize("augment,message", [
    ("foo", "unknown augmentation 'foo'"),
    ("phot", "did you mean 'photo'"),
    (3, "expected a name"),
    ({"name": "photo", "extra": 1}, "expected a name"),
    ({"name": "photo", "options": {"flipp": True}}, "did you mean 'flip'"),
    ({"name": "photo", "options": {"flip": "yes"}}, "option 'flip' expects bool"),
    ({"name": "photo", "options": {"crop_scale": [0.9, 0.1]}}, "crop_scale must be two numbers"),
    ({"name": "photo", "options": {"crop_scale": 0.5}}, "crop_scale must be two numbers"),
    ({"name": "photo", "options": {"color_jitter": 3.0}}, "color_jitter must be in"),
    ({"name": "glyph", "options": {"translate": 2.0}}, "translate must be in"),
])
def test_bad_augment_is_one_line(augment, message):
    cfg = load_config(None, base={"data": {"augment": augment}})
    with pytest.raises(UserError, match=message) as info:
        check_components(cfg)
    assert "\n" not in str(info.value)


def test_register_an_augmentation():
    @register_augmentation("test_invert")
    def invert(kind, image_size, *, strength: float = 1.0):
        eval_t = build_transforms(kind, image_size, False)
        return lambda img: -strength * eval_t(img)

    try:
        img = asymmetric()
        out = build_transforms("photo", 32, True, augment={"name": "test_invert", "options": {"strength": 2.0}})(img)
        assert torch.allclose(out, -2.0 * build_transforms("photo", 32, False)(img))
    finally:
        AUGMENTATIONS.unregister("test_invert")
