"""Index folders: bound to their model, only read inside, flat/hnsw/ivf, append, JSON-lines paths."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from inference_helpers import clustered, write_images
from lossensemble.errors import UserError
from lossensemble.inference import INDEX_TYPES, ImageIndex, InferenceModel, build_index, list_images
from lossensemble.inference.ann import apply_search_parameters, choose_nlist, new_index, search_parameters


def _recall_at_10(kind: str, base: np.ndarray, queries: np.ndarray, exact: np.ndarray) -> float:
    index, params = new_index(kind, base)
    index.add(base)
    apply_search_parameters(index, search_parameters(kind, params, 10))
    _, ids = index.search(queries, 10)
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)]))


def test_hnsw_and_ivf_recall_against_flat():
    x = clustered(5_200, 32, clusters=100, seed=0)
    base, queries = x[:5_000], x[5_000:]
    flat, params = new_index("flat", base)
    flat.add(base)
    _, exact = flat.search(queries, 10)
    assert params == {}
    for kind in ("hnsw", "ivf"):
        recall = _recall_at_10(kind, base, queries, exact)
        assert recall >= 0.9, f"{kind}: recall@10 {recall:.3f}"
    assert choose_nlist(5_000) == 5_000 // 39 and choose_nlist(100_000) == 1265 and choose_nlist(10) == 1


@pytest.mark.parametrize("kind", INDEX_TYPES)
def test_type_is_stored_and_used_by_search(tiny_model, images, tmp_path, kind):
    info = build_index(tiny_model, images, tmp_path / "idx", index_type=kind, batch_size=8)
    stored = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert stored["type"] == kind and stored["count"] == 30 and stored["format_version"] == 2
    assert stored["faiss_index"] == {"flat": "IndexFlatIP", "hnsw": "IndexHNSWFlat", "ivf": "IndexIVFFlat"}[kind]
    assert set(stored["params"]) == {"flat": set(), "hnsw": {"M", "ef_construction", "ef_search"},
                                     "ivf": {"nlist", "nprobe"}}[kind]
    assert info["added"] == 30
    idx = ImageIndex(tmp_path / "idx")
    assert idx.type == kind and type(idx.index).__name__ == stored["faiss_index"]
    files = [str(f) for f in list_images([images])]
    assert idx.paths == files
    for q in (files[0], files[13], files[29]):
        hits = idx.search(q, k=5)
        assert len(hits) == 5 and hits[0]["path"] == q and hits[0]["distance"] == pytest.approx(0, abs=1e-4)
        assert [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)
    assert len(idx.search(files[0], k=100)) == 30  # k above the count: every item once
    if kind == "hnsw":
        assert idx.search(files[3], k=3, ef_search=200)[0]["path"] == files[3]
        with pytest.raises(UserError, match="--nprobe applies to ivf"):
            idx.search(files[3], nprobe=2)
    if kind == "ivf":
        assert stored["params"]["nlist"] == 1  # 30 vectors: too few to train more cells
        assert idx.search(files[3], k=3, nprobe=5)[0]["path"] == files[3]
        with pytest.raises(UserError, match="--ef-search applies to hnsw"):
            idx.search(files[3], ef_search=10)


def _flat_neighbours(index_dir, queries):
    idx = ImageIndex(index_dir)
    return [[h["path"] for h in idx.search(q, k=30)] for q in queries]


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_append_round_trip(tiny_model, other_model, tmp_path, monkeypatch, kind):
    folder = tmp_path / "images"
    files = write_images(folder, n_classes=5, per_class=10, seed=3)
    first = [f for f in files if f.parent.name in ("class00", "class01", "class02")]
    build_index(tiny_model, [str(f) for f in first], tmp_path / "idx", index_type=kind)
    embedded: list[str] = []
    real = InferenceModel.embed_files

    def spy(self, paths, *args, **kwargs):
        paths = [str(p) for p in paths]
        embedded.extend(paths)
        return real(self, paths, *args, **kwargs)

    monkeypatch.setattr(InferenceModel, "embed_files", spy)
    info = build_index(tiny_model, folder, tmp_path / "idx", append=True)
    assert info["added"] == 20 and info["count"] == 50 and info["type"] == kind
    assert sorted(embedded) == sorted(str(f.resolve()) for f in files if f not in first)  # nothing re-embedded
    embedded.clear()
    again = build_index(tiny_model, folder, tmp_path / "idx", append=True)
    assert again["added"] == 0 and embedded == []
    idx = ImageIndex(tmp_path / "idx")
    assert len(idx) == 50 and idx.paths[:30] == [str(f.resolve()) for f in first]
    assert json.loads((tmp_path / "idx" / "index.json").read_text())["params"] == idx.params
    # same neighbours (exact search over all 50) as an index built in one go
    build_index(tiny_model, folder, tmp_path / "whole", index_type="flat")
    queries = [str(files[i].resolve()) for i in (0, 25, 49)]
    if kind == "flat":
        assert _flat_neighbours(tmp_path / "idx", queries) == _flat_neighbours(tmp_path / "whole", queries)
    else:
        assert [r[0] for r in _flat_neighbours(tmp_path / "idx", queries)] == queries
    with pytest.raises(UserError, match="not the model that built"):
        build_index(other_model, folder, tmp_path / "idx", append=True)
    with pytest.raises(UserError, match=f"is a {kind} index, not hnsw"):
        build_index(tiny_model, folder, tmp_path / "idx", append=True, index_type="hnsw")
    with pytest.raises(UserError, match="holds no index to append to"):
        build_index(tiny_model, folder, tmp_path / "nothing", append=True)


def test_swapped_model_is_refused(tiny_model, other_model, images, tmp_path):
    build_index(tiny_model, images, tmp_path / "idx")
    copy = tmp_path / "idx" / "model"
    shutil.rmtree(copy)
    shutil.copytree(other_model, copy)  # a valid model, but not the one the vectors came from
    with pytest.raises(UserError, match="is not the model this index was built with"):
        ImageIndex(tmp_path / "idx")


def test_model_entry_outside_the_index_folder_is_refused(tiny_model, images, tmp_path):
    idx = tmp_path / "idx"
    build_index(tiny_model, images, idx)
    meta = idx / "index.json"
    info = json.loads(meta.read_text())
    shutil.copytree(idx / "model", tmp_path / "elsewhere")
    for entry in ("../elsewhere", str(tmp_path / "elsewhere"), "model/../../elsewhere", "", 3):
        meta.write_text(json.dumps({**info, "model": entry}))
        with pytest.raises(UserError, match="outside the index folder|relative path inside"):
            ImageIndex(idx)
    (idx / "link").symlink_to(tmp_path / "elsewhere")
    meta.write_text(json.dumps({**info, "model": "link"}))
    with pytest.raises(UserError, match="leads outside the index folder"):
        ImageIndex(idx)
    meta.write_text(json.dumps(info))
    assert len(ImageIndex(idx)) == 30


def test_paths_with_newlines_and_separators_round_trip(tiny_model, images, tmp_path):
    folder = tmp_path / "odd"
    shutil.copytree(images / "class00", folder)
    names = ["a\nb.png", "c\rd.png", "e\u2028f.png", "g\\\"h.png"]
    for name, src in zip(names, sorted(folder.iterdir())):
        src.rename(folder / name)
    build_index(tiny_model, folder, tmp_path / "idx")
    lines = (tmp_path / "idx" / "paths.jsonl").read_bytes().split(b"\n")
    assert len(lines) == 6 and lines[-1] == b"" and all(line.isascii() for line in lines)
    idx = ImageIndex(tmp_path / "idx")
    assert len(idx) == 5 and sorted(idx.paths) == sorted(str((folder / n).resolve()) for n in names + ["04.png"])
    for name in names:
        assert idx.search(folder / name, k=1)[0]["path"] == str((folder / name).resolve())


def test_version_1_index_with_paths_txt_is_still_read_and_upgraded_by_append(tiny_model, images, tmp_path):
    idx = tmp_path / "idx"
    build_index(tiny_model, images / "class00", idx)
    info = json.loads((idx / "index.json").read_text())
    paths = ImageIndex(idx).paths
    for key in ("type", "params"):
        del info[key]
    (idx / "index.json").write_text(json.dumps({**info, "format_version": 1}))
    (idx / "paths.txt").write_text("".join(p + "\n" for p in paths))
    (idx / "paths.jsonl").unlink()
    old = ImageIndex(idx)
    assert old.type == "flat" and old.paths == paths and old.search(paths[2], k=1)[0]["path"] == paths[2]
    info = build_index(tiny_model, images / "class01", idx, append=True)
    assert info["added"] == 5 and info["format_version"] == 2
    assert not (idx / "paths.txt").exists() and len(ImageIndex(idx).paths) == 10


def test_damaged_index_files_are_one_line_errors(tiny_model, images, tmp_path):
    idx = tmp_path / "idx"
    build_index(tiny_model, images / "class00", idx, index_type="hnsw")
    good = (idx / "paths.jsonl").read_text()
    (idx / "paths.jsonl").write_text(good.replace('"', "", 1))
    with pytest.raises(UserError, match="paths.jsonl, line 1: not a JSON string"):
        ImageIndex(idx)
    (idx / "paths.jsonl").write_text(good + '"/extra.png"\n')
    with pytest.raises(UserError, match="lists 6"):
        ImageIndex(idx)
    (idx / "paths.jsonl").write_text(good)
    info = json.loads((idx / "index.json").read_text())
    (idx / "index.json").write_text(json.dumps({**info, "type": "ivf", "params": {"nlist": 1}}))
    with pytest.raises(UserError, match="holds a IndexHNSWFlat index but index.json says type 'ivf'"):
        ImageIndex(idx)
    (idx / "index.json").write_text(json.dumps({**info, "type": "lsh"}))
    with pytest.raises(UserError, match="unknown index type 'lsh'"):
        ImageIndex(idx)
    (idx / "index.json").write_text(json.dumps({k: v for k, v in info.items() if k != "model_sha256"}))
    with pytest.raises(UserError, match="no model_sha256"):
        ImageIndex(idx)
    with pytest.raises(UserError, match="unknown index type 'annoy'"):
        build_index(tiny_model, images, tmp_path / "x", index_type="annoy")


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_search_parameters_take_effect_with_faiss_torch_utils_loaded(tiny_model, images, tmp_path, kind):
    import faiss
    import faiss.contrib.torch_utils  # noqa: F401  (what pytorch-metric-learning imports: Index.search loses params=)

    build_index(tiny_model, images, tmp_path / "idx", index_type=kind)
    idx = ImageIndex(tmp_path / "idx")
    query = str(list_images([images])[7])
    option = {"hnsw": {"ef_search": 200}, "ivf": {"nprobe": 1}}[kind]
    assert idx.search(query, k=3, **option)[0]["path"] == query
    current = (lambda: idx.index.hnsw.efSearch) if kind == "hnsw" else (lambda: faiss.extract_index_ivf(idx.index).nprobe)
    assert current() == next(iter(option.values()))
    idx.search(query, k=3)  # back to index.json's defaults
    assert current() == {"hnsw": idx.params.get("ef_search"), "ivf": idx.params.get("nprobe")}[kind]
