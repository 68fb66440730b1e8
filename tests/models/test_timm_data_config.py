"""timm backbones carry their own data config (mean/std, filter, crop) into every transform and the export (#17).

``timm:test_convnext`` is one of timm's tiny test models (about 0.2M parameters, random
init, nothing downloaded); its data config is mean/std (0.5, 0.5, 0.5), bicubic, crop 0.95,
default input 160: all different from the ImageNet settings of the other backbones.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("timm")

from lossensemble.data import build_split, build_transforms  # noqa: E402
from lossensemble.data.transforms import EvalTransform  # noqa: E402
from lossensemble.evaluation import extract_embeddings  # noqa: E402
from lossensemble.inference import export_run, load_model  # noqa: E402
from lossensemble.models import build_backbone  # noqa: E402
from lossensemble.preprocess import IMAGENET, Normalisation, eval_array  # noqa: E402
from lossensemble.training import Trainer  # noqa: E402
from lossensemble.training.loading import load_run  # noqa: E402

NAME = "test_convnext"
HALF = (0.5, 0.5, 0.5)


@pytest.fixture(scope="module")
def norm() -> Normalisation:
    return build_backbone(f"timm:{NAME}").normalisation


def test_timm_backbone_carries_its_data_config_and_the_others_imagenet(norm):
    from timm.data import resolve_data_config
    import timm

    config = resolve_data_config({}, model=timm.create_model(NAME, pretrained=False, num_classes=0))
    assert norm == Normalisation(config["mean"], config["std"], config["interpolation"], config["crop_pct"])
    assert norm.mean == HALF and norm.std == HALF and norm.interpolation == "bicubic" and norm.crop_pct == 0.95
    assert norm != IMAGENET
    assert build_backbone("small_cnn").normalisation == IMAGENET
    assert build_backbone("resnet18").normalisation == IMAGENET


@pytest.mark.parametrize("kind, colour", [("photo", (200, 100, 50)), ("glyph", (255, 255, 255))])
@pytest.mark.parametrize("train", [False, True])
def test_transforms_normalise_with_the_models_mean_and_std(norm, kind, colour, train):
    img = Image.new("RGB", (48, 40), colour)
    torch.manual_seed(0)
    out = build_transforms(kind, 32, train=train, normalisation=norm)(img)
    want = (torch.tensor(colour, dtype=torch.float32) / 255 - 0.5) / 0.5  # by hand: (x/255 - mean) / std
    assert out.shape == (3, 32, 32)
    assert torch.allclose(out, want[:, None, None].expand(3, 32, 32), atol=1e-6)
    default = build_transforms(kind, 32, train=train)(img)  # ImageNet's, as before
    imagenet = (torch.tensor(colour) / 255 - torch.tensor(IMAGENET.mean)) / torch.tensor(IMAGENET.std)
    assert torch.allclose(default, imagenet[:, None, None].expand(3, 32, 32), atol=1e-5)


def test_eval_array_with_the_models_normalisation_equals_the_data_transform_and_torchvision(norm):
    from torchvision import transforms as T

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (45, 61, 3), dtype=np.uint8))
    ours = eval_array(img, "photo", 32, norm)
    assert np.array_equal(ours, build_transforms("photo", 32, train=False, normalisation=norm)(img).numpy())
    assert np.array_equal(ours, EvalTransform("photo", 32, norm)(img).numpy())
    tv = T.Compose([T.Resize(int(32 / 0.95), interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(32),
                    T.ToTensor(), T.Normalize(HALF, HALF)])(img)
    assert np.abs(ours - tv.numpy()).max() < 1e-6
    glyph = eval_array(img, "glyph", 32, norm)
    grey = T.Compose([T.Resize((32, 32), interpolation=T.InterpolationMode.BICUBIC), T.Grayscale(3),
                      T.ToTensor(), T.Normalize(HALF, HALF)])(img)
    assert np.abs(glyph - grey.numpy()).max() < 1e-6
    assert not np.allclose(ours, eval_array(img, "photo", 32))  # ImageNet's differs


def test_normalisation_round_trips_through_its_json_form(norm):
    assert Normalisation.from_dict(json.loads(json.dumps(norm.to_dict()))) == norm
    assert Normalisation.from_dict({"mean": list(IMAGENET.mean), "std": list(IMAGENET.std)}) == IMAGENET  # old exports
    assert IMAGENET.resize_shorter(32) == int(32 * 256 / 224) and norm.resize_shorter(32) == int(32 / 0.95)
    with pytest.raises(ValueError):
        Normalisation(HALF, (0.5, 0.0, 0.5))


@pytest.fixture(scope="module")
def timm_run(tmp_path_factory, tiny_config):
    run = tmp_path_factory.mktemp("timm-run") / "run"
    trainer = Trainer(tiny_config(f"model.backbone=timm:{NAME}", "losses=[triplet]"), run)
    return trainer, trainer.fit(), run


def test_a_run_with_a_timm_backbone_trains_on_its_normalisation_and_records_metrics(timm_run, norm, caplog):
    trainer, metrics, run = timm_run
    assert metrics["ensemble"]["recall@1"] >= 0
    assert json.loads((run / "metrics.json").read_text())["ensemble"]["recall@1"] == metrics["ensemble"]["recall@1"]
    assert trainer.test_set.transform.normalisation == norm
    assert "Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))" in repr(trainer.train_set.transform)
    with caplog.at_level(logging.WARNING):
        from lossensemble.models.backbones import warn_input_size

        warn_input_size("timm:other", 160, 32)
        warn_input_size("timm:other", 160, 32)
    assert sum("default input size is 160x160" in r.getMessage() for r in caplog.records) == 1


def test_export_writes_the_models_normalisation_and_embeds_as_training_time_evaluation(timm_run, norm, tmp_path):
    _, _, run = timm_run
    out = export_run(run, tmp_path / "model", embedding="ensemble", format="onnx")
    spec = json.loads((out / "config.json").read_text())
    assert spec["normalisation"] == {"mean": list(HALF), "std": list(HALF), "interpolation": "bicubic",
                                     "crop_pct": 0.95}
    model = load_model(out)
    assert model.normalisation == norm
    card = (out / "README.md").read_text()  # the model card and the graph's metadata say how to preprocess
    assert "resize to 32 x 32 (bicubic)" in card  # glyphs: no crop
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    assert meta["interpolation"] == "bicubic" and float(meta["crop_pct"]) == 0.95

    loaded = load_run(run)
    assert loaded.normalisation == norm
    test = loaded.split("test")
    assert isinstance(test.transform, EvalTransform) and test.transform.normalisation == norm
    want, _, kept = extract_embeddings(loaded.embed_fn(names=["ensemble"]), test, batch_size=64)
    raw = build_split(loaded.cfg.data, "test", transform=None)
    images = [raw.get_image(int(i)) for i in kept[:12]]
    got = model.embed_images(images)
    assert np.abs(got - want["ensemble"][:12]).max() < 1e-5
    # the torch-free query path prepares the images alike: eval_array with the exported values, then ONNX
    arrays = np.stack([eval_array(im, spec["data_kind"], spec["image_size"], Normalisation.from_dict(
        spec["normalisation"])) for im in images])
    assert np.abs(model.embed_tensors(torch.from_numpy(arrays)) - want["ensemble"][:12]).max() < 1e-5
    from lossensemble.inference.onnx_embedder import OnnxEmbedder

    onnx = OnnxEmbedder(spec, (out / "model.onnx").read_bytes())
    assert onnx.normalisation == norm
    assert np.abs(onnx.embed_images(images) - want["ensemble"][:12]).max() < 1e-4  # ONNX vs torch kernels


def test_a_run_keeps_the_normalisation_it_was_trained_with(timm_run, norm, monkeypatch, tmp_path):
    """Another timm version may resolve another data config: evaluation and export use the run's own,
    and resuming with a different one is a one-line error."""
    import shutil

    from lossensemble.errors import UserError
    from lossensemble.preprocess import IMAGENET, Normalisation
    from lossensemble.training import Trainer
    from lossensemble.training.loading import load_run

    _, _, run = timm_run
    monkeypatch.setattr(Normalisation, "from_timm", classmethod(lambda cls, config: IMAGENET))
    assert load_run(run).normalisation == norm
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    with pytest.raises(UserError, match="another timm version"):
        Trainer(None, copy, resume=True)
