"""The Hugging Face folder layout: config.json + model.safetensors + README.md model card, save/from_pretrained,
and folders (and index folders) exported before it (model.json) still load."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import stat
import sys

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load, save

import lossensemble
from lossensemble.errors import UserError
from lossensemble.inference import ImageIndex, InferenceModel, build_index, export_model, load_model
from lossensemble.models import EnsembleModel, build_backbone

HEADS = ["triplet", "proxy_nca"]
METRICS = {"ensemble": {"recall@1": 61.25, "map@r": 20.5}, "heads.triplet": {"recall@1": 55.0, "map@r": 18.0}}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = EnsembleModel(build_backbone("small_cnn"), HEADS, 8).eval()
    training = {"dataset": "glyphs", "options": {"num_train_classes": 20, "images_per_class": 16},
                "losses": HEADS, "epochs": 3}
    return export_model(model, torch.tensor([0.7, 0.3]), tmp_path_factory.mktemp("hf") / "m", embedding="ensemble",
                        image_size=32, data_kind="glyph", backbone_name="small_cnn", training=training,
                        metrics=METRICS, license="apache-2.0")


def _legacy(new: str, dest) -> None:
    """A folder as 'lossensemble export' wrote it before config.json: model.json (format 1), no card."""
    dest.mkdir(parents=True)
    tensors = load((new / "model.safetensors").read_bytes())
    data = save(tensors, metadata={"format": "lossensemble-inference-model", "embedding": "ensemble"})
    spec = json.loads((new / "config.json").read_text())
    for key in ("training", "metrics", "license", "onnx"):
        spec.pop(key, None)
    spec.update(format_version=1, tensors_sha256=hashlib.sha256(data).hexdigest())
    (dest / "model.safetensors").write_bytes(data)
    (dest / "model.json").write_text(json.dumps(spec, indent=2))


def test_folder_holds_config_safetensors_and_card(model_dir):
    assert sorted(p.name for p in model_dir.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    for p in model_dir.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) & 0o644 == 0o644
    spec = json.loads((model_dir / "config.json").read_text())
    assert spec["format_version"] == 2 and spec["metrics"] == METRICS and spec["license"] == "apache-2.0"


def test_model_card(model_dir):
    card = (model_dir / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "lossensemble" and front["license"] == "apache-2.0"
    assert {"metric-learning", "image-retrieval"} <= set(front["tags"])
    headings = re.findall(r"^## (.+)$", card, re.M)
    assert headings == ["Model description", "Training data", "Evaluation", "Intended use", "Limitations",
                        "How to use"]
    assert "`small_cnn`" in card and "`triplet` 0.700" in card and "`proxy_nca` 0.300" in card
    assert "32 x 32" in card and "glyphs" in card and "num_train_classes`: 20" in card
    assert "| **ensemble** (this model) | 61.25 |" in card and "| heads.triplet | 55.00 |" in card
    assert "zero-shot" in card and "normalise with mean [0.485, 0.456, 0.406]" in card
    code = card.split("```python\n")[1].split("```")[0]
    compile(code, "card", "exec")
    assert 'lossensemble.load_model("path/to/this/folder")' in code


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_save_pretrained_and_from_pretrained_offline(model_dir, tmp_path, monkeypatch):
    _no_network(monkeypatch)
    model = InferenceModel.from_pretrained(str(model_dir))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = load_model(model_dir)(x)
        assert torch.equal(model(x), want)
    saved = model.save_pretrained(tmp_path / "copy")
    assert sorted(p.name for p in saved.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    a, b = (load((d / "model.safetensors").read_bytes()) for d in (saved, model_dir))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (saved / "README.md").read_text() == (model_dir / "README.md").read_text()
    again = InferenceModel.from_pretrained(saved)
    with torch.no_grad():
        assert torch.equal(again(x), want)
    assert isinstance(lossensemble.load_model(saved), InferenceModel)


def test_from_pretrained_of_an_unknown_repo_offline_is_one_line(monkeypatch):
    _no_network(monkeypatch)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match="no such local folder") as info:
        InferenceModel.from_pretrained("nobody/no-such-model-here")
    assert "\n" not in str(info.value)


def test_from_pretrained_of_a_repo_id_without_huggingface_hub(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(UserError, match=r"pip install 'lossensemble\[hub\]'"):
        InferenceModel.from_pretrained("nobody/no-such-model-here")


def test_folder_exported_before_config_json_still_loads(model_dir, tmp_path):
    old = tmp_path / "old"
    _legacy(model_dir, old)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_model(old)(x), load_model(model_dir)(x))
        assert torch.equal(load_model(old / "model.json")(x), load_model(model_dir / "config.json")(x))
    spec = json.loads((old / "model.json").read_text())
    spec["image_size"] = "big"
    (old / "model.json").write_text(json.dumps(spec))
    with pytest.raises(UserError, match=r"model\.json: field 'image_size'"):
        load_model(old)


def test_index_folders_with_old_and_new_model_files(model_dir, tmp_path, images):
    old = tmp_path / "old"
    _legacy(model_dir, old)
    query = sorted(images.rglob("*.png"))[3]
    results = {}
    for name, src in (("new", model_dir), ("old", old)):
        info = build_index(src, images, tmp_path / f"index-{name}")
        copied = sorted(p.name for p in (tmp_path / f"index-{name}" / "model").iterdir())
        assert copied == (["config.json", "model.safetensors"] if name == "new" else
                          ["model.json", "model.safetensors"])
        index = ImageIndex(tmp_path / f"index-{name}")
        results[name] = index.search(query, k=5)
        assert results[name][0]["path"] == str(query) and info["count"] == 30
    assert [r["path"] for r in results["old"]] == [r["path"] for r in results["new"]]
    # an index built from an old model, appended with the same model's new export: refused (other checksum)
    with pytest.raises(UserError, match="not the model that built"):
        build_index(model_dir, images, tmp_path / "index-old", append=True)
    # a re-export into the same folder replaces model.json by config.json
    shutil.copytree(old, tmp_path / "re")
    load_model(tmp_path / "re").save_pretrained(tmp_path / "re")
    assert not (tmp_path / "re" / "model.json").exists() and (tmp_path / "re" / "config.json").is_file()
    emb = load_model(tmp_path / "re").embed_images([query])
    assert np.allclose(emb, load_model(model_dir).embed_images([query]), atol=1e-6)


def test_push_to_hub_uploads_the_saved_folder(model_dir, monkeypatch):
    import huggingface_hub as hub
    _no_network(monkeypatch)
    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls["repo"] = (repo_id, private, exist_ok)

        def upload_folder(self, repo_id, folder_path, commit_message):
            from pathlib import Path

            calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            calls["model"] = load_model(folder_path)  # what is uploaded loads
            return f"https://hub.example/{repo_id}/commit/1"

    monkeypatch.setattr(hub, "HfApi", FakeApi)
    url = load_model(model_dir).push_to_hub("me/glyph-model", private=True, token="t")
    assert url.endswith("/commit/1") and calls["repo"] == ("me/glyph-model", True, True)
    assert calls["files"] == ["README.md", "config.json", "model.safetensors"]
    assert calls["model"].output_dim == 16 and calls["token"] == "t"


def test_export_never_overwrites_a_folder_of_other_files(model_dir, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("my project\n")
    (project / "config.json").write_text("{}\n")
    model = load_model(model_dir)
    with pytest.raises(UserError, match="a folder of other files"):
        model.save_pretrained(project)
    assert (project / "README.md").read_text() == "my project\n" and (project / "config.json").read_text() == "{}\n"
    again = model.save_pretrained(tmp_path / "copy")
    model.save_pretrained(again)  # an exported model folder is written again in place
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(load_model(again)(x), model(x))
