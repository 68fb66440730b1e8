"""Loaders for the standard deep-metric-learning benchmarks, each reading its official layout.

Every loader turns the dataset's own index files into a :class:`Catalog` with the
standard class split (docs/method.md, "Evaluation"); images are only opened when items are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lossensemble.errors import DataError

from .files import FileDatasetSource, read_table
from .registry import register_dataset
from .splits import Catalog

__all__ = ["CUB200", "Cars196", "StanfordOnlineProducts", "InShop", "Flowers102", "OxfordPets"]


def _ranged_catalog(
    paths: list[str], class_ids: list[int], last_train_id: int, names: dict[int, str] | None = None
) -> Catalog:
    """A catalogue whose classes ``1..last_train_id`` are training classes and the rest test classes."""
    ids = np.asarray(class_ids, dtype=np.int64)
    order = [str(c) for c in sorted(set(ids.tolist()))]
    return Catalog(
        classes=ids.astype(str),
        tags=np.where(ids <= last_train_id, "train", "test"),
        class_order=order,
        paths=paths,
        class_names={str(k): v for k, v in names.items()} if names else None,
    )


def _loadmat(path: Path) -> dict[str, Any]:
    from scipy.io import loadmat

    try:
        return loadmat(path, squeeze_me=True)
    except Exception as exc:  # scipy raises several types for a damaged file
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None


@register_dataset("cub200")
class CUB200(FileDatasetSource):
    """Caltech-UCSD Birds-200-2011: classes 1-100 train, 101-200 test."""

    title = "CUB-200-2011"
    directory = "CUB_200_2011"
    required = ("images.txt", "image_class_labels.txt", "images")
    source = "CUB_200_2011/images.txt, image_class_labels.txt, images/"
    how_to_get = "https://www.vision.caltech.edu/datasets/cub_200_2011/"

    def read_catalog(self, root: Path) -> Catalog:
        files = {int(i): p for i, p, *_ in read_table(root / "images.txt", 2)}
        labels = {int(i): int(c) for i, c, *_ in read_table(root / "image_class_labels.txt", 2)}
        missing = sorted(set(files) - set(labels))
        if missing:
            raise DataError(f"{root / 'image_class_labels.txt'}: no class for image ids {missing[:5]}")
        names = None
        if (root / "classes.txt").exists():
            names = {int(c): n for c, n, *_ in read_table(root / "classes.txt", 2)}
        ids = sorted(files)
        return _ranged_catalog(
            [str(root / "images" / files[i]) for i in ids], [labels[i] for i in ids], 100, names
        )


@register_dataset("cars196")
class Cars196(FileDatasetSource):
    """Stanford Cars-196 (cars_annos.mat + car_ims/): classes 1-98 train, 99-196 test."""

    title = "Cars-196"
    directory = "cars196"
    required = ("cars_annos.mat", "car_ims")
    source = "cars196/cars_annos.mat, car_ims/"
    how_to_get = "https://ai.stanford.edu/~jkrause/cars/car_dataset.html (cars_annos.mat and car_ims.tgz)"

    def read_catalog(self, root: Path) -> Catalog:
        mat = _loadmat(root / "cars_annos.mat")
        if "annotations" not in mat:
            raise DataError(f"{root / 'cars_annos.mat'}: no 'annotations' variable")
        annos = np.atleast_1d(mat["annotations"])
        try:
            rel = [str(p) for p in np.atleast_1d(annos["relative_im_path"])]
            classes = [int(c) for c in np.atleast_1d(annos["class"])]
        except (ValueError, KeyError) as exc:
            raise DataError(f"{root / 'cars_annos.mat'}: annotations lack a field ({exc})") from None
        names = None
        if "class_names" in mat:
            names = {i + 1: str(n) for i, n in enumerate(np.atleast_1d(mat["class_names"]))}
        return _ranged_catalog([str(root / p) for p in rel], classes, 98, names)


@register_dataset("sop")
class StanfordOnlineProducts(FileDatasetSource):
    """Stanford Online Products: the official Ebay_train.txt / Ebay_test.txt class split."""

    title = "Stanford Online Products"
    directory = "Stanford_Online_Products"
    required = ("Ebay_train.txt", "Ebay_test.txt")
    source = "Stanford_Online_Products/Ebay_train.txt, Ebay_test.txt"
    how_to_get = "https://cvgl.stanford.edu/projects/lifted_struct/"

    def read_catalog(self, root: Path) -> Catalog:
        paths: list[str] = []
        classes: list[int] = []
        tags: list[str] = []
        for tag, fname in (("train", "Ebay_train.txt"), ("test", "Ebay_test.txt")):
            # columns: image_id class_id super_class_id path (first line is the header)
            for _, class_id, _, rel, *_ in read_table(root / fname, 4, skip=1):
                paths.append(str(root / rel))
                classes.append(int(class_id))
                tags.append(tag)
        order = [str(c) for c in sorted(set(classes))]
        return Catalog(classes=np.asarray(classes).astype(str), tags=np.asarray(tags), class_order=order, paths=paths)


@register_dataset("inshop")
class InShop(FileDatasetSource):
    """DeepFashion In-Shop Clothes Retrieval: official train / query / gallery partition."""

    title = "In-Shop Clothes Retrieval"
    directory = "inshop"
    required = ("list_eval_partition.txt", "img")
    extra_splits = ("query", "gallery")
    source = "inshop/list_eval_partition.txt (or Eval/list_eval_partition.txt), img/"
    how_to_get = "https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html"

    def _has_layout(self, folder: Path) -> bool:
        return (folder / "list_eval_partition.txt").exists() or (folder / "Eval" / "list_eval_partition.txt").exists()

    def check_layout(self) -> Path:
        root = self.dataset_root()
        if (root / "Eval" / "list_eval_partition.txt").exists() and (root / "img").exists():
            return root
        return super().check_layout()

    def read_catalog(self, root: Path) -> Catalog:
        index = root / "list_eval_partition.txt"
        if not index.exists():
            index = root / "Eval" / "list_eval_partition.txt"
        # line 1: number of images; line 2: header "image_name item_id evaluation_status"
        rows = read_table(index, 3, skip=2)
        status = np.asarray([r[2] for r in rows])
        bad = sorted(set(status) - {"train", "query", "gallery"})
        if bad:
            raise DataError(f"{index}: unknown evaluation_status {bad[:3]} (expected train, query, gallery)")
        items = np.asarray([r[1] for r in rows])
        order = sorted(set(items.tolist()))
        return Catalog(
            classes=items,
            tags=np.where(status == "train", "train", "test"),
            class_order=order,
            paths=[str(root / r[0]) for r in rows],
            is_query=status == "query",
            is_gallery=status == "gallery",
        )


@register_dataset("flowers102")
class Flowers102(FileDatasetSource):
    """Oxford Flowers-102 (jpg/ + imagelabels.mat): classes 1-51 train, 52-102 test."""

    title = "Oxford Flowers-102"
    directory = "flowers102"
    required = ("imagelabels.mat", "jpg")
    source = "flowers102/imagelabels.mat, jpg/image_NNNNN.jpg"
    how_to_get = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ (102flowers.tgz and imagelabels.mat)"

    def read_catalog(self, root: Path) -> Catalog:
        mat = _loadmat(root / "imagelabels.mat")
        if "labels" not in mat:
            raise DataError(f"{root / 'imagelabels.mat'}: no 'labels' variable")
        labels = [int(x) for x in np.atleast_1d(mat["labels"]).ravel()]
        paths = [str(root / "jpg" / f"image_{i:05d}.jpg") for i in range(1, len(labels) + 1)]
        return _ranged_catalog(paths, labels, 51)


@register_dataset("pets")
class OxfordPets(FileDatasetSource):
    """Oxford-IIIT Pet (annotations/list.txt + images/): breeds 1-19 train, 20-37 test."""

    title = "Oxford-IIIT Pet"
    directory = "oxford-iiit-pet"
    required = ("annotations/list.txt", "images")
    source = "oxford-iiit-pet/annotations/list.txt, images/"
    how_to_get = "https://www.robots.ox.ac.uk/~vgg/data/pets/ (images.tar.gz and annotations.tar.gz)"

    def read_catalog(self, root: Path) -> Catalog:
        # lines: "Image CLASS-ID SPECIES BREED-ID"; comment lines start with '#'
        rows = read_table(root / "annotations" / "list.txt", 2, comment="#")
        ids = [int(r[1]) for r in rows]
        names = {int(r[1]): r[0].rsplit("_", 1)[0] for r in rows}
        paths = [str(root / "images" / f"{r[0]}.jpg") for r in rows]
        return _ranged_catalog(paths, ids, 19, names)
