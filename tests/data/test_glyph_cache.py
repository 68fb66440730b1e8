"""The glyph cache: verified on load (damaged files rebuilt), locked while written, optional when read-only."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lossensemble.data import build_dataset
from lossensemble.data import cache as cache_module
from lossensemble.data import glyphs as glyph_module
from lossensemble.data.glyph_fonts import GlyphClass

BLOCK = {"images_per_class": 4, "render_size": 16, "seed": 1, "progress": False}
SMALL = {"num_train_classes": 3, "num_test_classes": 3, "num_pretrain_classes": 2, "progress": False,
         "render_size": 16}


@pytest.fixture(scope="module")
def classes():
    return glyph_module.load_glyph_pool(progress=False)[:3]


def _render(classes, folder: Path) -> np.ndarray:
    return glyph_module.render_glyph_block(classes, folder=folder, **BLOCK)


def _no_rendering(monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("rendered again despite a good cache file")

    monkeypatch.setattr(glyph_module.GlyphRenderer, "render_class", boom)


def _flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _npz_bytes(images: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images)
    return buffer.getvalue()


def _rewrite_with_check(path: Path, data: bytes) -> None:
    """Content that passes the checksum but does not load as the expected block."""
    path.write_bytes(data)
    cache_module.check_path(path).write_text(json.dumps({"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}))


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "zero bytes": lambda p: p.write_bytes(b""),
    "bit flipped": _flip_bit,
    "check file not JSON": lambda p: cache_module.check_path(p).write_text("{not json"),
    "check file missing": lambda p: cache_module.check_path(p).unlink(),
    "not an npz": lambda p: _rewrite_with_check(p, b"PK\x03\x04 garbage"),
    "wrong shape": lambda p: _rewrite_with_check(p, _npz_bytes(np.zeros((2, 16, 16), dtype=np.uint8))),
}


def test_cache_file_is_written_with_its_checksum(tmp_path, classes):
    images = _render(classes, tmp_path)
    (npz,) = tmp_path.glob("renders-*.npz")
    check = json.loads(cache_module.check_path(npz).read_text())
    assert check == {"size": npz.stat().st_size, "sha256": hashlib.sha256(npz.read_bytes()).hexdigest()}
    with np.load(npz) as data:
        assert np.array_equal(data["images"], images)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_render_cache_is_rebuilt_with_a_warning(tmp_path, classes, damage, monkeypatch, caplog):
    original = _render(classes, tmp_path).copy()
    (npz,) = tmp_path.glob("renders-*.npz")
    DAMAGE[damage](npz)
    with caplog.at_level(logging.WARNING, logger="lossensemble.data"):
        again = _render(classes, tmp_path)
    assert np.array_equal(again, original)
    assert f"rebuilding the damaged cache file {npz}" in caplog.text
    caplog.clear()
    _no_rendering(monkeypatch)  # the rebuilt file is good: read, not rendered, no warning
    with caplog.at_level(logging.WARNING, logger="lossensemble.data"):
        assert np.array_equal(_render(classes, tmp_path), original)
    assert caplog.text == ""


def test_damaged_pool_is_recomputed_even_when_it_is_valid_json(tmp_path, monkeypatch, caplog):
    fake = [GlyphClass("A", (0, 1)), GlyphClass("B", (1, 2)), GlyphClass("C", (0, 2))]
    calls = []
    monkeypatch.setattr(glyph_module, "select_glyph_pool", lambda fonts, progress: calls.append(1) or list(fake))
    assert glyph_module.load_glyph_pool(progress=False, folder=tmp_path) == fake
    (pool,) = tmp_path.glob("pool-" + "?" * 16 + ".json")
    pool.write_text(pool.read_text().replace('"B"', '"X"'))  # still valid JSON, wrong content
    with caplog.at_level(logging.WARNING, logger="lossensemble.data"):
        assert glyph_module.load_glyph_pool(progress=False, folder=tmp_path) == fake
    assert len(calls) == 2 and "rebuilding the damaged cache file" in caplog.text
    pool.write_text('{"settings": ')  # not JSON at all
    assert glyph_module.load_glyph_pool(progress=False, folder=tmp_path) == fake
    assert len(calls) == 3
    assert glyph_module.load_glyph_pool(progress=False, folder=tmp_path) == fake
    assert len(calls) == 3


def test_unwritable_cache_folder_builds_in_memory(tmp_path, monkeypatch, caplog, classes):
    pool = glyph_module.load_glyph_pool(progress=False)
    monkeypatch.setattr(glyph_module, "select_glyph_pool", lambda fonts, progress: list(pool))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LOSSENSEMBLE_CACHE", str(blocker / "cache"))
    with caplog.at_level(logging.WARNING, logger="lossensemble.data"):
        train = build_dataset("glyphs", "train", **SMALL)
        test = build_dataset("glyphs", "test", **SMALL)
    assert train.class_names == [g.char for g in pool[:3]] and test.class_names == [g.char for g in pool[3:6]]
    warnings = [r.getMessage() for r in caplog.records if "cannot write the cache folder" in r.getMessage()]
    assert len(warnings) == 1 and str(blocker / "cache" / "glyphs") in warnings[0]
    assert "\n" not in warnings[0]


def test_read_only_file_system_builds_in_memory(tmp_path, monkeypatch, caplog, classes):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(cache_module, "atomic_write_bytes", read_only)
    with caplog.at_level(logging.WARNING, logger="lossensemble.data"):
        images = _render(classes, tmp_path)
    assert images.shape == (12, 16, 16) and not list(tmp_path.glob("renders-*"))
    assert "Read-only file system" in caplog.text


def test_stale_temporary_files_are_removed_when_writing(tmp_path, classes):
    stale = tmp_path / ".renders-0123.npz.abcd.tmp"
    stale.write_bytes(b"half a file")
    _render(classes, tmp_path)
    assert not stale.exists()


def test_works_without_fcntl(tmp_path, classes, monkeypatch):
    monkeypatch.setitem(sys.modules, "fcntl", None)  # `import fcntl` raises ImportError
    with cache_module.cache_lock(tmp_path) as locked:
        assert locked is False
    first = _render(classes, tmp_path).copy()
    _no_rendering(monkeypatch)
    assert np.array_equal(_render(classes, tmp_path), first)


def _render_in_child(classes, folder, barrier, results):
    calls = []
    original = glyph_module.GlyphRenderer.render_class

    def slow(self, *args, **kwargs):
        calls.append(1)
        time.sleep(0.2)  # long enough for the other process to try the same block
        return original(self, *args, **kwargs)

    glyph_module.GlyphRenderer.render_class = slow
    barrier.wait()
    images = _render(classes, folder)
    results.put((len(calls), hashlib.sha256(images.tobytes()).hexdigest()))


@pytest.mark.skipif(sys.platform == "win32" or "fork" not in multiprocessing.get_all_start_methods(),
                    reason="POSIX locking, forked workers")
def test_two_processes_render_a_block_once(tmp_path, classes):
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_render_in_child, args=(classes, tmp_path, barrier, results)) for _ in range(2)]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    assert sorted(n for n, _ in outcomes) == [0, 3]  # one renders the 3 classes, the other reads its file
    assert outcomes[0][1] == outcomes[1][1]
    assert (tmp_path / cache_module.LOCK_NAME).exists()
