"""ONNX export: model.onnx gives PyTorch's embeddings (onnxruntime), with a dynamic batch axis and preprocessing metadata."""

from __future__ import annotations

import json
import stat
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import onnx  # noqa: E402  (the onnx extra is part of dev: no skip)
import onnxruntime as ort  # noqa: E402

from inference_helpers import write_images  # noqa: E402
from lossensemble.cli.main import main  # noqa: E402
from lossensemble.errors import UserError  # noqa: E402
from lossensemble.inference import export_model, load_model  # noqa: E402

from model_helpers import HEADS, WEIGHTS, compressor_meta as _meta, small_ensemble as _model  # noqa: E402,F401


@pytest.fixture(scope="module")
def glyph_batch(tmp_path_factory):
    """Real PNG files (40 x 40 greyscale) through the glyph eval transform: (5, 3, 32, 32)."""
    files = write_images(tmp_path_factory.mktemp("png") / "img", n_classes=5, per_class=1, seed=3)
    from lossensemble.data import build_transforms

    transform = build_transforms("glyph", 32, train=False)
    return torch.stack([transform(Image.open(f)) for f in files])


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("variant, embedding", [
    (None, "ensemble"), ("mlp", "compressed"), ("direct", "compressed"), (None, "heads.proxy_nca"),
])
def test_onnx_matches_pytorch_at_batch_1_and_5(tmp_path, glyph_batch, variant, embedding):
    model = _model(variant)
    out = export_model(model, WEIGHTS, tmp_path / "m", embedding=embedding, image_size=32, data_kind="glyph",
                       backbone_name="small_cnn", compressor_meta=_meta(variant), format="onnx")
    assert (out / "model.onnx").is_file() and (out / "model.safetensors").is_file()
    assert stat.S_IMODE((out / "model.onnx").stat().st_mode) & 0o644 == 0o644
    session = _session(out / "model.onnx")
    loaded = load_model(out)
    for batch in (glyph_batch[:1], glyph_batch):
        want = model.embed(batch, WEIGHTS)[embedding].numpy()
        got = session.run(["embeddings"], {"images": batch.numpy()})[0]
        assert got.shape == want.shape == (len(batch), loaded.output_dim)
        assert np.abs(got - want).max() < 1e-4
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    spec = json.loads((out / "config.json").read_text())
    assert spec["onnx"]["file"] == "model.onnx" and spec["onnx"]["max_abs_diff_vs_torch"] < 1e-4


def test_graph_has_a_dynamic_batch_axis_and_preprocessing_metadata(tmp_path):
    out = export_model(_model(None), WEIGHTS, tmp_path / "m", embedding="ensemble", image_size=32,
                       data_kind="glyph", backbone_name="small_cnn", format="onnx")
    proto = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(proto)
    (inp,), (outp,) = proto.graph.input, proto.graph.output
    assert inp.name == "images" and outp.name == "embeddings"
    in_dims = inp.type.tensor_type.shape.dim
    assert in_dims[0].dim_param and not in_dims[0].dim_value  # symbolic batch
    assert [d.dim_value for d in in_dims[1:]] == [3, 32, 32]
    assert outp.type.tensor_type.shape.dim[1].dim_value == 24
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["image_size"] == "32" and meta["data_kind"] == "glyph" and meta["embedding"] == "ensemble"
    assert json.loads(meta["mean"]) == pytest.approx([0.485, 0.456, 0.406])
    assert json.loads(meta["std"]) == pytest.approx([0.229, 0.224, 0.225])
    card = (out / "README.md").read_text()
    assert "model.onnx" in card and "- onnx" in card


def test_torchscript_fallback_when_the_dynamo_exporter_fails(tmp_path, glyph_batch, monkeypatch):
    from lossensemble.inference import onnx_export

    def broken(*args, **kwargs):
        raise RuntimeError("dynamo exporter unavailable")

    monkeypatch.setattr(onnx_export, "_dynamo", broken)
    model = _model("mlp")
    out = export_model(model, WEIGHTS, tmp_path / "m", embedding="compressed", image_size=32, data_kind="glyph",
                       backbone_name="small_cnn", compressor_meta=_meta("mlp"), format="onnx")
    assert json.loads((out / "config.json").read_text())["onnx"]["exporter"] == "torchscript"
    got = _session(out / "model.onnx").run(None, {"images": glyph_batch.numpy()})[0]
    assert np.abs(got - model.embed(glyph_batch, WEIGHTS)["compressed"].numpy()).max() < 1e-4


def test_missing_onnx_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    with pytest.raises(UserError, match=r"pip install 'lossensemble\[onnx\]'"):
        export_model(_model(None), WEIGHTS, tmp_path / "m", embedding="ensemble", image_size=32,
                     data_kind="glyph", backbone_name="small_cnn", format="onnx")
    assert not (tmp_path / "m" / "config.json").exists()


def test_a_safetensors_export_drops_a_stale_onnx_graph(tmp_path):
    out = export_model(_model(None), WEIGHTS, tmp_path / "m", embedding="ensemble", image_size=32,
                       data_kind="glyph", backbone_name="small_cnn", format="onnx")
    export_model(_model("direct"), WEIGHTS, out, embedding="compressed", image_size=32, data_kind="glyph",
                 backbone_name="small_cnn", compressor_meta=_meta("direct"))
    assert not (out / "model.onnx").exists() and "onnx" not in json.loads((out / "config.json").read_text())


# ------------------------------------------------------------------ a real (tiny) glyph run, end to end

#: The suite's tiny run (``tiny_config``) on 12 + 12 classes of 16 images, two steps, no NMI.
TINY_EXTRA = ("data.options.num_train_classes=12", "data.options.num_test_classes=12",
              "data.options.images_per_class=16", "train.steps_per_epoch=2", "eval.nmi=false")


@pytest.fixture(scope="module")
def glyph_run(tmp_path_factory, tiny_config):
    from lossensemble.training import Trainer

    run = tmp_path_factory.mktemp("run") / "run"
    Trainer(tiny_config(*TINY_EXTRA), run).fit()
    return run


def test_cli_export_onnx_of_a_run_on_real_glyphs(glyph_run, tmp_path, capsys):
    from lossensemble.data import build_dataset

    out = tmp_path / "model"
    assert main(["export", str(glyph_run), "-o", str(out), "--format", "onnx", "--license", "mit"]) == 0
    printed = capsys.readouterr().out
    assert "model.onnx" in printed and "max abs diff" in printed
    model = load_model(out)
    test = build_dataset("glyphs", "test", transform=None, num_train_classes=12, num_test_classes=12,
                         images_per_class=16, progress=False)
    images = [test.get_image(i) for i in range(5)]
    batch = torch.stack([model.transform(im) for im in images])
    session = _session(out / "model.onnx")
    for x in (batch[:1], batch):
        got = session.run(["embeddings"], {"images": x.numpy()})[0]
        assert np.abs(got - model.embed_tensors(x)).max() < 1e-4
    assert np.abs(session.run(None, {"images": batch.numpy()})[0] - model.embed_images(images)).max() < 1e-4

    spec = json.loads((out / "config.json").read_text())
    metrics = json.loads((glyph_run / "metrics.json").read_text())
    assert spec["metrics"]["ensemble"] == pytest.approx(metrics["ensemble"])
    assert spec["training"]["dataset"] == "glyphs" and spec["license"] == "mit"
    card = (out / "README.md").read_text()
    assert "license: \"mit\"" in card and "glyphs" in card
    assert f"{metrics['ensemble']['recall@1']:.2f}" in card  # the run's test metrics are in the card
