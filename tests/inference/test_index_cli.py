"""index / search / embed from the command line: types, --append, options, one-line errors (exit 2)."""

from __future__ import annotations

import json
import shutil

import numpy as np

from lossensemble.cli.main import main
from lossensemble.inference import read_paths


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("lossensemble: error:") and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_index_types_append_and_search_options(tiny_model, images, tmp_path, capsys):
    idx = tmp_path / "idx"
    assert main(["index", str(tiny_model), str(images / "class00"), "-o", str(idx), "--type", "hnsw"]) == 0
    assert "5 images" in capsys.readouterr().out
    assert main(["index", str(tiny_model), str(images), "-o", str(idx), "--append"]) == 0
    assert "added 25 new images" in capsys.readouterr().out
    info = json.loads((idx / "index.json").read_text())
    assert info["type"] == "hnsw" and info["count"] == 30 and info["params"]["ef_search"] >= 10
    paths = read_paths(idx / "paths.jsonl")
    query = paths[17]
    assert main(["search", str(idx), query, "--k", "4", "--ef-search", "100", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 4 and hits[0]["path"] == query
    assert main(["search", str(idx), query, "--nprobe", "3"]) == 2
    _one_line_error(capsys, "--nprobe applies to ivf indexes; this index is hnsw")
    assert main(["search", str(idx), query, "--ef-search", "0"]) == 2
    _one_line_error(capsys, "--ef-search must be >= 1")
    assert main(["index", str(tiny_model), str(images), "-o", str(idx), "--append", "--type", "ivf"]) == 2
    _one_line_error(capsys, "is a hnsw index, not ivf")


def test_swapped_or_foreign_model_is_exit_2(tiny_model, other_model, images, tmp_path, capsys):
    idx = tmp_path / "idx"
    assert main(["index", str(tiny_model), str(images / "class01"), "-o", str(idx), "--type", "ivf"]) == 0
    capsys.readouterr()
    query = str(next((images / "class01").iterdir()))
    assert main(["index", str(other_model), str(images), "-o", str(idx), "--append"]) == 2
    _one_line_error(capsys, "is not the model that built")
    shutil.rmtree(idx / "model")
    shutil.copytree(other_model, idx / "model")
    assert main(["search", str(idx), query]) == 2
    _one_line_error(capsys, "is not the model this index was built with")
    info = json.loads((idx / "index.json").read_text())
    (idx / "index.json").write_text(json.dumps({**info, "model": "../../m"}))
    assert main(["search", str(idx), query]) == 2
    _one_line_error(capsys, "points outside the index folder")


def test_embed_writes_json_lines_and_refuses_a_folder_as_output(tiny_model, images, tmp_path, capsys):
    odd = tmp_path / "odd"
    shutil.copytree(images / "class02", odd)
    (odd / "00.png").rename(odd / "new\nline.png")
    out = tmp_path / "E.npy"
    assert main(["embed", str(tiny_model), str(odd), "-o", str(out)]) == 0
    capsys.readouterr()
    paths = read_paths(tmp_path / "E.paths.jsonl")
    assert len(paths) == 5 == np.load(out).shape[0] and str((odd / "new\nline.png").resolve()) in paths
    (tmp_path / "somedir").mkdir()
    assert main(["embed", str(tiny_model), str(odd), "-o", str(tmp_path / "somedir")]) == 2
    _one_line_error(capsys, "is a folder")
    (tmp_path / "F.paths.jsonl").mkdir()
    assert main(["embed", str(tiny_model), str(odd), "-o", str(tmp_path / "F.npy")]) == 2
    _one_line_error(capsys, "would replace a folder")
    assert not (tmp_path / "F.npy").exists()
