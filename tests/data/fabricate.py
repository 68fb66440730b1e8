"""Tiny fabricated copies of each dataset's official on-disk layout (real JPEG/PNG files, real .mat files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def class_value(class_id: int) -> int:
    """The grey level every fabricated image of a class is filled with (distinct per test class)."""
    return (class_id * 37) % 251


def write_image(path: Path, seed: int = 0, size: int = 12, fmt: str | None = None, value: int | None = None) -> Path:
    """A small RGB image (JPEG or PNG by extension): uniform grey ``value``, else random pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if value is None:
        pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    else:
        pixels = np.full((size, size, 3), value, dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def make_cub(root: Path, per_class: dict[int, int]) -> Path:
    """CUB_200_2011 layout: images.txt, image_class_labels.txt, classes.txt, images/<class>/<file>."""
    base = root / "CUB_200_2011"
    images, labels, classes = [], [], []
    image_id = 0
    for cid, n in sorted(per_class.items()):
        folder = f"{cid:03d}.Bird_{cid}"
        classes.append(f"{cid} {folder}")
        for k in range(n):
            image_id += 1
            rel = f"{folder}/Bird_{cid}_{k}.jpg"
            write_image(base / "images" / rel, value=class_value(cid))
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {cid}")
    (base / "images.txt").write_text("\n".join(images) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (base / "classes.txt").write_text("\n".join(classes) + "\n")
    return base


def make_cars(root: Path, per_class: dict[int, int]) -> Path:
    """Cars-196 layout: cars_annos.mat (struct array 'annotations', cell 'class_names') + car_ims/."""
    from scipy.io import savemat

    base = root / "cars196"
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    records = []
    k = 0
    for cid, n in sorted(per_class.items()):
        for _ in range(n):
            k += 1
            rel = f"car_ims/{k:06d}.jpg"
            write_image(base / rel, value=class_value(cid))
            records.append((rel, 1, 1, 10, 10, cid, k % 2))
    annos = np.empty((1, len(records)), dtype=[(f, "O") for f in fields])
    for i, rec in enumerate(records):
        annos[0, i] = rec
    names = np.empty((1, 196), dtype=object)
    names[0, :] = [f"Car model {i}" for i in range(1, 197)]
    savemat(base / "cars_annos.mat", {"annotations": annos, "class_names": names})
    return base


def make_sop(root: Path, train: dict[int, int], test: dict[int, int]) -> Path:
    """Stanford_Online_Products layout: Ebay_train.txt / Ebay_test.txt with a header, images in super-class folders."""
    base = root / "Stanford_Online_Products"
    image_id = 0
    for fname, per_class in (("Ebay_train.txt", train), ("Ebay_test.txt", test)):
        lines = ["image_id class_id super_class_id path"]
        for cid, n in sorted(per_class.items()):
            for k in range(n):
                image_id += 1
                rel = f"bicycle_final/{cid}_{k}.JPG"
                write_image(base / rel, fmt="JPEG", value=class_value(cid))
                lines.append(f"{image_id} {cid} 1 {rel}")
        (base / fname).write_text("\n".join(lines) + "\n")
    return base


def make_inshop(root: Path, rows: list[tuple[str, str]], eval_subdir: bool = False) -> Path:
    """In-shop layout: list_eval_partition.txt (count line, header, rows) + img/...; rows = (item_id, status)."""
    base = root / "inshop"
    lines = [str(len(rows)), "image_name item_id evaluation_status"]
    for k, (item, status) in enumerate(rows):
        rel = f"img/WOMEN/Dresses/{item}/{k:02d}_1_front.jpg"
        write_image(base / rel, value=class_value(int(item.rsplit("_", 1)[-1])))
        lines.append(f"{rel}    {item}    {status}")
    index = base / "Eval" / "list_eval_partition.txt" if eval_subdir else base / "list_eval_partition.txt"
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text("\n".join(lines) + "\n")
    return base


def make_flowers(root: Path, labels: list[int]) -> Path:
    """Flowers-102 layout: imagelabels.mat ('labels' 1xN) + jpg/image_00001.jpg ..."""
    from scipy.io import savemat

    base = root / "flowers102"
    for i in range(1, len(labels) + 1):
        write_image(base / "jpg" / f"image_{i:05d}.jpg", value=class_value(labels[i - 1]))
    savemat(base / "imagelabels.mat", {"labels": np.asarray([labels], dtype=np.uint8)})
    return base


def make_pets(root: Path, per_class: dict[int, int]) -> Path:
    """Oxford-IIIT Pet layout: annotations/list.txt (comment header, 'Name CLASS-ID SPECIES BREED-ID') + images/."""
    base = root / "oxford-iiit-pet"
    lines = ["#Image CLASS-ID SPECIES BREED ID", "#ID: 1:37 Class ids", "#SPECIES: 1:Cat 2:Dog"]
    for cid, n in sorted(per_class.items()):
        breed = f"breed_name_{cid}" if cid % 2 else f"Breed{cid}"
        for k in range(n):
            name = f"{breed}_{k + 1}"
            write_image(base / "images" / f"{name}.jpg", value=class_value(cid))
            lines.append(f"{name} {cid} {1 + cid % 2} {cid}")
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    (base / "annotations" / "list.txt").write_text("\n".join(lines) + "\n")
    return base


def make_folder(root: Path, per_class: dict[str, int]) -> Path:
    """An image folder: root/<class>/<k>.png."""
    base = root / "images"
    for c, (name, n) in enumerate(sorted(per_class.items())):
        for k in range(n):
            write_image(base / name / f"{k}.png", seed=c * 100 + k)
    return base
