"""Image retrieval from the command line: build a faiss index of image files, append to it, search it.

faiss does the search, on the L2-normalised embeddings with inner product, so scores
are cosine similarities; distances reported are ``1 - cosine``. The faiss index is
exact (``flat``) or approximate (``hnsw``, ``ivf``), see :mod:`lossensemble.inference.ann`.
Written here: the index folder layout and the glue to an exported model.

Design decision: the index folder is **self-contained and bound to its model**: the
exported model is copied into ``INDEX_DIR/model/`` (its two files, checksum verified)
and its tensors' checksum is stored in ``index.json``; opening the index checks that
the copy still has that checksum, so a query is always embedded by exactly the model
that built the index (a swapped model folder is an error, not wrong neighbours).
Only files inside the index folder are read (an index.json naming a model folder
outside it, or a symlink leading out, is refused). The original model folder is
recorded in ``index.json`` for information only.

Layout (format version 2; version 1 indexes, with ``paths.txt``, are still read)::

    INDEX_DIR/
      index.faiss    faiss.write_index format (written atomically)
      paths.jsonl    row i = faiss id i: the image's absolute path as one JSON string per line
      index.json     format, count, dim, metric, type + params, embedding, model reference
                     and checksum, inputs, skipped files; written last (marks a complete index)
      model/         copy of the exported model (model.safetensors + config.json, or model.json
                     for a model exported before config.json)

``build_index(..., append=True)`` adds the images not yet in an existing index
(paths already indexed are not embedded again) with the index's own model copy,
after checking that the model named is the one that built it.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path, PurePath
from typing import Any, Sequence

import numpy as np

from lossensemble.errors import UserError
from lossensemble.inference.ann import (
    FAISS_CLASSES,
    INDEX_TYPES,
    apply_search_parameters,
    check_loaded,
    new_index,
    search_parameters,
)
from lossensemble.inference.listing import IMAGE_EXTENSIONS, list_images, read_paths, write_paths
from lossensemble.inference.layout import (CONFIG_FILE, LEGACY_CONFIG_FILE, MODEL_FILE, ONNX_FILE, check_description,
                                          read_spec, sha256)
from lossensemble.inference.layout import model_dir as model_dir_of
from lossensemble.io import atomic_write_bytes, atomic_write_text, read_json

__all__ = ["IMAGE_EXTENSIONS", "INDEX_FORMAT", "INDEX_TYPES", "list_images", "build_index", "ImageIndex"]

INDEX_FORMAT = "lossensemble-index"
FORMAT_VERSION = 2
PATHS_FILE = "paths.jsonl"
LEGACY_PATHS_FILE = "paths.txt"  # format version 1
MODEL_SUBDIR = "model"


def _inside(root: Path, entry: Any, what: str) -> Path:
    """``root / entry`` where ``entry`` is a relative path that stays inside ``root`` (symlinks resolved)."""
    where = root / "index.json"
    if not isinstance(entry, str) or not entry.strip():
        raise UserError(f"{where}: {what} must be a relative path inside the index folder, got {entry!r}")
    rel = PurePath(entry)
    if rel.is_absolute() or rel.drive or ".." in rel.parts:
        raise UserError(f"{where}: {what} {entry!r} points outside the index folder")
    path = root / rel
    try:
        inside = path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError) as exc:  # symlink loop
        raise UserError(f"{path}: cannot be resolved ({exc})") from None
    if not inside:
        raise UserError(f"{path}: leads outside the index folder (symlink?); refused")
    return path


def _index_type(info: dict, where: Path) -> tuple[str, dict]:
    kind = info.get("type", "flat" if info.get("faiss_index") == "IndexFlatIP" else None)
    if kind not in INDEX_TYPES:
        raise UserError(f"{where}: unknown index type {kind!r} (this lossensemble reads {', '.join(INDEX_TYPES)})")
    params = info.get("params", {})
    if not isinstance(params, dict):
        raise UserError(f"{where}: params must be an object, got {type(params).__name__}")
    return kind, params


def _read_info(root: Path) -> dict:
    meta_path = root / "index.json"
    if not meta_path.is_file():
        raise UserError(f"{root} is not an index folder (no index.json; build one with 'lossensemble index')")
    info = read_json(_inside(root, "index.json", "index.json"))
    if not isinstance(info, dict) or info.get("format") != INDEX_FORMAT:
        raise UserError(f"{meta_path}: not a lossensemble index description")
    if info.get("format_version", 1) not in (1, FORMAT_VERSION):
        raise UserError(f"{meta_path}: format version {info.get('format_version')!r} is not supported "
                        f"(this lossensemble reads versions 1 and {FORMAT_VERSION})")
    if not isinstance(info.get("model_sha256"), str):
        raise UserError(f"{meta_path}: no model_sha256 (the checksum of the model that built the index)")
    return info


#: How an index embeds queries: ``auto`` (onnxruntime when the model copy has model.onnx, onnxruntime is
#: installed and the device is the CPU; else torch), ``torch`` or ``onnx`` (required).
BACKENDS = ("auto", "torch", "onnx")


class ImageIndex:
    """An index folder opened for search: ``search(image, k)`` -> nearest items, nearest first.

    Attributes: ``info`` (index.json), ``type`` and ``params``, ``model`` (what embeds the
    queries: the index's :class:`InferenceModel`, or an
    :class:`~lossensemble.inference.onnx_embedder.OnnxEmbedder` of its model.onnx, see
    ``backend``), ``index`` (the faiss index), ``paths`` (row -> image path).
    """

    def __init__(self, index_dir: str | Path, device: str = "cpu", backend: str = "auto") -> None:
        import faiss

        root = Path(index_dir)
        info = _read_info(root)
        meta_path = root / "index.json"
        self.root = root
        self.info = info
        self._search_lock = threading.Lock()  # search parameters live on the faiss index: set + search together
        self.type, self.params = _index_type(info, meta_path)
        model_path = _inside(root, info.get("model", MODEL_SUBDIR), '"model"')
        self.model = _open_model(model_path, info, device, backend)
        faiss_path = _inside(root, "index.faiss", "index.faiss")
        try:
            self.index = faiss.read_index(str(faiss_path))
        except Exception as exc:  # faiss raises RuntimeError on missing or damaged files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{faiss_path}: cannot be read as a faiss index ({first})") from None
        check_loaded(self.index, self.type, self.params, str(faiss_path))
        paths_name = LEGACY_PATHS_FILE if info.get("format_version", 1) == 1 else PATHS_FILE
        paths_path = _inside(root, paths_name, paths_name)
        self.paths = read_paths(paths_path)
        if self.index.ntotal != len(self.paths) or self.index.ntotal != info.get("count"):
            raise UserError(f"{root}: index holds {self.index.ntotal} vectors but {paths_name} lists "
                            f"{len(self.paths)} and index.json says {info.get('count')}")
        if self.index.d != self.model.output_dim:
            raise UserError(f"{root}: index dimension {self.index.d} does not match the model's "
                            f"{self.model.output_dim}")

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search_vectors(self, queries: np.ndarray, k: int = 10, *, ef_search: int | None = None,
                       nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(distances, ids) of the ``k`` nearest items of each query row (``1 - cosine``, nearest first).

        ``ef_search`` (hnsw) and ``nprobe`` (ivf) override the index's defaults for this
        search; fewer than ``k`` hits in a row are padded with id -1.
        """
        if k < 1:
            raise UserError(f"--k must be >= 1, got {k}")
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.index.d)
        k = min(int(k), len(self))
        params = search_parameters(self.type, self.params, k, ef_search=ef_search, nprobe=nprobe)
        with self._search_lock:
            apply_search_parameters(self.index, params)
            sims, ids = self.index.search(q, k)
        return np.maximum(1.0 - sims, 0.0), ids

    def results(self, distances: np.ndarray, ids: np.ndarray) -> list[dict[str, Any]]:
        """One row of :meth:`search_vectors` as ``[{"path", "distance"}]`` (padding dropped)."""
        return [{"path": self.paths[i], "distance": float(d)} for d, i in zip(distances, ids) if i >= 0]

    def search(self, query: str | Path | Any, k: int = 10, *, ef_search: int | None = None,
               nprobe: int | None = None) -> list[dict[str, Any]]:
        """The ``k`` nearest indexed images of one query image (path or PIL image): ``[{"path", "distance"}]``."""
        emb = self.model.embed_images([query], batch_size=1)
        dist, ids = self.search_vectors(emb, k, ef_search=ef_search, nprobe=nprobe)
        return self.results(dist[0], ids[0])


def _copy_model(model_dir: Path, dest: Path) -> None:
    """Copy the files loading needs: model.safetensors, then the description (its presence means a complete copy).

    The description keeps its name: config.json, or model.json of a model exported
    before config.json; the other name is removed so the copy has only one.
    """
    config = CONFIG_FILE if (model_dir / CONFIG_FILE).is_file() else LEGACY_CONFIG_FILE
    (dest / CONFIG_FILE).unlink(missing_ok=True)
    (dest / LEGACY_CONFIG_FILE).unlink(missing_ok=True)
    (dest / ONNX_FILE).unlink(missing_ok=True)
    for name in (MODEL_FILE, ONNX_FILE, config):
        if name != ONNX_FILE or (model_dir / name).is_file():
            atomic_write_bytes(dest / name, (model_dir / name).read_bytes())


def _open_model(model_path: Path, info: dict, device: str, backend: str):
    """What embeds the index's queries (see :data:`BACKENDS`), checked to be the model that built the index."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    graph_path = model_path / ONNX_FILE
    has_graph = isinstance(info.get("onnx_sha256"), str) and graph_path.is_file()
    if backend == "onnx" or (backend == "auto" and has_graph and str(device) == "cpu"):
        from lossensemble.inference.onnx_embedder import OnnxEmbedder, onnxruntime_available

        if not has_graph:
            raise UserError(f"{model_path}: this index has no ONNX model (export the model with --format onnx "
                            "and build the index from that folder)")
        if onnxruntime_available():
            spec = read_spec(model_path)
            tensors = (model_path / MODEL_FILE).read_bytes()
            if sha256(tensors) != spec["tensors_sha256"] or spec["tensors_sha256"] != info["model_sha256"]:
                raise _not_this_model(model_path, sha256(tensors), info)
            check_description(model_path, spec, tensors)  # a hand-edited config.json, as load_model refuses it
            graph = graph_path.read_bytes()
            if sha256(graph) != info["onnx_sha256"]:
                raise UserError(f"{graph_path}: differs from the ONNX model this index was built with "
                                "(modified after indexing?); rebuild the index with 'lossensemble index'")
            return OnnxEmbedder(spec, graph)
        if backend == "onnx":
            raise UserError("searching with the ONNX model needs onnxruntime: pip install 'lossensemble[onnx]'")
    from lossensemble.inference.model import load_model

    model = load_model(model_path, device=device)  # verifies the tensors against config.json's checksum
    if model.spec["tensors_sha256"] != info["model_sha256"]:
        raise _not_this_model(model_path, model.spec["tensors_sha256"], info)
    return model


def _not_this_model(model_path: Path, found: str, info: dict) -> UserError:
    return UserError(f"{model_path}: is not the model this index was built with (tensors checksum "
                     f"{found[:12]}..., index.json expects {info['model_sha256'][:12]}...); rebuild the index "
                     "with 'lossensemble index'")


def _output_dir(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: exists and is not a folder")
    return out


def _write(out: Path, index, paths: list[str], info: dict) -> dict:
    """index.faiss, paths.jsonl, then index.json (last: marks a complete index); drops a v1 paths.txt."""
    import faiss

    atomic_write_bytes(out / "index.faiss", faiss.serialize_index(index).tobytes())
    write_paths(out / PATHS_FILE, paths)
    atomic_write_text(out / "index.json", json.dumps(info, indent=2) + "\n")
    (out / LEGACY_PATHS_FILE).unlink(missing_ok=True)
    return info


def build_index(
    model_dir: str | Path,
    images: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    index_type: str | None = None,
    append: bool = False,
    batch_size: int = 64,
    progress: bool = False,
    device: str = "cpu",
) -> dict[str, Any]:
    """Embed every image under ``images`` with the model and write an index folder; returns index.json's data.

    ``index_type``: flat (default), hnsw or ivf. With ``append=True``, ``out_dir`` must
    hold an index built by the same model (same tensors checksum); only images whose
    path is not indexed yet are embedded and added (``index_type``, if given, must be
    the index's). The returned data has ``added``: how many images this call indexed.
    """
    from lossensemble import __version__

    if index_type is not None and index_type not in INDEX_TYPES:
        raise UserError(f"unknown index type {index_type!r} (choose from {', '.join(INDEX_TYPES)})")
    src = model_dir_of(model_dir)
    out = _output_dir(out_dir)
    inputs = [images] if isinstance(images, (str, Path)) else list(images)
    if append:
        return _append(src, inputs, out, index_type, batch_size=batch_size, progress=progress, device=device)
    from lossensemble.inference.model import load_model

    model = load_model(src, device=device)
    files = list_images(inputs)
    if not files:
        raise UserError(f"no image files found in {', '.join(map(str, inputs))}")
    result = model.embed_files(files, batch_size=batch_size, progress=progress)
    if len(result.paths) == 0:
        raise UserError(f"none of the {len(files)} image files could be read")
    kind = index_type or "flat"
    vectors = np.ascontiguousarray(result.embeddings, dtype=np.float32)
    index, params = new_index(kind, vectors)
    index.add(vectors)
    out.mkdir(parents=True, exist_ok=True)
    _copy_model(src, out / MODEL_SUBDIR)
    info = {
        "format": INDEX_FORMAT,
        "format_version": FORMAT_VERSION,
        "lossensemble_version": __version__,
        "count": int(index.ntotal),
        "dim": int(model.output_dim),
        "metric": "cosine",
        "distance": "1 - cosine similarity",
        "type": kind,
        "faiss_index": FAISS_CLASSES[kind],
        "params": params,
        "embedding": model.embedding,
        "model": MODEL_SUBDIR,
        "model_source": str(src.resolve()),
        "model_sha256": model.spec["tensors_sha256"],
        "onnx_sha256": sha256((src / ONNX_FILE).read_bytes()) if (src / ONNX_FILE).is_file() else None,
        "images": [str(Path(p).resolve()) for p in inputs],
        "skipped": list(result.skipped),
    }
    _write(out, index, list(result.paths), info)
    return {**info, "added": int(index.ntotal)}


def _append(src: Path, inputs: list, out: Path, index_type: str | None, *, batch_size: int, progress: bool,
            device: str) -> dict[str, Any]:
    from lossensemble import __version__

    if not (out / "index.json").is_file():
        raise UserError(f"--append: {out} holds no index to append to (build one without --append first)")
    spec = read_spec(src)
    existing = ImageIndex(out, device=device, backend="torch")  # embeds many files: torch, batched
    if spec["tensors_sha256"] != existing.info["model_sha256"]:
        raise UserError(f"--append: {src} is not the model that built {out} (tensors checksum "
                        f"{spec['tensors_sha256'][:12]}... vs {existing.info['model_sha256'][:12]}...); "
                        "build a new index instead")
    if index_type is not None and index_type != existing.type:
        raise UserError(f"--append: {out} is a {existing.type} index, not {index_type}")
    indexed = set(existing.paths)
    files = list_images(inputs)
    new = [f for f in files if str(f) not in indexed]
    info = dict(existing.info)
    paths = list(existing.paths)
    skipped: list[str] = []
    if new:
        result = existing.model.embed_files(new, batch_size=batch_size, progress=progress)
        skipped = list(result.skipped)
        if len(result.paths):
            existing.index.add(np.ascontiguousarray(result.embeddings, dtype=np.float32))
            paths += result.paths
    added = len(paths) - len(existing.paths)
    if added == 0 and info.get("format_version") == FORMAT_VERSION:
        return {**info, "skipped": skipped, "added": 0}  # nothing to write
    prior_inputs = [p for p in info.get("images", []) if isinstance(p, str)]
    info.update({
        "format_version": FORMAT_VERSION,
        "lossensemble_version": __version__,
        "count": int(existing.index.ntotal),
        "type": existing.type,
        "faiss_index": FAISS_CLASSES[existing.type],
        "params": existing.params,
        "images": prior_inputs + [p for p in (str(Path(x).resolve()) for x in inputs) if p not in prior_inputs],
        "skipped": sorted({p for p in info.get("skipped", []) if isinstance(p, str)} - set(paths) | set(skipped)),
    })
    _write(out, existing.index, paths, info)
    return {**info, "skipped": skipped, "added": added}
