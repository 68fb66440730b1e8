"""The evaluation transforms (Pillow + torch) equal torchvision's pipeline value for value."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from lossensemble.data import IMAGENET_MEAN, IMAGENET_STD, build_transforms


def torchvision_eval(kind: str, size: int):
    """The torchvision pipeline the evaluation transform replaces (the oracle)."""
    normalise = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if kind == "photo":
        rgb = T.Lambda(lambda img: img if img.mode == "RGB" else img.convert("RGB"))
        return T.Compose([rgb, T.Resize(int(size * 256 / 224)), T.CenterCrop(size), *normalise])
    return T.Compose([T.Resize((size, size)), T.Grayscale(num_output_channels=3), *normalise])


def random_image(mode: str, w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    return Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)


@pytest.mark.parametrize("kind", ["photo", "glyph"])
@pytest.mark.parametrize("size", [16, 32, 64])
@pytest.mark.parametrize("mode,w,h", [("RGB", 80, 60), ("RGB", 37, 120), ("L", 64, 64), ("RGBA", 50, 51),
                                      ("RGB", 10, 7), ("RGB", 36, 36), ("L", 300, 17)])
def test_eval_transform_equals_torchvision(kind, size, mode, w, h):
    img = random_image(mode, w, h, seed=w * 1000 + h)
    ours = build_transforms(kind, size, train=False)(img)
    theirs = torchvision_eval(kind, size)(img)
    assert ours.shape == theirs.shape == (3, size, size)
    assert ours.dtype == theirs.dtype == torch.float32
    assert torch.equal(ours, theirs)


def test_eval_transform_pickles_and_does_not_import_torchvision():
    import pickle
    import subprocess
    import sys

    transform = build_transforms("photo", 32, train=False)
    again = pickle.loads(pickle.dumps(transform))
    img = random_image("RGB", 40, 40, seed=0)
    assert torch.equal(again(img), transform(img))
    code = ("import sys; from PIL import Image; from lossensemble.data import build_transforms; "
            "build_transforms('photo', 32, train=False)(Image.new('RGB', (40, 40))); "
            "assert 'torchvision' not in sys.modules, 'torchvision imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
    # the query path of search/serve with an ONNX model: no torch at all
    code = ("import sys; from PIL import Image; from lossensemble.preprocess import eval_array; "
            "eval_array(Image.new('RGB', (40, 40)), 'photo', 32); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
