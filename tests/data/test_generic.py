"""User data formats: image folders and open-metric-learning style CSV files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fabricate import make_folder, write_image
from lossensemble.data import DatasetNotFound, build_dataset
from lossensemble.errors import DataError


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path, {"ant": 2, "bee": 3, "cat": 2, "dog": 2, "eel": 2, "fox": 2})


def test_folder_split_by_ratio(folder):
    train = build_dataset("folder", "train", folder)
    test = build_dataset("folder", "test", folder)
    assert train.class_names == ["ant", "bee", "cat"]
    assert test.class_names == ["dog", "eel", "fox"]
    assert len(train) == 7 and len(test) == 6
    assert build_dataset("folder", "train", folder, train_ratio=0.34).class_names == ["ant", "bee"]
    assert all(Path(p).parent.name == train.class_names[lab] for p, lab in zip(train.paths, train.labels))


def test_folder_split_by_list_and_file(folder, tmp_path):
    train = build_dataset("folder", "train", folder, train_classes=["eel", "ant"])
    assert train.class_names == ["ant", "eel"]
    assert build_dataset("folder", "test", folder, train_classes=["eel", "ant"]).class_names == ["bee", "cat", "dog", "fox"]
    listing = tmp_path / "train.txt"
    listing.write_text("bee\n\ncat\n")
    assert build_dataset("folder", "train", folder, train_classes=str(listing)).class_names == ["bee", "cat"]
    with pytest.raises(DataError, match="unknown classes.*'gnu'"):
        build_dataset("folder", "train", folder, train_classes=["ant", "gnu"])
    with pytest.raises(DataError, match="train_classes file not found"):
        build_dataset("folder", "train", folder, train_classes=str(tmp_path / "nope.txt"))


def test_folder_ignores_non_image_files_and_hidden_entries(folder):
    (folder / "ant" / "notes.txt").write_text("not an image")
    write_image(folder / "ant" / ".hidden.png")
    write_image(folder / ".cache" / "x.png")
    write_image(folder / "bee" / "nested" / "deep.jpg")
    train = build_dataset("folder", "train", folder)
    assert len(train) == 8  # 7 + the nested one
    assert not any("notes" in p or ".hidden" in p or ".cache" in p for p in train.paths)


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetNotFound, match=r"needs data\.root=\.\.\. \(root=\.\.\. in Python"):
        build_dataset("folder", "train")
    with pytest.raises(DatasetNotFound, match=str(tmp_path / "missing")):
        build_dataset("folder", "train", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        build_dataset("folder", "train", tmp_path / "empty")
    (tmp_path / "onlytext" / "a").mkdir(parents=True)
    (tmp_path / "onlytext" / "a" / "x.txt").write_text("x")
    (tmp_path / "onlytext" / "b").mkdir()
    with pytest.raises(DataError, match="empty|no images"):
        build_dataset("folder", "train", tmp_path / "onlytext")


# ----------------------------------------------------------------------------------- CSV


def _csv(tmp_path: Path, header: str, rows: list[str], images: int = 12) -> Path:
    for k in range(images):
        write_image(tmp_path / "imgs" / f"{k}.png", seed=k)
    path = tmp_path / "data.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_csv_splits_and_flags(tmp_path):
    rows = [f"imgs/{k}.png,{k // 2},train" for k in range(6)]
    rows += ["imgs/6.png,10,validation,True,False", "imgs/7.png,10,validation,False,True",
             "imgs/8.png,11,test,1,1", "imgs/9.png,11,test,0,1"]
    rows = [r if r.count(",") == 4 else r + ",," for r in rows]
    path = _csv(tmp_path, "path,label,split,is_query,is_gallery", rows)
    train = build_dataset("csv", "train", path)
    assert train.class_names == ["0", "1", "2"] and len(train) == 6
    test = build_dataset("csv", "test", path)
    assert test.class_names == ["10", "11"]
    assert test.is_query.tolist() == [True, False, True, False]
    assert test.is_gallery.tolist() == [False, True, True, True]
    assert len(build_dataset("csv", "query", path)) == 2
    assert len(build_dataset("csv", "gallery", path)) == 3
    assert test.paths[0] == str(tmp_path / "imgs" / "6.png")


def test_csv_text_labels_and_dataset_root(tmp_path):
    rows = ["0.png,cat,train", "1.png,cat,train", "2.png,ant,train", "3.png,ant,train", "4.png,owl,test"]
    path = _csv(tmp_path, "label,path,split,extra", [f"{r.split(',')[1]},{r.split(',')[0]},{r.split(',')[2]},x" for r in rows])
    with pytest.raises(DataError, match="path that is not a file"):
        build_dataset("csv", "train", path)
    train = build_dataset("csv", "train", path, dataset_root=str(tmp_path / "imgs"))
    assert train.class_names == ["ant", "cat"]
    assert train.is_query is None
    with pytest.raises(DataError, match="no query/gallery flags"):
        build_dataset("csv", "query", path, dataset_root=str(tmp_path / "imgs"))


def test_csv_missing_columns_are_named(tmp_path):
    path = _csv(tmp_path, "path,target,split", ["imgs/0.png,1,train"])
    with pytest.raises(DataError, match=r"lacks column\(s\) label \(has: path, target, split\)"):
        build_dataset("csv", "train", path)
    path = _csv(tmp_path, "path,label,split,is_query", ["imgs/0.png,1,train,1"])
    with pytest.raises(DataError, match="is_query but not its partner"):
        build_dataset("csv", "train", path)


def test_csv_unknown_paths_name_the_rows(tmp_path):
    rows = ["imgs/0.png,1,train", "imgs/missing.png,1,train", "imgs/1.png,2,train", "/abs/nope.jpg,2,test"]
    path = _csv(tmp_path, "path,label,split", rows)
    with pytest.raises(DataError) as info:
        build_dataset("csv", "train", path)
    message = str(info.value)
    assert "2 rows" in message and "line 3 ('imgs/missing.png')" in message and "line 5 ('/abs/nope.jpg')" in message


def test_csv_mixed_label_types_name_the_rows(tmp_path):
    rows = [f"imgs/{k}.png,{k},train" for k in range(5)] + ["imgs/5.png,dog,train", "imgs/6.png,7,test"]
    path = _csv(tmp_path, "path,label,split", rows)
    with pytest.raises(DataError, match=r"1 rows with a text label in a column of mixed types.*line 7 \('dog'\)"):
        build_dataset("csv", "train", path)


def test_csv_bad_split_and_flag_values(tmp_path):
    path = _csv(tmp_path, "path,label,split", ["imgs/0.png,1,train", "imgs/1.png,1,holdout"])
    with pytest.raises(DataError, match=r"split other than train/validation/test: line 3 \('holdout'\)"):
        build_dataset("csv", "train", path)
    path = _csv(tmp_path, "path,label,split,is_query,is_gallery", ["imgs/0.png,1,test,maybe,1"])
    with pytest.raises(DataError, match="is_query value that is not true/false"):
        build_dataset("csv", "test", path)


def test_csv_shared_classes_break_the_protocol(tmp_path):
    rows = ["imgs/0.png,1,train", "imgs/1.png,1,train", "imgs/2.png,2,train", "imgs/3.png,2,train",
            "imgs/4.png,2,test", "imgs/5.png,3,test"]
    path = _csv(tmp_path, "path,label,split", rows)
    with pytest.raises(DataError, match=r"1 classes appear in both the train and the test split \(e.g. '2'\)"):
        build_dataset("csv", "test", path)


def test_csv_is_not_a_file_or_is_empty(tmp_path):
    with pytest.raises(DatasetNotFound):
        build_dataset("csv", "train", tmp_path / "none.csv")
    (tmp_path / "empty.csv").write_text("path,label,split\n")
    with pytest.raises(DataError, match="has no rows"):
        build_dataset("csv", "train", tmp_path / "empty.csv")
    with pytest.raises(DataError, match="not a file"):
        build_dataset("csv", "train", tmp_path)


def test_empty_train_split_is_an_error(tmp_path):
    path = _csv(tmp_path, "path,label,split", ["imgs/0.png,1,test", "imgs/1.png,2,test"])
    with pytest.raises(DataError, match="split 'train' is empty"):
        build_dataset("csv", "train", path)
    assert np.array_equal(build_dataset("csv", "test", path).labels, [0, 1])
