"""The compress / export / embed / index / search commands end to end on a tiny glyph run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lossensemble.cli.main import main

#: Added to the shared ``tiny_config`` (tests/conftest.py); compression dim = one head's 16.
EXTRA = ("eval.nmi=false", "compression.epochs=1")


@pytest.fixture(scope="module")
def run_and_images(tmp_path_factory, tiny_config):
    from lossensemble.data import build_dataset
    from lossensemble.training import Trainer

    root = tmp_path_factory.mktemp("cli")
    cfg = tiny_config(*EXTRA)
    Trainer(cfg, root / "run").fit()
    test = build_dataset("glyphs", "test", transform=None, **cfg.data.options)
    images = root / "images"
    for i in range(0, 40):
        sub = images / f"class{int(test.labels[i]):02d}"
        sub.mkdir(parents=True, exist_ok=True)
        test.get_image(i).save(sub / f"{i:03d}.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (images / "notes.txt").write_text("not an image, not picked up from a folder")
    return root / "run", images


def test_compress_export_embed_index_search(run_and_images, tmp_path, capsys):
    run, images = run_and_images
    assert main(["compress", str(run), "--variant", "direct", "--objective", "softmax", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[0] == "embedding" and lines[2].startswith("compressed") and lines[3].startswith("ensemble")
    assert any(line.startswith("heads.triplet") for line in lines)
    assert "compressed" in json.loads((run / "metrics.json").read_text())

    model = tmp_path / "model"
    assert main(["export", str(run), "-o", str(model)]) == 0
    assert "'compressed'" in capsys.readouterr().out
    spec = json.loads((model / "config.json").read_text())
    assert spec["embedding"] == "compressed" and "compressed" in spec["metrics"]
    assert sorted(p.name for p in model.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert "library_name: lossensemble" in (model / "README.md").read_text()

    emb = tmp_path / "E.npy"
    assert main(["embed", str(model), str(images), "-o", str(emb), "--batch-size", "16"]) == 0
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "skipped 1" in captured.err
    e = np.load(emb)
    paths = [json.loads(line) for line in (tmp_path / "E.paths.jsonl").read_text().splitlines()]
    assert e.shape == (40, 16) and len(paths) == 40 and paths == sorted(paths)
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)

    index = tmp_path / "index"
    assert main(["index", str(model), str(images), "-o", str(index)]) == 0
    capsys.readouterr()
    info = json.loads((index / "index.json").read_text())
    assert info["count"] == 40 and info["dim"] == 16 and info["metric"] == "cosine" and info["type"] == "flat"
    assert (index / "model" / "model.safetensors").is_file() and (index / "index.faiss").is_file()

    for query in (paths[0], paths[17]):
        assert main(["search", str(index), query, "--k", "5", "--json"]) == 0
        results = json.loads(capsys.readouterr().out)
        assert len(results) == 5 and results[0]["path"] == query
        assert results[0]["distance"] == pytest.approx(0.0, abs=1e-4)
        dists = [r["distance"] for r in results]
        assert dists == sorted(dists)
    assert main(["search", str(index), paths[3], "--k", "3"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 4 and table[1].split()[2] == paths[3]

    # same embedding through the index as through embed
    from lossensemble.inference import ImageIndex

    idx = ImageIndex(index)
    d, i = idx.search_vectors(e[:4], k=1)
    assert i[:, 0].tolist() == [0, 1, 2, 3]


def test_damaged_model_is_one_line_error_exit_2(run_and_images, tmp_path, capsys):
    run, images = run_and_images
    model = tmp_path / "m"
    assert main(["export", str(run), "-o", str(model), "--embedding", "ensemble", "--checkpoint", "last"]) == 0
    capsys.readouterr()
    f = model / "model.safetensors"
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    assert main(["embed", str(model), str(images), "-o", str(tmp_path / "E.npy")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lossensemble: error:") and "truncated" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    f.write_bytes(b"\x80\x04garbage pickle")
    assert main(["index", str(model), str(images), "-o", str(tmp_path / "i")]) == 2
    assert "not a valid safetensors file" in capsys.readouterr().err
    assert main(["search", str(tmp_path / "no-index"), str(images / "broken.png")]) == 2
    assert "not an index folder" in capsys.readouterr().err
    assert main(["export", str(run), "-o", str(tmp_path / "x"), "--embedding", "heads.nope"]) == 2
    assert "heads.triplet" in capsys.readouterr().err
