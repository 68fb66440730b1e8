"""Indexes of a model exported with ONNX search through onnxruntime (no torch), with the same results."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from lossensemble.errors import UserError
from lossensemble.inference import ImageIndex, build_index, export_model, list_images
from lossensemble.inference.onnx_embedder import OnnxEmbedder
from lossensemble.models import EnsembleModel, build_backbone


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    torch.manual_seed(3)
    model = EnsembleModel(build_backbone("small_cnn"), ["triplet", "proxy_nca"], 8).eval()
    return export_model(model, torch.tensor([0.6, 0.4]), tmp_path_factory.mktemp("m") / "onnx", embedding="ensemble",
                        image_size=32, data_kind="photo", backbone_name="small_cnn", format="onnx")


@pytest.fixture(scope="module")
def onnx_index(onnx_model, images, tmp_path_factory):
    out = tmp_path_factory.mktemp("idx") / "index"
    build_index(onnx_model, images, out)
    return out


def test_onnx_and_torch_backends_agree(onnx_index, images):
    fast = ImageIndex(onnx_index)
    slow = ImageIndex(onnx_index, backend="torch")
    assert isinstance(fast.model, OnnxEmbedder) and not isinstance(slow.model, OnnxEmbedder)
    files = list_images([images])
    a, b = fast.model.embed_images(files[:7]), slow.model.embed_images(files[:7])
    assert np.abs(a - b).max() < 1e-5
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    for query in files[::6]:
        ra, rb = fast.search(query, k=5), slow.search(query, k=5)
        assert [r["path"] for r in ra][0] == str(query)  # an indexed image finds itself first
        assert np.allclose([r["distance"] for r in ra], [r["distance"] for r in rb], atol=1e-5)


def test_search_command_does_not_import_torch(onnx_index, images):
    query = str(list_images([images])[0])
    code = (f"import sys, json; from lossensemble.cli.main import main; rc = main(['search', {str(onnx_index)!r}, "
            f"{query!r}, '--k', '3', '--json']); assert rc == 0; "
            "print(json.dumps(sorted(m for m in ('torch', 'torchvision') if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == []
    assert json.loads("\n".join(lines[:-1]))[0]["path"] == query


def test_tampered_graph_is_refused(onnx_index, tmp_path):
    copy = tmp_path / "index"
    shutil.copytree(onnx_index, copy)
    graph = copy / "model" / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(UserError, match="differs from the ONNX model"):
        ImageIndex(copy)
    ImageIndex(copy, backend="torch")  # the torch path does not read the graph


def test_hand_edited_description_is_refused_by_the_onnx_path_too(onnx_index, tmp_path):
    copy = tmp_path / "index"
    shutil.copytree(onnx_index, copy)
    cfg = copy / "model" / "config.json"
    spec = json.loads(cfg.read_text())
    spec["normalisation"]["mean"] = [0.5, 0.5, 0.5]  # valid, but not what the model was exported with
    cfg.write_text(json.dumps(spec))
    for backend in ("auto", "torch"):
        with pytest.raises(UserError, match="preprocessing fields differ"):
            ImageIndex(copy, backend=backend)


def test_backend_choice_errors(tiny_model, images, tmp_path):
    plain = tmp_path / "plain"
    build_index(tiny_model, images, plain)
    assert not isinstance(ImageIndex(plain).model, OnnxEmbedder)  # no graph: torch
    with pytest.raises(UserError, match="has no ONNX model"):
        ImageIndex(plain, backend="onnx")
    with pytest.raises(UserError, match="unknown backend"):
        ImageIndex(plain, backend="tensorflow")


def test_append_keeps_the_onnx_binding(onnx_model, images, tmp_path):
    files = list_images([images])
    out = tmp_path / "index"
    build_index(onnx_model, files[:10], out)
    info = build_index(onnx_model, files[10:], out, append=True)
    assert info["added"] == len(files) - 10 and info["onnx_sha256"]
    index = ImageIndex(out)
    assert isinstance(index.model, OnnxEmbedder) and len(index) == len(files)
    assert index.search(files[-1], k=1)[0]["path"] == str(files[-1])
