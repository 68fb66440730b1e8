"""Users' own data: duplicates are dropped and counted, train/test leakage and two-label images refused."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from fabricate import make_folder, write_image
from lossensemble.data import build_dataset, dedup
from lossensemble.errors import DataError
from lossensemble.evaluation.metrics import compute_metrics


def _images(folder: Path, count: int, size: int = 8) -> list[str]:
    """``count`` random-pixel PNGs (distinct content) named 0.png, 1.png, ... under ``folder``."""
    return [write_image(folder / f"{k}.png", seed=k, size=size).name for k in range(count)]


def _csv(tmp_path: Path, rows: list[str], header: str = "path,label,split") -> Path:
    path = tmp_path / "data.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _pixels(ds) -> np.ndarray:
    return np.stack([np.asarray(ds.get_image(i), dtype=np.float32).ravel() for i in range(len(ds))])


def test_repeated_test_rows_no_longer_inflate_recall(tmp_path, caplog):
    _images(tmp_path / "imgs", 24)
    train = [f"imgs/{k}.png,{k // 2},train" for k in range(8)]
    test = [f"imgs/{k}.png,{100 + k // 4},test" for k in range(8, 24)]
    path = _csv(tmp_path, train + test * 3)  # every test row three times
    with caplog.at_level(logging.WARNING, logger="lossensemble.data"):
        ds = build_dataset("csv", "test", path, transform=None)
    assert len(ds) == 16 and len(set(ds.paths)) == 16
    assert ds.data_issues == {"duplicates_dropped": 32, "duplicates_dropped_by_split": {"train": 0, "test": 32}}
    assert "dropped 32 duplicate images (0 train, 32 test)" in caplog.text
    assert "line 26 ('imgs/8.png')" in caplog.text  # the first repeat of line 10
    # Random pixels as embeddings: with the copies every query finds itself (R@1 = 100).
    r1 = compute_metrics(_pixels(ds), ds.labels, k=1, nmi=False)["recall@1"]
    assert r1 < 100
    tripled = np.concatenate([_pixels(ds)] * 3)
    assert compute_metrics(tripled, np.tile(ds.labels, 3), k=1, nmi=False)["recall@1"] == 100


def test_duplicate_train_rows_are_dropped_once_and_warned_once(tmp_path, caplog):
    _images(tmp_path / "imgs", 8)
    rows = [f"imgs/{k}.png,{k // 2},{'train' if k < 4 else 'test'}" for k in range(8)]
    path = _csv(tmp_path, rows + rows[:3])
    with caplog.at_level(logging.WARNING, logger="lossensemble.data"):
        train = build_dataset("csv", "train", path)
        test = build_dataset("csv", "test", path)
    assert len(train) == 4 and len(test) == 4
    assert train.data_issues["duplicates_dropped"] == 3 == test.data_issues["duplicates_dropped"]
    assert train.data_issues["duplicates_dropped_by_split"] == {"train": 3, "test": 0}
    assert len([r for r in caplog.records if "duplicate images" in r.getMessage()]) == 1


def test_identical_bytes_under_another_name_are_duplicates(tmp_path):
    folder = make_folder(tmp_path, {"ant": 2, "bee": 2, "cat": 2, "dog": 2})
    shutil.copy(folder / "ant" / "0.png", folder / "ant" / "copy.png")
    (folder / "bee" / "sub").mkdir()
    (folder / "bee" / "sub" / "link.png").symlink_to(folder / "bee" / "1.png")
    train = build_dataset("folder", "train", folder)
    assert len(train) == 4
    assert not any(p.endswith(("copy.png", "link.png")) for p in train.paths)
    assert train.data_issues["duplicates_dropped"] == 2


def test_clean_data_reports_zero_and_other_datasets_nothing(tmp_path):
    folder = make_folder(tmp_path, {"ant": 2, "bee": 2, "cat": 2, "dog": 2})
    assert build_dataset("folder", "test", folder).data_issues == {
        "duplicates_dropped": 0, "duplicates_dropped_by_split": {"train": 0, "test": 0}}


def test_same_file_in_train_and_test_is_leakage(tmp_path):
    _images(tmp_path / "imgs", 8)
    rows = [f"imgs/{k}.png,{k // 2},{'train' if k < 4 else 'test'}" for k in range(8)]
    path = _csv(tmp_path, rows + ["imgs/./1.png,3,test", "imgs/2.png,2,test"])
    with pytest.raises(DataError) as info:
        build_dataset("csv", "train", path)
    message = str(info.value)
    assert "\n" not in message
    assert "2 images are in both the train and the test split" in message
    assert "line 3 ('imgs/1.png') (label '0') in train and line 10 ('imgs/./1.png') (label '3') in test" in message


def test_identical_bytes_in_a_train_and_a_test_folder_is_leakage(tmp_path):
    folder = make_folder(tmp_path, {"ant": 2, "bee": 2, "cat": 2, "dog": 2})
    shutil.copy(folder / "bee" / "1.png", folder / "dog" / "stray.png")
    with pytest.raises(DataError, match=r"folder: 1 images are in both the train and the test split .*"
                                        r"'bee/1.png' \(label 'bee'\) in train and 'dog/stray.png' \(label 'dog'\)"):
        build_dataset("folder", "test", folder)


def test_same_image_under_two_labels_is_refused(tmp_path):
    _images(tmp_path / "imgs", 8)
    rows = [f"imgs/{k}.png,cls{k // 2},{'train' if k < 4 else 'test'}" for k in range(8)]
    path = _csv(tmp_path, rows + ["imgs/0.png,cls1,train"])
    with pytest.raises(DataError, match=r"1 images have two or more labels .* line 2 \('imgs/0.png'\) "
                                        r"\(label 'cls0'\) and line 10 \('imgs/0.png'\) \(label 'cls1'\)"):
        build_dataset("csv", "train", path)


def test_symlink_into_another_class_folder_is_two_labels(tmp_path):
    folder = make_folder(tmp_path, {"ant": 2, "bee": 2, "cat": 2, "dog": 2})
    (folder / "bee" / "ant-0.png").symlink_to(folder / "ant" / "0.png")
    with pytest.raises(DataError, match="1 images have two or more labels"):
        build_dataset("folder", "train", folder)


def test_query_gallery_flags_of_copies_are_merged(tmp_path):
    _images(tmp_path / "imgs", 8)
    rows = [f"imgs/{k}.png,{k // 2},train,," for k in range(4)]
    rows += ["imgs/4.png,10,test,1,0", "imgs/5.png,10,test,1,1", "imgs/6.png,11,test,1,1", "imgs/7.png,11,test,1,1",
             "imgs/4.png,10,test,0,1"]
    path = _csv(tmp_path, rows, header="path,label,split,is_query,is_gallery")
    test = build_dataset("csv", "test", path)
    assert len(test) == 4
    assert test.is_query.tolist() == [True] * 4 and test.is_gallery.tolist() == [True] * 4
    assert len(build_dataset("csv", "gallery", path)) == 4


def test_only_files_of_equal_size_are_hashed_and_only_once(tmp_path, monkeypatch):
    sizes = [write_image(tmp_path / f"{k}.png", seed=k, size=4 + k).stat().st_size for k in range(6)]
    assert len(set(sizes)) == 6
    same = [write_image(tmp_path / f"s{k}.bmp", seed=k, size=6) for k in range(2)]  # BMP: size from the shape
    calls = []
    real = hashlib.sha1
    monkeypatch.setattr(hashlib, "sha1", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    paths = [str(tmp_path / f"{k}.png") for k in range(6)] + [str(p) for p in same]
    keys = dedup.content_keys(paths)
    assert len(set(keys)) == 8 and len(calls) == 2
    dedup.content_keys(paths)
    assert len(calls) == 2  # cached by (path, size, mtime)
    shutil.copy(same[0], same[1])
    keys = dedup.content_keys(paths)
    assert keys[6] == keys[7] and len(calls) == 3
