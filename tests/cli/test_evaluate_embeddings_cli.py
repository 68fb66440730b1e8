"""``lossensemble evaluate-embeddings`` on tiny .npy files: table, JSON, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lossensemble.cli.main import main


@pytest.fixture
def arrays(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 5)
    x = (np.eye(4, 6)[y] * 3 + 0.1 * rng.normal(size=(20, 6))).astype(np.float32)
    np.save(tmp_path / "e.npy", x)
    np.save(tmp_path / "y.npy", y)
    return tmp_path


def test_table_and_json(arrays, capsys):
    out = arrays / "sub" / "m.json"
    rc = main(["evaluate-embeddings", "--threads", "1", "--embeddings", str(arrays / "e.npy"), "--labels", str(arrays / "y.npy"), "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "recall@1" in printed and "100.00" in printed and "20 items, 4 classes" in printed
    data = json.loads(out.read_text())
    assert list(data) == ["recall@1", "recall@2", "recall@4", "recall@8", "knn_acc", "map@r", "r_precision", "nmi"]
    assert all(v == pytest.approx(100.0) for v in data.values())


def test_k_distance_no_nmi_and_masks(arrays):
    is_query = np.arange(20) % 2 == 0
    np.save(arrays / "q.npy", is_query)
    np.save(arrays / "g.npy", ~is_query)
    out = arrays / "m.json"
    rc = main([
        "evaluate-embeddings", "--threads", "1", "--embeddings", str(arrays / "e.npy"), "--labels", str(arrays / "y.npy"),
        "--k", "1", "3", "--distance", "euclidean", "--no-nmi", "--json", str(out),
        "--query-mask", str(arrays / "q.npy"), "--gallery-mask", str(arrays / "g.npy"),
    ])
    assert rc == 0
    assert list(json.loads(out.read_text())) == ["recall@1", "recall@3", "knn_acc", "map@r", "r_precision"]


def test_single_item_class_warns_and_writes_null_when_undefined(tmp_path, capsys):
    np.save(tmp_path / "e.npy", np.random.default_rng(1).normal(size=(3, 2)).astype(np.float32))
    np.save(tmp_path / "y.npy", np.array([0, 1, 2]))
    out = tmp_path / "m.json"
    rc = main(["evaluate-embeddings", "--threads", "1", "--embeddings", str(tmp_path / "e.npy"), "--labels", str(tmp_path / "y.npy"), "--no-nmi", "--json", str(out)])
    assert rc == 0
    assert "warning: 3 queries" in capsys.readouterr().err
    assert json.loads(out.read_text())["map@r"] is None


def error_of(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1
    return err


def test_missing_file(arrays, capsys):
    err = error_of(["evaluate-embeddings", "--embeddings", str(arrays / "nope.npy"), "--labels", str(arrays / "y.npy")], capsys)
    assert "embeddings file not found" in err


def test_length_mismatch(arrays, capsys):
    np.save(arrays / "y9.npy", np.arange(9))
    err = error_of(["evaluate-embeddings", "--embeddings", str(arrays / "e.npy"), "--labels", str(arrays / "y9.npy")], capsys)
    assert "20 embeddings but 9 labels" in err


def test_bad_shape_and_not_npy(arrays, capsys):
    np.save(arrays / "flat.npy", np.zeros(20, np.float32))
    err = error_of(["evaluate-embeddings", "--embeddings", str(arrays / "flat.npy"), "--labels", str(arrays / "y.npy")], capsys)
    assert "2-D array" in err
    (arrays / "junk.npy").write_text("not numpy")
    err = error_of(["evaluate-embeddings", "--embeddings", str(arrays / "junk.npy"), "--labels", str(arrays / "y.npy")], capsys)
    assert "cannot read embeddings file" in err


def test_pickled_object_array_is_refused(arrays, capsys):
    np.save(arrays / "obj.npy", np.array([{"a": 1}] * 20, dtype=object), allow_pickle=True)
    err = error_of(["evaluate-embeddings", "--embeddings", str(arrays / "e.npy"), "--labels", str(arrays / "obj.npy")], capsys)
    assert "cannot read labels file" in err


def test_only_one_mask(arrays, capsys):
    np.save(arrays / "q.npy", np.ones(20, bool))
    err = error_of(["evaluate-embeddings", "--embeddings", str(arrays / "e.npy"), "--labels", str(arrays / "y.npy"), "--query-mask", str(arrays / "q.npy")], capsys)
    assert "--gallery-mask" in err
