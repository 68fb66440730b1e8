"""Each benchmark loader on a tiny fabricated copy of its official layout: class split, labels, errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from fabricate import make_cars, make_cub, make_flowers, make_inshop, make_pets, make_sop
from lossensemble.data import DATASETS, DatasetNotFound, build_dataset
from lossensemble.errors import DataError


def _cub(tmp: Path) -> Path:
    return make_cub(tmp, {1: 3, 2: 2, 57: 2, 100: 4, 101: 2, 150: 3, 200: 2})


def _cars(tmp: Path) -> Path:
    return make_cars(tmp, {1: 2, 50: 3, 98: 2, 99: 2, 196: 3})


def _sop(tmp: Path) -> Path:
    return make_sop(tmp, {1: 2, 2: 3, 3: 2}, {11319: 2, 11320: 2})


def _inshop(tmp: Path) -> Path:
    rows = [("id_00000001", "train")] * 2 + [("id_00000003", "train")] * 3 + [("id_00000002", "train")] * 2
    rows += [("id_00000007", "query"), ("id_00000007", "gallery"), ("id_00000007", "gallery")]
    rows += [("id_00000005", "query"), ("id_00000005", "gallery")]
    return make_inshop(tmp, rows)


def _flowers(tmp: Path) -> Path:
    return make_flowers(tmp, [1, 1, 51, 51, 2, 2, 52, 102, 102, 52])


def _pets(tmp: Path) -> Path:
    return make_pets(tmp, {1: 2, 19: 3, 5: 2, 20: 2, 37: 2})


# name -> (maker, train class names in label order, test class names, train images, test images)
CASES = {
    "cub200": (_cub, ["001.Bird_1", "002.Bird_2", "057.Bird_57", "100.Bird_100"], ["101.Bird_101", "150.Bird_150", "200.Bird_200"], 11, 7),
    "cars196": (_cars, ["Car model 1", "Car model 50", "Car model 98"], ["Car model 99", "Car model 196"], 7, 5),
    "sop": (_sop, ["1", "2", "3"], ["11319", "11320"], 7, 4),
    "inshop": (_inshop, ["id_00000001", "id_00000002", "id_00000003"], ["id_00000005", "id_00000007"], 7, 5),
    "flowers102": (_flowers, ["1", "2", "51"], ["52", "102"], 6, 4),
    "pets": (_pets, ["breed_name_1", "breed_name_5", "breed_name_19"], ["Breed20", "breed_name_37"], 7, 4),
}


@pytest.fixture(params=sorted(CASES))
def case(request, tmp_path):
    maker, train_names, test_names, n_train, n_test = CASES[request.param]
    root = maker(tmp_path)
    return request.param, root, train_names, test_names, n_train, n_test


def test_standard_class_split(case):
    name, root, train_names, test_names, n_train, n_test = case
    train = build_dataset(name, "train", root)
    test = build_dataset(name, "test", root)
    assert train.class_names == train_names
    assert test.class_names == test_names
    assert (len(train), len(test)) == (n_train, n_test)
    assert set(train.class_names).isdisjoint(test.class_names)
    for ds in (train, test):
        assert ds.labels.dtype == np.int64
        assert sorted(set(ds.labels.tolist())) == list(range(ds.num_classes))
        assert all(Path(p).is_file() for p in ds.paths)
        assert ds.kind == "photo" and ds.name == name
    every = build_dataset(name, "all", root)
    assert len(every) == n_train + n_test
    assert every.num_classes == len(train_names) + len(test_names)


def test_items_are_normalised_tensors(case):
    name, root, *_ = case
    ds = build_dataset(name, "test", root, image_size=16)
    image, label = ds[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert label == ds.labels[0]
    assert ds.get_image(0).mode == "RGB"
    raw, _ = build_dataset(name, "test", root, transform=None)[0]
    assert raw.size == (12, 12)


def test_labels_follow_the_images(case):
    """Each item's label is the class of its own file: fabricated images are filled with a per-class grey."""
    name, root, *_ = case
    ds = build_dataset(name, "all", root, transform=None)
    grey = np.array([np.asarray(ds.get_image(i)).mean() for i in range(len(ds))])
    for label in range(ds.num_classes):
        mine = grey[ds.labels == label]
        others = grey[ds.labels != label]
        assert np.ptp(mine) <= 2, "images of one label come from different classes"
        assert np.abs(others - mine[0]).min() > 2, "two labels share a class"


def test_val_split_is_deterministic_and_disjoint(tmp_path):
    root = make_cub(tmp_path, {c: 2 for c in (*range(1, 11), 101, 102)})
    val = build_dataset("cub200", "val", root, val_fraction=0.3, seed=3)
    train = build_dataset("cub200", "train", root, val_fraction=0.3, seed=3)
    test = build_dataset("cub200", "test", root, val_fraction=0.3, seed=3)
    assert val.num_classes == 3 and train.num_classes == 7
    assert set(val.class_names).isdisjoint(train.class_names)
    assert set(val.class_names).isdisjoint(test.class_names)
    assert set(val.class_names) | set(train.class_names) == set(build_dataset("cub200", "train", root).class_names)
    again = build_dataset("cub200", "val", root, val_fraction=0.3, seed=3)
    assert again.class_names == val.class_names and again.paths == val.paths
    others = {tuple(build_dataset("cub200", "val", root, val_fraction=0.3, seed=s).class_names) for s in range(6)}
    assert len(others) > 1  # the seed chooses the classes
    with pytest.raises(DataError, match="val_fraction > 0"):
        build_dataset("cub200", "val", root)


def test_single_image_classes_are_dropped_from_train(tmp_path, caplog):
    root = make_cub(tmp_path, {1: 1, 2: 3, 3: 1, 4: 2, 101: 1, 102: 2})
    with caplog.at_level(logging.WARNING, logger="lossensemble.data"):
        train = build_dataset("cub200", "train", root)
    assert train.class_names == ["002.Bird_2", "004.Bird_4"]
    assert len(train) == 5
    assert "dropped 2 training classes with a single image" in caplog.text
    # test classes keep their single images (they are queries without positives, not training data)
    assert build_dataset("cub200", "test", root).num_classes == 2


def test_inshop_query_gallery(tmp_path):
    root = _inshop(tmp_path)
    test = build_dataset("inshop", "test", root)
    assert test.is_query.tolist() == [True, False, False, True, False]
    assert (test.is_query ^ test.is_gallery).all()
    query = build_dataset("inshop", "query", root)
    gallery = build_dataset("inshop", "gallery", root)
    assert (len(query), len(gallery)) == (2, 3)
    assert query.class_names == gallery.class_names == test.class_names
    # labels agree between query and gallery: same item, same label
    q = {Path(p).parent.name: int(lab) for p, lab in zip(query.paths, query.labels)}
    g = {Path(p).parent.name: int(lab) for p, lab in zip(gallery.paths, gallery.labels)}
    assert q == g
    assert build_dataset("inshop", "train", root).is_query is None


def test_inshop_partition_in_eval_folder(tmp_path):
    root = make_inshop(tmp_path, [("id_1", "train"), ("id_1", "train"), ("id_2", "query"), ("id_2", "gallery")],
                       eval_subdir=True)
    assert len(build_dataset("inshop", "test", root)) == 2


def test_sop_overlapping_classes_break_the_protocol(tmp_path):
    root = make_sop(tmp_path, {1: 2, 2: 2}, {2: 2, 3: 2})
    with pytest.raises(DataError, match="both the train and the test split"):
        build_dataset("sop", "train", root)


def test_root_may_be_the_parent_folder(tmp_path):
    _cub(tmp_path)
    assert build_dataset("cub200", "test", tmp_path).num_classes == 3


def test_default_root_from_environment(tmp_path, monkeypatch):
    _flowers(tmp_path)
    monkeypatch.setenv("LOSSENSEMBLE_DATA", str(tmp_path))
    assert build_dataset("flowers102", "train").num_classes == 3


@pytest.mark.parametrize("name", sorted(CASES))
def test_missing_folder_says_where_and_how(name, tmp_path):
    source = DATASETS[name]
    with pytest.raises(DatasetNotFound) as info:
        build_dataset(name, "train", tmp_path / "nowhere")
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message
    assert source.how_to_get.split()[0] in message  # the download URL
    assert "\n" not in message


def test_missing_index_file_is_named(tmp_path):
    root = _cub(tmp_path)
    (root / "image_class_labels.txt").unlink()
    with pytest.raises(DatasetNotFound, match="image_class_labels.txt"):
        build_dataset("cub200", "train", root)


def test_malformed_index_line_is_reported(tmp_path):
    root = _cub(tmp_path)
    with open(root / "images.txt", "a") as fh:
        fh.write("999\n")
    with pytest.raises(DataError, match=r"images.txt:\d+: expected 2 fields"):
        build_dataset("cub200", "train", root)
