"""Hostile or hand-edited model descriptions (config.json): one-line UserErrors naming the file and the field."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load, save

from lossensemble.cli.main import main
from lossensemble.errors import UserError
from lossensemble.inference import export_model, load_model
from lossensemble.models import EnsembleModel, build_backbone, build_compressor

HEADS = ["triplet", "proxy_nca"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An ensemble export and a compressed (mlp) export of one small_cnn model."""
    torch.manual_seed(0)
    model = EnsembleModel(build_backbone("small_cnn"), HEADS, 8)
    model.set_compressor(build_compressor("mlp", 16, 6, hidden=12), "mlp")
    model.eval()
    root = tmp_path_factory.mktemp("hostile")
    meta = {"variant": "mlp", "in_dim": 16, "dim": 6, "hidden": 12, "objective": "frobenius"}
    kw = dict(image_size=32, data_kind="glyph", backbone_name="small_cnn", compressor_meta=meta)
    return {
        "ensemble": export_model(model, torch.tensor([0.6, 0.4]), root / "ens", embedding="ensemble", **kw),
        "compressed": export_model(model, torch.tensor([0.6, 0.4]), root / "cmp", embedding="compressed", **kw),
    }


def _copy(exported, kind, tmp_path):
    dest = tmp_path / kind
    shutil.copytree(exported[kind], dest)
    return dest


def _set(path, value):
    """Set ``a.b`` (dotted) in a dict; ``value is _DELETE`` deletes the key."""
    def edit(spec):
        *parents, last = path.split(".")
        for p in parents:
            spec = spec[p]
        if value is _DELETE:
            del spec[last]
        else:
            spec[last] = value
    return edit


_DELETE = object()

# (export kind, edit of the description, what the message must name)
CASES = [
    ("ensemble", _set("image_size", "32"), "image_size"),
    ("ensemble", _set("image_size", 0), "image_size"),
    ("ensemble", _set("image_size", -32), "image_size"),
    ("ensemble", _set("image_size", 32.5), "image_size"),
    ("ensemble", _set("image_size", True), "image_size"),
    ("ensemble", _set("image_size", None), "image_size"),
    ("ensemble", _set("image_size", 10**12), "image_size"),
    ("ensemble", _set("head_names", [1, 2]), "head_names"),
    ("ensemble", _set("head_names", "triplet"), "head_names"),
    ("ensemble", _set("head_names", []), "head_names"),
    ("ensemble", _set("head_names", ["triplet", "triplet"]), "head_names"),
    ("ensemble", _set("head_names", ["../../x", "y"]), "head_names"),
    ("ensemble", _set("heads", "triplet"), "heads"),
    ("ensemble", _set("heads", [None]), "heads"),
    ("ensemble", _set("weights", [0.6]), "weights"),
    ("ensemble", _set("weights", [0.6, 0.4, 0.1]), "weights"),
    ("ensemble", _set("weights", ["a", "b"]), "weights"),
    ("ensemble", _set("weights", [float("nan"), 0.4]), "weights"),
    ("ensemble", _set("weights", {"triplet": float("inf"), "proxy_nca": 0.4}), "weights"),
    ("ensemble", _set("weights", {"other": 0.6, "proxy_nca": 0.4}), "weights"),
    ("ensemble", _set("weights", 0.5), "weights"),
    ("ensemble", _set("weights", _DELETE), "weights"),
    ("ensemble", _set("data_kind", "video"), "data_kind"),
    ("ensemble", _set("data_kind", 3), "data_kind"),
    ("ensemble", _set("embedding_dim", 0), "embedding_dim"),
    ("ensemble", _set("embedding_dim", "8"), "embedding_dim"),
    ("ensemble", _set("embedding_dim", 8.0), "embedding_dim"),
    ("ensemble", _set("feature_dim", -256), "feature_dim"),
    ("ensemble", _set("output_dim", 17), "output_dim"),
    ("ensemble", _set("output_dim", [16]), "output_dim"),
    ("ensemble", _set("backbone", 5), "backbone"),
    ("ensemble", _set("backbone", ""), "backbone"),
    ("ensemble", _set("backbone", {"name": "small_cnn"}), "backbone"),
    ("ensemble", _set("embedding", 5), "embedding"),
    ("ensemble", _set("embedding", "heads.nope"), "embedding"),
    ("ensemble", _set("embedding", _DELETE), "embedding"),
    ("ensemble", _set("compressor", "mlp"), "compressor"),
    ("ensemble", _set("distance", "euclidean"), "distance"),
    ("ensemble", _set("normalisation", {"mean": [0.5, 0.5], "std": [0.2, 0.2, 0.2]}), "normalisation.mean"),
    ("ensemble", _set("normalisation.std", [0.2, 0.0, 0.2]), "normalisation.std"),
    ("ensemble", _set("normalisation", "imagenet"), "normalisation"),
    ("ensemble", _set("tensors_sha256", 5), "tensors_sha256"),
    ("ensemble", _set("tensors_sha256", "abc"), "tensors_sha256"),
    ("ensemble", _set("source", "run"), "source"),
    ("ensemble", _set("metrics", [1, 2]), "metrics"),
    ("ensemble", _set("parameters", "many"), "parameters"),
    ("ensemble", _set("license", ["mit"]), "license"),
    ("ensemble", _set("format_version", "2"), "format version"),
    ("ensemble", _set("format_version", 3), "format version"),
    ("ensemble", _set("format_version", True), "format version"),
    ("ensemble", _set("format", "onnx"), "format"),
    ("compressed", _set("compressor", None), "compressor"),
    ("compressed", _set("compressor.variant", "zip"), "compressor.variant"),
    ("compressed", _set("compressor.dim", "6"), "compressor.dim"),
    ("compressed", _set("compressor.dim", 0), "compressor.dim"),
    ("compressed", _set("compressor.in_dim", _DELETE), "compressor.in_dim"),
    ("compressed", _set("compressor.in_dim", 256), "compressor.in_dim"),
    ("compressed", _set("compressor.hidden", -1), "compressor.hidden"),
]


@pytest.mark.parametrize("kind, edit, field", CASES, ids=[f"{i:02d}-{c[2]}" for i, c in enumerate(CASES)])
def test_corrupted_field_is_a_one_line_error_naming_file_and_field(exported, tmp_path, kind, edit, field):
    folder = _copy(exported, kind, tmp_path)
    spec = json.loads((folder / "config.json").read_text())
    edit(spec)
    (folder / "config.json").write_text(json.dumps(spec))
    with pytest.raises(UserError) as info:
        load_model(folder)
    msg = str(info.value)
    assert "config.json" in msg and field in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize("text", ["[]", '"model"', "null", "[" * 100_000 + "]" * 100_000,
                                  '{"format": "lossensemble-inference-model", "format_version": 2, "image_size": '
                                  + "9" * 5000 + "}"])
def test_description_that_is_no_object_is_refused(exported, tmp_path, text):
    folder = _copy(exported, "ensemble", tmp_path)
    (folder / "config.json").write_text(text)
    with pytest.raises(UserError, match="config.json"):
        load_model(folder)


@pytest.mark.parametrize("edit", [
    _set("weights", {"triplet": 0.9, "proxy_nca": 0.1}),  # changes the ensemble embedding
    _set("image_size", 64),  # changes the preprocessing
    _set("data_kind", "photo"),
    _set("normalisation.mean", [0.5, 0.5, 0.5]),
])
def test_valid_but_hand_edited_architecture_is_refused(exported, tmp_path, edit):
    folder = _copy(exported, "ensemble", tmp_path)
    spec = json.loads((folder / "config.json").read_text())
    edit(spec)
    (folder / "config.json").write_text(json.dumps(spec))
    with pytest.raises(UserError, match="architecture or preprocessing fields differ"):
        load_model(folder)
    spec["format_version"] = 1  # claiming the pre-checksum format does not help: the tensors carry it
    (folder / "config.json").write_text(json.dumps(spec))
    with pytest.raises(UserError, match="architecture or preprocessing fields differ"):
        load_model(folder)


def test_switching_the_embedding_by_hand_is_refused(exported, tmp_path):
    folder = _copy(exported, "compressed", tmp_path)
    spec = json.loads((folder / "config.json").read_text())
    spec.update(embedding="ensemble", compressor=None, output_dim=16)  # type-valid, consistent, but not exported
    (folder / "config.json").write_text(json.dumps(spec))
    with pytest.raises(UserError, match="architecture or preprocessing fields differ"):
        load_model(folder)


def test_informative_fields_may_be_edited(exported, tmp_path):
    folder = _copy(exported, "ensemble", tmp_path)
    spec = json.loads((folder / "config.json").read_text())
    spec.update(license="apache-2.0", metrics={"ensemble": {"recall@1": 50.0}}, source={"run": "elsewhere"})
    (folder / "config.json").write_text(json.dumps(spec))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(load_model(folder)(x), load_model(exported["ensemble"])(x))


def test_tensors_file_without_description_checksum_is_refused_for_format_2(exported, tmp_path):
    folder = _copy(exported, "ensemble", tmp_path)
    tensors = load((folder / "model.safetensors").read_bytes())
    data = save(tensors, metadata={"format": "lossensemble-inference-model", "embedding": "ensemble"})
    (folder / "model.safetensors").write_bytes(data)
    spec = json.loads((folder / "config.json").read_text())
    import hashlib

    spec["tensors_sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "config.json").write_text(json.dumps(spec))
    with pytest.raises(UserError, match="no description checksum"):
        load_model(folder)


def test_cli_reports_a_corrupted_description_in_one_line(exported, tmp_path, capsys):
    folder = _copy(exported, "ensemble", tmp_path)
    spec = json.loads((folder / "config.json").read_text())
    spec["weights"] = ["x", "y"]
    (folder / "config.json").write_text(json.dumps(spec))
    from PIL import Image

    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "a.png")
    assert main(["embed", str(folder), str(tmp_path / "a.png"), "-o", str(tmp_path / "E.npy")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "config.json" in err and "'weights'" in err
    assert "Traceback" not in err
