"""Exact nearest-neighbour search for evaluation and retrieval, done by faiss.

The heavy lifting is faiss's exact flat index (``IndexFlatIP`` for cosine on
L2-normalised vectors, ``IndexFlatL2`` for squared Euclidean distance), on a GPU
when faiss has GPU support and a CUDA device is asked for. When a CUDA device is
asked for but faiss is CPU-only, an exact torch search (matmul + top-k) runs on
that device instead. Queries are searched in chunks, so memory stays
O(queries_per_chunk * k) plus the index: an n x n matrix is never built.

Conventions shared by every backend:

* Distances returned are "smaller is nearer": ``1 - cosine similarity`` for
  ``"cosine"``, squared L2 distance for ``"euclidean"``.
* Each row is ordered by distance, exact ties by smaller gallery index (rows are
  re-sorted after the search because faiss does not order ties by index). Which
  of several exactly tied items make it into the last kept positions is the
  backend's choice.
* When fewer than ``k`` gallery items are available, the row is padded with index
  ``-1`` and distance ``inf``.
* Self-exclusion removes the query's own gallery entry by index (not "drop the
  first column"), so duplicates of the query are still returned as neighbours.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, Protocol

import faiss
import numpy as np
from tqdm.auto import tqdm

from lossensemble.errors import UserError

__all__ = [
    "DISTANCES",
    "Distance",
    "NeighborSearcher",
    "as_float32_matrix",
    "faiss_threads",
    "knn_search",
    "prepare_vectors",
]

log = logging.getLogger(__name__)

Distance = Literal["cosine", "euclidean"]
DISTANCES: tuple[str, ...] = ("cosine", "euclidean")

#: Default number of queries searched at once (faiss blocks BLAS calls by 4096 queries).
DEFAULT_CHUNK_SIZE = 4096
#: Most (query, neighbour) entries held for one chunk; bounds memory when k is large.
DEFAULT_MAX_ENTRIES = 1 << 22
#: Most (query, gallery) scores the torch backend materialises at once.
_TORCH_MAX_SCORES = 1 << 26


def as_float32_matrix(x: Any, name: str = "embeddings") -> np.ndarray:
    """Return ``x`` (numpy array or torch tensor) as a C-contiguous float32 (n, d) array.

    Raises :class:`UserError` when it is not two-dimensional or not numeric.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        x = x.detach().cpu().float().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise UserError(f"{name} must be a 2-D array (n, d), got shape {tuple(arr.shape)}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise UserError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise UserError(f"{name} must be real-valued, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def check_distance(distance: str) -> None:
    """Raise :class:`UserError` unless ``distance`` is one of :data:`DISTANCES`."""
    if distance not in DISTANCES:
        raise UserError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}")


def prepare_vectors(x: np.ndarray, distance: str) -> np.ndarray:
    """Vectors as the index sees them: a float32 copy, L2-normalised (by faiss) for cosine.

    Zero vectors stay zero under cosine (similarity 0 to everything).
    """
    check_distance(distance)
    out = np.array(x, dtype=np.float32, order="C", copy=True)
    if distance == "cosine":
        faiss.normalize_L2(out)
    return out


class _Backend(Protocol):
    """A flat index that returns raw scores (larger is nearer for IP, smaller for L2)."""

    ntotal: int

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


def _cuda_device_id(device: Any) -> int | None:
    """The CUDA ordinal named by ``device`` ("cuda", "cuda:1", torch.device), or None for CPU."""
    if device is None:
        return None
    text = str(device)
    if not text.startswith("cuda"):
        if text != "cpu":
            raise UserError(f"unknown device {text!r}; use 'cpu' or 'cuda[:N]'")
        return None
    return int(text.split(":", 1)[1]) if ":" in text else 0


def _faiss_has_gpu() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class _FaissFlat:
    """faiss exact flat index (CPU, or GPU when faiss was built with CUDA)."""

    def __init__(self, gallery: np.ndarray, inner_product: bool, gpu_id: int | None) -> None:
        d = gallery.shape[1]
        index = faiss.IndexFlatIP(d) if inner_product else faiss.IndexFlatL2(d)
        if gpu_id is not None:
            self._resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._resources, gpu_id, index)
        index.add(gallery)
        self._index = index
        self.ntotal = int(index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, idx = self._index.search(queries, k)
        return scores, idx


class _TorchFlat:
    """Exact search with torch (matmul + top-k), for CUDA devices when faiss is CPU-only."""

    def __init__(self, gallery: np.ndarray, inner_product: bool, device: Any) -> None:
        import torch

        self._torch = torch
        self._device = torch.device(device)
        self._gallery = torch.from_numpy(gallery).to(self._device)
        self._sq_norms = (self._gallery * self._gallery).sum(1)
        self._ip = inner_product
        self.ntotal = int(gallery.shape[0])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        kk = min(k, self.ntotal)
        rows = max(1, _TORCH_MAX_SCORES // max(self.ntotal, 1))
        out_s, out_i = [], []
        for start in range(0, len(queries), rows):
            q = torch.from_numpy(queries[start : start + rows]).to(self._device)
            scores = q @ self._gallery.T
            if not self._ip:  # squared L2 = |q|^2 + |g|^2 - 2 q.g, clamped like faiss
                scores = ((q * q).sum(1, keepdim=True) + self._sq_norms - 2 * scores).clamp_min_(0)
            s, i = torch.topk(scores, kk, dim=1, largest=self._ip, sorted=True)
            out_s.append(s.cpu().numpy())
            out_i.append(i.cpu().numpy().astype(np.int64))
        scores_np, idx_np = np.concatenate(out_s), np.concatenate(out_i)
        if kk < k:  # pad like faiss does
            fill = -np.finfo(np.float32).max if self._ip else np.finfo(np.float32).max
            scores_np = np.pad(scores_np, ((0, 0), (0, k - kk)), constant_values=fill)
            idx_np = np.pad(idx_np, ((0, 0), (0, k - kk)), constant_values=-1)
        return scores_np, idx_np


def _make_backend(gallery: np.ndarray, inner_product: bool, device: Any) -> _Backend:
    gpu_id = _cuda_device_id(device)
    if gpu_id is None:
        return _FaissFlat(gallery, inner_product, None)
    if _faiss_has_gpu():
        return _FaissFlat(gallery, inner_product, gpu_id)
    log.info("faiss has no GPU support here; exact search with torch on %s", device)
    return _TorchFlat(gallery, inner_product, f"cuda:{gpu_id}")


class NeighborSearcher:
    """Exact k-nearest-neighbour search over a fixed gallery (one index, many query chunks).

    ``gallery`` must already be prepared with :func:`prepare_vectors` for the same
    distance, and so must the queries given to :meth:`search`.
    """

    def __init__(self, gallery: np.ndarray, distance: str = "cosine", device: Any = None) -> None:
        check_distance(distance)
        self.distance = distance
        self._ip = distance == "cosine"
        self._backend: _Backend = _make_backend(gallery, self._ip, device)

    @property
    def ntotal(self) -> int:
        """Number of gallery items."""
        return self._backend.ntotal

    def search(
        self, queries: np.ndarray, k: int, self_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest gallery items of each query: (distances float32, indices int64).

        ``self_ids[i]`` is the gallery index to leave out for query ``i`` (its own
        entry), or negative for none. See the module docstring for ordering,
        padding and distance conventions.
        """
        extra = 0 if self_ids is None else 1
        width = min(k + extra, self.ntotal)
        scores, idx = self._backend.search(queries, max(width, 1))
        if self_ids is not None:
            scores, idx = _drop_self(scores, idx, self_ids)
        scores, idx = _sort_ties(scores, idx, larger_is_nearer=self._ip)
        dist = _to_distance(scores, idx, self._ip)
        return _pad_or_cut(dist, idx, k)


def _drop_self(scores: np.ndarray, idx: np.ndarray, self_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own entry (by index), or its last column when it was not retrieved."""
    n, w = idx.shape
    if w == 0:
        return scores, idx
    drop = idx == np.asarray(self_ids, dtype=np.int64)[:, None]
    missing = ~drop.any(axis=1)
    drop[missing, w - 1] = True
    first = drop.argmax(axis=1)  # exactly one column per row after the next line
    keep = np.ones_like(drop)
    keep[np.arange(n), first] = False
    return scores[keep].reshape(n, w - 1), idx[keep].reshape(n, w - 1)


def _sort_ties(
    scores: np.ndarray, idx: np.ndarray, larger_is_nearer: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Re-sort each row by score, then by gallery index (padding -1 stays last)."""
    if idx.shape[1] < 2:
        return scores, idx
    key = -scores if larger_is_nearer else scores
    tie_idx = np.where(idx < 0, np.iinfo(np.int64).max, idx)
    order = np.lexsort((tie_idx, key), axis=1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(idx, order, 1)


def _to_distance(scores: np.ndarray, idx: np.ndarray, inner_product: bool) -> np.ndarray:
    """Raw scores to "smaller is nearer" float32 distances, inf where padded."""
    dist = (1.0 - scores) if inner_product else scores.copy()
    dist = dist.astype(np.float32, copy=False)
    dist[idx < 0] = np.inf
    return dist


def _pad_or_cut(dist: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Give exactly ``k`` columns: cut extra ones, pad missing ones with (inf, -1)."""
    w = idx.shape[1]
    if w >= k:
        return np.ascontiguousarray(dist[:, :k]), np.ascontiguousarray(idx[:, :k])
    pad = ((0, 0), (0, k - w))
    return (
        np.pad(dist, pad, constant_values=np.inf),
        np.pad(idx, pad, constant_values=-1),
    )


@contextmanager
def faiss_threads(threads: int | None) -> Iterator[None]:
    """Run the block with faiss (OpenMP) using ``threads`` threads, restoring the old count after.

    None leaves faiss's setting alone. On a busy shared machine one thread can beat
    two: idle OpenMP threads spin while waiting for a core.
    """
    if threads is None:
        yield
        return
    if int(threads) < 1:
        raise UserError(f"threads must be at least 1, got {threads}")
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(threads))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def resolve_chunk_size(chunk_size: int | None) -> int:
    """The number of queries per search: ``chunk_size``, or the default when None."""
    if chunk_size is None:
        return DEFAULT_CHUNK_SIZE
    if int(chunk_size) < 1:
        raise UserError(f"chunk_size must be at least 1, got {chunk_size}")
    return int(chunk_size)


def iter_chunks(n: int, chunk_size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``chunk_size`` rows covering ``range(n)``."""
    for start in range(0, n, chunk_size):
        yield slice(start, min(start + chunk_size, n))


def knn_search(
    queries: Any,
    gallery: Any,
    k: int,
    distance: str = "cosine",
    exclude_self: bool = False,
    *,
    query_ids: np.ndarray | None = None,
    chunk_size: int | None = None,
    device: Any = None,
    progress: bool = False,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of each query in ``gallery`` (faiss flat index, chunked).

    Args:
        queries: (nq, d) array or tensor.
        gallery: (ng, d) array or tensor; may be the same object as ``queries``.
        k: neighbours per query; rows are padded with (inf, -1) past the gallery size.
        distance: "cosine" (L2-normalise, inner product) or "euclidean" (squared L2).
        exclude_self: leave each query's own gallery entry out. Without
            ``query_ids`` query ``i`` is gallery item ``i`` (self-search).
        query_ids: gallery index of each query (negative: not in the gallery);
            only used with ``exclude_self``.
        chunk_size: queries searched at once (default 4096).
        device: None/"cpu" or "cuda[:N]".
        progress: show a tqdm bar over query chunks.
        threads: faiss threads for this call (default: faiss's own setting).

    Returns:
        (distances, indices): float32 and int64 arrays of shape (nq, k), nearest
        first, ties by smaller gallery index; distances are 1 - cosine or squared L2.
    """
    check_distance(distance)
    q = prepare_vectors(as_float32_matrix(queries, "queries"), distance)
    g = q if gallery is queries else prepare_vectors(as_float32_matrix(gallery, "gallery"), distance)
    if q.shape[1] != g.shape[1]:
        raise UserError(f"queries have dimension {q.shape[1]} but the gallery has {g.shape[1]}")
    if int(k) < 1:
        raise UserError(f"k must be at least 1, got {k}")
    self_ids = _resolve_self_ids(len(q), len(g), exclude_self, query_ids)
    searcher = NeighborSearcher(g, distance, device)
    step = resolve_chunk_size(chunk_size)
    dist = np.empty((len(q), int(k)), np.float32)
    idx = np.empty((len(q), int(k)), np.int64)
    bar = tqdm(total=len(q), unit="query", desc="knn search", disable=None if progress else True)
    with bar, faiss_threads(threads):
        for sl in iter_chunks(len(q), step):
            ids = None if self_ids is None else self_ids[sl]
            dist[sl], idx[sl] = searcher.search(q[sl], int(k), ids)
            bar.update(sl.stop - sl.start)
    return dist, idx


def _resolve_self_ids(
    nq: int, ng: int, exclude_self: bool, query_ids: np.ndarray | None
) -> np.ndarray | None:
    if not exclude_self:
        return None
    if query_ids is None:
        if nq != ng:
            raise UserError("exclude_self without query_ids needs queries and gallery of the same length")
        return np.arange(nq, dtype=np.int64)
    ids = np.asarray(query_ids, dtype=np.int64).reshape(-1)
    if len(ids) != nq:
        raise UserError(f"query_ids has {len(ids)} entries for {nq} queries")
    return ids
