"""Image retrieval from the command line: list image files, build a faiss index, search it.

faiss does the search (an exact ``IndexFlatIP`` over the L2-normalised embeddings,
so scores are cosine similarities; distances reported are ``1 - cosine``). Written
here: the index folder layout and the glue to an exported model.

Design decision: the index folder is **self-contained**: the exported model is
copied into ``INDEX_DIR/model/`` (its two files, checksum verified), so the index can
be moved or shipped and a query is always embedded by exactly the model that built
the index; the original model folder is recorded in ``index.json`` for information.

Layout::

    INDEX_DIR/
      index.faiss    faiss.write_index format (written atomically)
      paths.txt      one absolute image path per line, row i = faiss id i
      index.json     format, count, dim, metric, embedding, model reference, skipped files
      model/         copy of the exported model (model.safetensors + model.json)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from lossensemble.errors import UserError
from lossensemble.inference.model import CONFIG_FILE, MODEL_FILE, load_model
from lossensemble.inference.model import model_dir as model_dir_of
from lossensemble.io import atomic_write_bytes, atomic_write_text, read_json

__all__ = ["IMAGE_EXTENSIONS", "INDEX_FORMAT", "list_images", "build_index", "ImageIndex"]

INDEX_FORMAT = "lossensemble-index"
FORMAT_VERSION = 1
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)


def list_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named directly (any extension) or found recursively in folders (image extensions only).

    Folder contents are sorted; duplicates are kept once, in first-seen order. A path
    that does not exist is a :class:`UserError`.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            found = [p]
        else:
            raise UserError(f"not found: {p}")
        for f in found:
            f = f.resolve()
            if f not in seen:
                seen.add(f)
                out.append(f)
    return out


def _write_paths(path: Path, paths: Sequence[str]) -> None:
    atomic_write_text(path, "".join(f"{p}\n" for p in paths))


def _copy_model(model_dir: Path, dest: Path) -> None:
    for name in (MODEL_FILE, CONFIG_FILE):  # model.json last: its presence means a complete copy
        atomic_write_bytes(dest / name, (model_dir / name).read_bytes())


def build_index(
    model_dir: str | Path,
    images: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    batch_size: int = 64,
    progress: bool = False,
    device: str = "cpu",
) -> dict[str, Any]:
    """Embed every image under ``images`` with the model and write an index folder; returns index.json's data."""
    import faiss

    from lossensemble import __version__

    src = model_dir_of(model_dir)
    model = load_model(src, device=device)
    inputs = [images] if isinstance(images, (str, Path)) else list(images)
    files = list_images(inputs)
    if not files:
        raise UserError(f"no image files found in {', '.join(map(str, inputs))}")
    bad_names = [str(f) for f in files if "\n" in str(f) or "\r" in str(f)]
    files = [f for f in files if str(f) not in bad_names]
    result = model.embed_files(files, batch_size=batch_size, progress=progress)
    if len(result.paths) == 0:
        raise UserError(f"none of the {len(files)} image files could be read")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    index = faiss.IndexFlatIP(model.output_dim)
    index.add(np.ascontiguousarray(result.embeddings, dtype=np.float32))
    _copy_model(src, out / "model")
    atomic_write_bytes(out / "index.faiss", faiss.serialize_index(index).tobytes())
    _write_paths(out / "paths.txt", result.paths)
    info = {
        "format": INDEX_FORMAT,
        "format_version": FORMAT_VERSION,
        "lossensemble_version": __version__,
        "count": int(index.ntotal),
        "dim": int(model.output_dim),
        "metric": "cosine",
        "distance": "1 - cosine similarity",
        "faiss_index": "IndexFlatIP",
        "embedding": model.embedding,
        "model": "model",
        "model_source": str(src.resolve()),
        "model_sha256": model.spec["tensors_sha256"],
        "images": [str(Path(p).resolve()) for p in inputs],
        "skipped": result.skipped + bad_names,
    }
    atomic_write_text(out / "index.json", json.dumps(info, indent=2) + "\n")  # last: marks a complete index
    return info


class ImageIndex:
    """An index folder opened for search: ``search(image, k)`` -> nearest items, nearest first."""

    def __init__(self, index_dir: str | Path, device: str = "cpu") -> None:
        import faiss

        root = Path(index_dir)
        meta_path = root / "index.json"
        if not meta_path.is_file():
            raise UserError(f"{root} is not an index folder (no index.json; build one with 'lossensemble index')")
        info = read_json(meta_path)
        if not isinstance(info, dict) or info.get("format") != INDEX_FORMAT:
            raise UserError(f"{meta_path}: not a lossensemble index description")
        self.root = root
        self.info = info
        self.model = load_model(root / info.get("model", "model"), device=device)
        try:
            self.index = faiss.read_index(str(root / "index.faiss"))
        except Exception as exc:  # faiss raises RuntimeError on missing or damaged files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{root / 'index.faiss'}: cannot be read as a faiss index ({first})") from None
        try:
            self.paths = (root / "paths.txt").read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{root / 'paths.txt'}: cannot be read ({exc})") from None
        if self.index.ntotal != len(self.paths) or self.index.ntotal != info.get("count"):
            raise UserError(f"{root}: index holds {self.index.ntotal} vectors but paths.txt lists "
                            f"{len(self.paths)} and index.json says {info.get('count')}")
        if self.index.d != self.model.output_dim:
            raise UserError(f"{root}: index dimension {self.index.d} does not match the model's "
                            f"{self.model.output_dim}")

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search_vectors(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(distances, ids) of the ``k`` nearest items of each query row (``1 - cosine``, nearest first)."""
        if k < 1:
            raise UserError(f"--k must be >= 1, got {k}")
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.index.d)
        sims, ids = self.index.search(q, min(int(k), len(self)))
        return np.maximum(1.0 - sims, 0.0), ids

    def search(self, query: str | Path | Any, k: int = 10) -> list[dict[str, Any]]:
        """The ``k`` nearest indexed images of one query image (path or PIL image): ``[{"path", "distance"}]``."""
        emb = self.model.embed_images([query], batch_size=1)
        dist, ids = self.search_vectors(emb, k)
        return [{"path": self.paths[i], "distance": float(d)} for d, i in zip(dist[0], ids[0]) if i >= 0]

