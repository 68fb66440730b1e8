"""Export and load: identical embeddings, only the needed tensors, and every kind of damage refused."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import lossensemble
from compression_helpers import glyph_like_images
from lossensemble.inference import export_model, load_model
from lossensemble.errors import UserError

from model_helpers import HEADS, WEIGHTS, compressor_meta as _meta, small_ensemble


def _model(variant: str | None):
    return small_ensemble(variant, warm_up=glyph_like_images(4, 4, seed=3)[0])


def _export(model, out, embedding, variant=None):
    return export_model(model, WEIGHTS, out, embedding=embedding, image_size=32, data_kind="glyph",
                        backbone_name="small_cnn", compressor_meta=_meta(variant) if variant else None)


@pytest.mark.parametrize("variant, embedding", [
    ("mlp", "compressed"), ("direct", "compressed"), ("mlp", "ensemble"), (None, "heads.proxy_nca"),
])
def test_round_trip_gives_identical_embeddings(tmp_path, variant, embedding):
    model = _model(variant)
    out = _export(model, tmp_path / "m", embedding, variant)
    loaded = lossensemble.load_model(out)
    x = glyph_like_images(3, 2, seed=5)[0]
    want = model.embed(x, WEIGHTS)[embedding]
    with torch.no_grad():
        got = loaded(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-6)
    spec = json.loads((out / "config.json").read_text())
    assert spec["embedding"] == embedding and spec["output_dim"] == want.shape[1]
    with safe_open(str(out / "model.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    prefixes = {k.split(".")[0] if not k.startswith("heads.") else ".".join(k.split(".")[:2]) for k in keys}
    expected = {
        ("mlp", "compressed"): {"backbone", "compressor", *(f"heads.{h}" for h in HEADS)},
        ("direct", "compressed"): {"backbone", "compressor"},
        ("mlp", "ensemble"): {"backbone", *(f"heads.{h}" for h in HEADS)},
        (None, "heads.proxy_nca"): {"backbone", "heads.proxy_nca"},
    }[(variant, embedding)]
    assert prefixes == expected


def test_embed_images_paths_and_pil_agree_with_the_transform(tmp_path):
    model = _model("direct")
    loaded = load_model(_export(model, tmp_path / "m", "compressed", "direct"))
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)) for _ in range(3)]
    paths = []
    for i, img in enumerate(imgs):
        paths.append(tmp_path / f"{i}.png")
        img.save(paths[-1])
    a = loaded.embed_images([paths[0], imgs[1], str(paths[2])], batch_size=2)
    b = loaded.embed_images(imgs, batch_size=3)
    want = model.embed(torch.stack([loaded.transform(im.convert("RGB")) for im in imgs]), WEIGHTS)["compressed"]
    assert np.allclose(a, b, atol=1e-5) and np.allclose(b, want.numpy(), atol=1e-5)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match="bad.png"):
        loaded.embed_images([tmp_path / "bad.png"])


def test_no_compressor_and_unknown_embedding_are_clear_errors(tmp_path):
    model = _model(None)
    with pytest.raises(UserError, match="no compressor"):
        _export(model, tmp_path / "a", "compressed")
    with pytest.raises(UserError, match="heads.triplet"):
        _export(model, tmp_path / "b", "heads.nope")


@pytest.fixture()
def exported(tmp_path):
    return _export(_model("mlp"), tmp_path / "m", "compressed", "mlp")


def test_bad_header_is_refused(exported):
    f = exported / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[:8] = (2**40).to_bytes(8, "little")  # header length far past the end of the file
    f.write_bytes(bytes(data))
    with pytest.raises(UserError, match="not a valid safetensors file"):
        load_model(exported)


def test_garbled_header_json_is_refused(exported):
    f = exported / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[9:14] = b"@@@@@"
    f.write_bytes(bytes(data))
    with pytest.raises(UserError, match="not a valid safetensors file"):
        load_model(exported)


def test_truncated_file_is_refused(exported):
    f = exported / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(UserError, match="damaged or truncated"):
        load_model(exported)


def test_modified_tensor_bytes_are_refused(exported):
    f = exported / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(UserError, match="checksum"):
        load_model(exported)


def test_model_json_that_does_not_match_the_tensors_is_refused(exported):
    spec_path = exported / "config.json"
    spec = json.loads(spec_path.read_text())
    spec["embedding_dim"] = 9
    spec["compressor"]["in_dim"] = 27
    spec_path.write_text(json.dumps(spec))
    with pytest.raises(UserError, match="architecture or preprocessing fields differ"):
        load_model(exported)
    spec["embedding_dim"] = 8
    spec["compressor"]["in_dim"] = 24
    spec["heads"] = spec["heads"][:1]
    spec_path.write_text(json.dumps(spec))
    with pytest.raises(UserError, match="needs heads"):
        load_model(exported)
    spec_path.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_model(exported)


class _Exploit:
    """Unpickling this would create a marker file (stands for arbitrary code execution)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_renamed_to_safetensors_is_refused_and_never_run(exported, tmp_path):
    marker = tmp_path / "pwned"
    (exported / "model.safetensors").write_bytes(pickle.dumps({"backbone.x": _Exploit(str(marker))}))
    with pytest.raises(UserError, match="not a valid safetensors file"):
        load_model(exported)
    assert not marker.exists()
    torch.save({"w": torch.zeros(2)}, exported / "model.safetensors")  # torch's zip+pickle format
    with pytest.raises(UserError, match="not a valid safetensors file"):
        load_model(exported)


def test_missing_files(tmp_path, exported):
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "nowhere")
    (exported / "config.json").unlink()
    with pytest.raises(UserError, match="no config.json"):
        load_model(exported)
