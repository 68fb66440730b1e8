"""Unreadable images are skipped and counted, never a crash or a hang."""

from __future__ import annotations

import logging
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from fabricate import make_folder, write_image
from lossensemble.data import SafeImageReader, build_dataset, collate_batch


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_bomb(path: Path, side: int = 100_000) -> Path:
    """A few-hundred-byte PNG whose header claims side x side pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * (side + 1) * 4)  # a few rows; the header is what matters
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data)
                     + _png_chunk(b"IEND", b""))
    return path


def add_bad_files(folder: Path) -> list[Path]:
    """Five unreadable files with image extensions in the class folder 'ant'."""
    good = write_image(folder / "tmp.jpg", seed=1, size=64).read_bytes()
    (folder / "tmp.jpg").unlink()
    bad = [folder / "ant" / name for name in ("zero.jpg", "truncated.jpg", "text.png", "random.jpg", "bomb.png")]
    bad[0].write_bytes(b"")
    bad[1].write_bytes(good[: len(good) // 2])
    bad[2].write_text("this is not an image\n" * 10)
    bad[3].write_bytes(bytes(range(256)) * 4)
    write_bomb(bad[4])
    return bad


@pytest.fixture
def messy(tmp_path):
    folder = make_folder(tmp_path, {"ant": 3, "bee": 2, "cat": 2, "dog": 2})
    return folder, add_bad_files(folder)


def test_reader_skips_each_kind_of_bad_file(messy, caplog):
    folder, bad = messy
    reader = SafeImageReader()
    with caplog.at_level(logging.WARNING, logger="lossensemble.data"):
        start = time.perf_counter()
        results = [reader.read(str(p)) for p in bad]
        assert time.perf_counter() - start < 5  # the bomb is refused from its header, not decoded
    assert results == [None] * 5
    assert reader.num_skipped == 5
    assert reader.bad_files == sorted(str(p) for p in bad)
    assert all(p.name in caplog.text for p in bad)
    assert "decompression bomb" in caplog.text.lower() or "DecompressionBomb" in caplog.text
    good = reader.read(str(folder / "ant" / "0.png"))
    assert good is not None and good.mode == "RGB" and good.size == (12, 12)


def test_warned_once_per_file_but_counted_every_time(messy, caplog):
    _, bad = messy
    reader = SafeImageReader()
    with caplog.at_level(logging.WARNING, logger="lossensemble.data"):
        for _ in range(3):
            reader.read(str(bad[0]))
    assert reader.num_skipped == 3
    assert len([r for r in caplog.records if "zero.jpg" in r.getMessage()]) == 1


def test_pixel_limit_option(tmp_path):
    path = write_image(tmp_path / "a.png", size=12)
    assert SafeImageReader(max_pixels=100).read(str(path)) is None
    assert SafeImageReader(max_pixels=144).read(str(path)) is not None


def test_count_is_exact_across_threads(messy):
    _, bad = messy
    reader = SafeImageReader()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda p: reader.read(str(p)), bad * 20))
    assert reader.num_skipped == 100


@pytest.mark.parametrize("workers", [0, 1])
def test_dataloader_skips_and_counts(messy, workers):
    folder, bad = messy
    ds = build_dataset("folder", "all", folder, image_size=8)
    assert len(ds) == 9 + len(bad)
    loader = DataLoader(ds, batch_size=4, shuffle=False, collate_fn=collate_batch, num_workers=workers)
    seen, skipped, labels = 0, 0, []
    for images, batch_labels, num_skipped in loader:
        assert images.shape[0] == batch_labels.shape[0]
        if images.numel():
            assert images.shape[1:] == (3, 8, 8)
        seen += images.shape[0]
        skipped += num_skipped
        labels += batch_labels.tolist()
    assert (seen, skipped) == (9, 5)
    assert labels.count(0) == 3  # the three good 'ant' images


def test_collate_batch():
    item = (torch.zeros(3, 4, 4), 2)
    images, labels, skipped = collate_batch([item, None, (torch.ones(3, 4, 4), 5), None])
    assert images.shape == (2, 3, 4, 4) and labels.tolist() == [2, 5] and skipped == 2
    assert labels.dtype == torch.long
    images, labels, skipped = collate_batch([None, None])
    assert images.numel() == 0 and labels.numel() == 0 and skipped == 2
