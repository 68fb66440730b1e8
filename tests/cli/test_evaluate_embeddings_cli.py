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


def test_table_and_output_file(arrays, capsys):
    out = arrays / "sub" / "m.json"
    rc = main(["evaluate-embeddings", "--threads", "1", "--embeddings", str(arrays / "e.npy"), "--labels", str(arrays / "y.npy"), "-o", str(out)])
    assert rc == 0
    captured = capsys.readouterr()
    assert "recall@1" in captured.out and "100.00" in captured.out and "20 items, 4 classes" in captured.out
    assert f"wrote {out}" in captured.err
    data = json.loads(out.read_text())
    assert list(data) == ["recall@1", "recall@2", "recall@4", "recall@8", "knn_acc", "map@r", "r_precision", "nmi",
                          "warnings"]
    assert data.pop("warnings") == []
    assert all(v == pytest.approx(100.0) for v in data.values())


def test_json_prints_json_on_stdout_only(arrays, capsys):
    rc = main(["evaluate-embeddings", "--threads", "1", "--embeddings", str(arrays / "e.npy"), "--labels", str(arrays / "y.npy"), "--json", "--no-nmi"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)  # nothing but JSON on stdout
    assert data["recall@1"] == pytest.approx(100.0) and data["warnings"] == []


def test_output_refuses_a_folder_and_a_non_json_file(arrays, capsys):
    args = ["evaluate-embeddings", "--embeddings", str(arrays / "e.npy"), "--labels", str(arrays / "y.npy"), "-o"]
    err = error_of(args + [str(arrays)], capsys)
    assert "is a folder" in err
    notes = arrays / "notes.txt"
    notes.write_text("my precious notes")
    err = error_of(args + [str(notes)], capsys)
    assert "exists and is not a JSON file; not overwriting it" in err
    assert notes.read_text() == "my precious notes"
    old = arrays / "old.json"
    old.write_text("{}")
    assert main(args + [str(old), "--no-nmi"]) == 0 and "recall@1" in json.loads(old.read_text())


def test_degenerate_data_warns_and_the_json_says_why(tmp_path, capsys):
    np.save(tmp_path / "e.npy", np.zeros((6, 3), np.float32))
    np.save(tmp_path / "y.npy", np.array([0, 0, 0, 1, 1, 1]))
    rc = main(["evaluate-embeddings", "--threads", "1", "--embeddings", str(tmp_path / "e.npy"), "--labels", str(tmp_path / "y.npy"), "--json"])
    assert rc == 0
    captured = capsys.readouterr()
    assert "warning: all 6 embeddings are zero" in captured.err
    data = json.loads(captured.out)
    assert data["recall@1"] is None and data["nmi"] is None
    assert data["warnings"][0].startswith("all 6 embeddings are zero")


def test_k_distance_no_nmi_and_masks(arrays):
    is_query = np.arange(20) % 2 == 0
    np.save(arrays / "q.npy", is_query)
    np.save(arrays / "g.npy", ~is_query)
    out = arrays / "m.json"
    rc = main([
        "evaluate-embeddings", "--threads", "1", "--embeddings", str(arrays / "e.npy"), "--labels", str(arrays / "y.npy"),
        "--k", "1", "3", "--distance", "euclidean", "--no-nmi", "-o", str(out),
        "--query-mask", str(arrays / "q.npy"), "--gallery-mask", str(arrays / "g.npy"),
    ])
    assert rc == 0
    assert list(json.loads(out.read_text())) == ["recall@1", "recall@3", "knn_acc", "map@r", "r_precision", "warnings"]


def test_single_item_class_warns_and_writes_null_when_undefined(tmp_path, capsys):
    np.save(tmp_path / "e.npy", np.random.default_rng(1).normal(size=(3, 2)).astype(np.float32))
    np.save(tmp_path / "y.npy", np.array([0, 1, 2]))
    out = tmp_path / "m.json"
    rc = main(["evaluate-embeddings", "--threads", "1", "--embeddings", str(tmp_path / "e.npy"), "--labels", str(tmp_path / "y.npy"), "--no-nmi", "-o", str(out)])
    assert rc == 0
    assert "warning: all 3 queries" in capsys.readouterr().err
    data = json.loads(out.read_text())
    assert data["map@r"] is None and data["warnings"][0].startswith("all 3 queries (in 3 classes)")


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
    assert f"embeddings file {arrays / 'junk.npy'} is a text file, not a .npy array: convert it with np.save" in err


def test_npz_archive_names_its_arrays(arrays, capsys):
    np.savez(arrays / "both.npz", emb=np.zeros((20, 3)), lab=np.arange(20))
    err = error_of(["evaluate-embeddings", "--embeddings", str(arrays / "both.npz"), "--labels", str(arrays / "y.npy")], capsys)
    assert f"embeddings file {arrays / 'both.npz'} is an .npz archive holding arrays emb, lab: pass one of them as .npy" in err


def test_text_labels_and_pickle_files_say_what_they_are(arrays, capsys):
    (arrays / "y.txt").write_text("\n".join(str(v) for v in np.repeat(np.arange(4), 5)) + "\n")
    err = error_of(["evaluate-embeddings", "--embeddings", str(arrays / "e.npy"), "--labels", str(arrays / "y.txt")], capsys)
    assert "labels file" in err and "is a text file, not a .npy array" in err and "np.loadtxt" in err
    import pickle

    (arrays / "y.pkl").write_bytes(pickle.dumps(list(range(20))))
    err = error_of(["evaluate-embeddings", "--embeddings", str(arrays / "e.npy"), "--labels", str(arrays / "y.pkl")], capsys)
    assert "is a Python pickle, not a .npy array" in err


def test_labels_of_the_wrong_shape_or_kind(arrays, capsys):
    base = ["evaluate-embeddings", "--embeddings", str(arrays / "e.npy"), "--labels"]
    np.save(arrays / "y2.npy", np.zeros((20, 3)))
    err = error_of(base + [str(arrays / "y2.npy")], capsys)
    assert "holds an array of shape (20, 3): expected one class label per item, shape (n,) (is it the embeddings?)" in err
    np.save(arrays / "yf.npy", np.linspace(0, 1, 20))
    err = error_of(base + [str(arrays / "yf.npy")], capsys)
    assert "floats with fractional values" in err


def test_string_labels_are_class_names(arrays, capsys):
    np.save(arrays / "ys.npy", np.array(["cat", "dog", "eel", "fox"])[np.repeat(np.arange(4), 5)])
    assert main(["evaluate-embeddings", "--threads", "1", "--embeddings", str(arrays / "e.npy"), "--labels", str(arrays / "ys.npy"), "--json", "--no-nmi"]) == 0
    assert json.loads(capsys.readouterr().out)["recall@1"] == pytest.approx(100.0)


def test_masks_of_the_wrong_length_or_kind(arrays, capsys):
    base = ["evaluate-embeddings", "--embeddings", str(arrays / "e.npy"), "--labels", str(arrays / "y.npy")]
    np.save(arrays / "g.npy", np.ones(20, bool))
    np.save(arrays / "short.npy", np.ones(19, bool))
    err = error_of(base + ["--query-mask", str(arrays / "short.npy"), "--gallery-mask", str(arrays / "g.npy")], capsys)
    assert "--query-mask" in err and "shape (19,), expected a 1-D mask of length 20" in err
    np.save(arrays / "idx.npy", np.arange(20))  # indices, not a mask
    err = error_of(base + ["--query-mask", str(arrays / "g.npy"), "--gallery-mask", str(arrays / "idx.npy")], capsys)
    assert "--gallery-mask" in err and "looks like a list of indices" in err


def test_pickled_object_array_is_refused(arrays, capsys):
    np.save(arrays / "obj.npy", np.array([{"a": 1}] * 20, dtype=object), allow_pickle=True)
    err = error_of(["evaluate-embeddings", "--embeddings", str(arrays / "e.npy"), "--labels", str(arrays / "obj.npy")], capsys)
    assert "cannot read labels file" in err and "pickled object array (dtype object)" in err


def test_only_one_mask(arrays, capsys):
    np.save(arrays / "q.npy", np.ones(20, bool))
    err = error_of(["evaluate-embeddings", "--embeddings", str(arrays / "e.npy"), "--labels", str(arrays / "y.npy"), "--query-mask", str(arrays / "q.npy")], capsys)
    assert "--gallery-mask" in err
