"""The faiss index behind an index folder: exact or approximate, always inner product on unit vectors.

faiss does the work; written here is only the choice of index and parameters:

* ``flat``: ``IndexFlatIP``, exact (every vector compared); no parameters.
* ``hnsw``: ``IndexHNSWFlat`` with ``METRIC_INNER_PRODUCT``: a graph with ``M``
  links per vector, built with ``efConstruction`` and searched with ``efSearch``
  candidates (at least ``k``). No training; vectors can be added at any time.
* ``ivf``: ``IndexIVFFlat`` with ``METRIC_INNER_PRODUCT``: ``nlist`` k-means cells
  (trained on the vectors being indexed) and ``nprobe`` cells visited per query.
  ``nlist`` ~ 4 sqrt(n), at most n / 39 (faiss wants >= 39 training points per
  cell); ``nprobe`` ~ 2 sqrt(nlist), at least 16. Vectors appended later are assigned
  to the cells trained at build time.

The parameters are stored in ``index.json`` (``type``, ``params``); the search-time
ones (``ef_search``, ``nprobe``) are defaults that a search can override. They are set
on the index before each search (:func:`apply_search_parameters`), not passed as
``search(..., params=)``: pytorch-metric-learning imports faiss.contrib.torch_utils,
whose ``Index.search`` replacement has no ``params`` argument. The index object thus
holds the last search's values; :class:`~lossensemble.inference.index.ImageIndex`
sets and searches under one lock so that concurrent searches do not mix them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lossensemble.errors import UserError

__all__ = ["INDEX_TYPES", "FAISS_CLASSES", "choose_nlist", "new_index", "check_loaded", "search_parameters",
           "apply_search_parameters"]

INDEX_TYPES = ("flat", "hnsw", "ivf")
FAISS_CLASSES = {"flat": "IndexFlatIP", "hnsw": "IndexHNSWFlat", "ivf": "IndexIVFFlat"}
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 64
IVF_MIN_POINTS_PER_CELL = 39


def choose_nlist(n: int) -> int:
    """IVF cells for ``n`` vectors: about 4 sqrt(n), with at least 39 training points per cell."""
    return max(1, min(int(round(4 * math.sqrt(n))), n // IVF_MIN_POINTS_PER_CELL))


def default_nprobe(nlist: int) -> int:
    """Cells visited per query by default: about 2 sqrt(nlist), at least 16 (at most nlist)."""
    return min(nlist, max(16, int(round(2 * math.sqrt(nlist)))))


def new_index(kind: str, vectors: np.ndarray) -> tuple[Any, dict[str, int]]:
    """An empty faiss index of ``kind`` for ``vectors`` (trained on them for ivf) and its parameters."""
    import faiss

    if kind not in INDEX_TYPES:
        raise UserError(f"unknown index type {kind!r} (choose from {', '.join(INDEX_TYPES)})")
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    if kind == "flat":
        return faiss.IndexFlatIP(dim), {}
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        return index, {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH}
    nlist = choose_nlist(n)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    if nlist == 1:  # under 78 vectors: one cell holding everything (k-means on so few points only warns)
        quantizer.add(np.zeros((1, dim), np.float32))
        index.is_trained = True
    else:
        index.train(x)
    return index, {"nlist": nlist, "nprobe": default_nprobe(nlist)}


def check_loaded(index: Any, kind: str, params: dict, where: str) -> None:
    """Refuse a faiss index whose class or metric is not what index.json says."""
    import faiss

    want = FAISS_CLASSES[kind]
    if type(index).__name__ != want or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise UserError(f"{where}: holds a {type(index).__name__} index but index.json says type {kind!r} "
                        f"({want}, inner product)")
    if kind == "ivf" and int(index.nlist) != params.get("nlist"):
        raise UserError(f"{where}: has {index.nlist} IVF cells but index.json says {params.get('nlist')}")


def search_parameters(kind: str, params: dict, k: int, *, ef_search: int | None = None,
                      nprobe: int | None = None):
    """faiss ``SearchParameters`` for one search (None for flat); an option of another type is a UserError.

    ``ef_search`` is raised to ``k`` (HNSW returns at most efSearch good candidates);
    ``nprobe`` is capped at ``nlist`` (visiting every cell is an exact search).
    """
    import faiss

    for name, value, applies in (("--ef-search", ef_search, "hnsw"), ("--nprobe", nprobe, "ivf")):
        if value is None:
            continue
        if kind != applies:
            raise UserError(f"{name} applies to {applies} indexes; this index is {kind}")
        if int(value) < 1:
            raise UserError(f"{name} must be >= 1, got {value}")
    if kind == "hnsw":
        ef = int(ef_search if ef_search is not None else params.get("ef_search", HNSW_EF_SEARCH))
        return faiss.SearchParametersHNSW(efSearch=max(ef, int(k)))
    if kind == "ivf":
        nlist = int(params["nlist"])
        probe = int(nprobe if nprobe is not None else params.get("nprobe", default_nprobe(nlist)))
        return faiss.SearchParametersIVF(nprobe=min(probe, nlist))
    return None


def apply_search_parameters(index, params) -> None:
    """Set :func:`search_parameters`' values on ``index`` itself (``None``: nothing to set).

    Not passed as ``search(..., params=)``: faiss.contrib.torch_utils (imported by
    pytorch-metric-learning) replaces ``Index.search`` with a wrapper without that argument.
    """
    import faiss

    if params is None:
        return
    if isinstance(params, faiss.SearchParametersHNSW):
        index.hnsw.efSearch = int(params.efSearch)
    else:
        faiss.extract_index_ivf(index).nprobe = int(params.nprobe)
