"""The exported model folder: its files, its description (config.json) and the checks on reading it.

The folder follows the Hugging Face layout (what ``save_pretrained`` writes)::

    MODEL_DIR/
      config.json        the model description (format version 2; written last)
      model.safetensors  the tensors the embedding needs; its header metadata holds
                         ``description_sha256``, the checksum of the description's
                         architecture and preprocessing fields (see :data:`DESCRIBED`)
      README.md          the model card (generated, :mod:`lossensemble.inference.model_card`)
      model.onnx         optional (``export --format onnx``): the same embedding as an ONNX graph

Folders exported before config.json (format version 1) hold ``model.json`` instead
and still load. Written here because the description and its checks are the
library's own: every field is type- and range-checked, and each failure is one
:class:`UserError` naming the file and the field.

Why two checksums: ``tensors_sha256`` in config.json binds the description to the
tensors file, and ``description_sha256`` inside the tensors file binds the tensors to
the description's fields that decide what the tensors compute (backbone, heads,
dimensions, ensemble weights, compressor, image size, data kind, normalisation). A
config.json edited by hand to change the architecture or the preprocessing therefore
fails to load, while the informative fields (source, training, metrics, license,
version) may be edited freely.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

from lossensemble.errors import UserError
from lossensemble.io import read_json
from lossensemble.preprocess.normalisation import INTERPOLATIONS

__all__ = [
    "MODEL_FORMAT", "FORMAT_VERSION", "MODEL_FILE", "CONFIG_FILE", "LEGACY_CONFIG_FILE", "CARD_FILE",
    "ONNX_FILE", "DESCRIBED", "sha256", "description_sha256", "select_heads", "model_dir", "config_path",
    "check_spec", "read_spec", "check_description",
]

MODEL_FORMAT = "lossensemble-inference-model"
FORMAT_VERSION = 2
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
LEGACY_CONFIG_FILE = "model.json"  # format version 1
CARD_FILE = "README.md"
ONNX_FILE = "model.onnx"
DATA_KINDS = ("photo", "glyph")
COMPRESSOR_VARIANTS = {"mlp": "ensemble", "direct": "features"}  # = lossensemble.models.compressor.VARIANTS

#: The description fields ``description_sha256`` covers (what the tensors compute and how inputs are prepared).
DESCRIBED = ("format", "embedding", "output_dim", "distance", "backbone", "feature_dim", "head_names", "heads",
             "embedding_dim", "weights", "compressor", "image_size", "data_kind", "normalisation")
#: Described fields of some models only (``model.branch_at``): covered when present, so older folders keep their sums.
DESCRIBED_IF_PRESENT = ("branch_at", "branches")

_HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def description_sha256(spec: dict[str, Any]) -> str:
    """Checksum of the :data:`DESCRIBED` fields of a description (canonical JSON)."""
    fields = {k: spec.get(k) for k in DESCRIBED}
    fields.update({k: spec[k] for k in DESCRIBED_IF_PRESENT if k in spec})
    return sha256(json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8"))


def select_heads(embedding: str, head_names: list[str], compressor_meta: dict | None) -> list[str]:
    """The heads an embedding needs (validates the embedding name)."""
    if embedding == "ensemble":
        return list(head_names)
    if embedding == "compressed":
        if compressor_meta is None:
            raise UserError("this model has no compressor: train one with 'lossensemble compress RUN' "
                            "(or compression.enabled=true), or export --embedding ensemble")
        return list(head_names) if compressor_meta["variant"] == "mlp" else []
    if embedding.startswith("heads.") and embedding[6:] in head_names:
        return [embedding[6:]]
    choices = ", ".join(["compressed", "ensemble"] + [f"heads.{n}" for n in head_names])
    raise UserError(f"unknown embedding {embedding!r} (choose from {choices})")


def config_path(folder: Path) -> Path:
    """config.json of a model folder, or model.json in a folder exported before config.json."""
    new = folder / CONFIG_FILE
    return new if new.is_file() or not (folder / LEGACY_CONFIG_FILE).is_file() else folder / LEGACY_CONFIG_FILE


def model_dir(path: str | Path) -> Path:
    """The model folder of ``path`` (the folder or one of its files), checked to hold a model."""
    p = Path(path)
    if p.is_file() and p.name in (MODEL_FILE, CONFIG_FILE, LEGACY_CONFIG_FILE):
        p = p.parent
    if not p.is_dir():
        raise UserError(f"model folder not found: {p}")
    if not config_path(p).is_file():
        raise UserError(f"{p} is not an exported model (no {CONFIG_FILE}; create one with 'lossensemble export')")
    if not (p / MODEL_FILE).is_file():
        raise UserError(f"{p} is not an exported model (no {MODEL_FILE}; create one with 'lossensemble export')")
    return p


# ---------------------------------------------------------------- field checks


def _bad(where: Path, field: str, want: str, value: Any) -> UserError:
    shown = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return UserError(f"{where}: field {field!r} must be {want}, got {shown}")


def _int(spec: dict, key: str, where: Path, lo: int = 1, hi: int = 1 << 20, prefix: str = "") -> int:
    v = spec[key]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _bad(where, prefix + key, f"an integer in [{lo}, {hi}]", v)
    return v


def _str(spec: dict, key: str, where: Path) -> str:
    v = spec[key]
    if not isinstance(v, str) or not v.strip() or len(v) > 200:
        raise _bad(where, key, "a non-empty string", v)
    return v


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _names(spec: dict, key: str, where: Path, allow_empty: bool) -> list[str]:
    v = spec[key]
    if not isinstance(v, list) or (not v and not allow_empty) or len(v) > 1000:
        raise _bad(where, key, "a list of head names" + ("" if allow_empty else " (not empty)"), v)
    if not all(isinstance(n, str) and re.fullmatch(r"[A-Za-z0-9_\-]{1,100}", n) for n in v):
        raise _bad(where, key, "a list of head names (letters, digits, _ and -)", v)
    if len(set(v)) != len(v):
        raise _bad(where, key, "a list of distinct head names", v)
    return v


def _weights(spec: dict, where: Path, head_names: list[str]) -> None:
    w = spec["weights"]
    values = list(w.values()) if isinstance(w, dict) else w
    if isinstance(w, dict) and list(w) != head_names:
        raise _bad(where, "weights", f"an object keyed by the head names {head_names}", w)
    if not isinstance(values, list) or len(values) != len(head_names) or not all(_number(x) for x in values):
        raise _bad(where, "weights", f"{len(head_names)} finite numbers (one per head)", w)


def _compressor(spec: dict, where: Path) -> None:
    meta = spec.get("compressor")
    if meta is None:
        if spec["embedding"] == "compressed":
            raise _bad(where, "compressor", "an object for the 'compressed' embedding", meta)
        return
    if not isinstance(meta, dict):
        raise _bad(where, "compressor", "an object or null", meta)
    if meta.get("variant") not in COMPRESSOR_VARIANTS:
        raise _bad(where, "compressor.variant", f"one of {', '.join(COMPRESSOR_VARIANTS)}", meta.get("variant"))
    for key in ("in_dim", "dim"):
        if key not in meta:
            raise UserError(f"{where}: field 'compressor.{key}' is missing")
        _int(meta, key, where, prefix="compressor.")
    if meta.get("hidden") is not None:
        _int(meta, "hidden", where, prefix="compressor.")
    if COMPRESSOR_VARIANTS[meta["variant"]] == "features":
        want = spec["feature_dim"]
    else:
        want = spec["embedding_dim"] * len(spec["head_names"])
    if meta["in_dim"] != want:
        raise _bad(where, "compressor.in_dim", f"{want} for the {meta['variant']} variant of this model",
                   meta["in_dim"])


def _branches(spec: dict, where: Path) -> None:
    """``branch_at`` and ``branches`` ([[head, branch], ...]) of a model trained with model.branch_at, when present."""
    if "branches" not in spec and "branch_at" not in spec:
        return
    if "branch_at" not in spec or "branches" not in spec:
        raise UserError(f"{where}: fields 'branch_at' and 'branches' come together; one is missing")
    _int(spec, "branch_at", where, lo=1, hi=64)
    branches = spec.get("branches")
    if not isinstance(branches, list) or not branches or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) and x for x in p) for p in branches) \
            or len({h for h, _ in branches}) != len(branches):
        raise _bad(where, "branches", "a list of distinct [head, branch name] pairs", branches)
    missing = [h for h in spec["heads"] if h not in {h for h, _ in branches}]
    if missing:
        raise _bad(where, "branches", f"a branch for every exported head (none for {missing[0]})", branches)


def _normalisation(spec: dict, where: Path) -> None:
    norm = spec.get("normalisation")
    if norm is None:
        return
    if not isinstance(norm, dict):
        raise _bad(where, "normalisation", "an object with mean and std", norm)
    for key in ("mean", "std"):
        v = norm.get(key)
        if not isinstance(v, list) or len(v) != 3 or not all(_number(x) for x in v) \
                or (key == "std" and not all(x > 0 for x in v)):
            raise _bad(where, f"normalisation.{key}", "3 finite numbers" + (" > 0" if key == "std" else ""), v)
    interpolation = norm.get("interpolation", "bilinear")  # absent in older exports: bilinear, crop 224/256
    if interpolation not in INTERPOLATIONS:
        raise _bad(where, "normalisation.interpolation", "one of " + ", ".join(INTERPOLATIONS), interpolation)
    crop = norm.get("crop_pct", 0.875)
    if not _number(crop) or not 0 < crop <= 1:
        raise _bad(where, "normalisation.crop_pct", "a number in (0, 1]", crop)


_REQUIRED = ("embedding", "output_dim", "backbone", "feature_dim", "head_names", "heads", "embedding_dim",
             "weights", "image_size", "data_kind", "tensors_sha256")


def check_spec(spec: Any, where: Path) -> dict[str, Any]:
    """Type- and range-check every field of a description; returns it (a :class:`UserError` names the field)."""
    if not isinstance(spec, dict) or spec.get("format") != MODEL_FORMAT:
        raise UserError(f"{where}: not a lossensemble model description (format {MODEL_FORMAT!r} expected)")
    if spec.get("format_version") not in (1, FORMAT_VERSION) or isinstance(spec.get("format_version"), bool):
        raise UserError(f"{where}: format version {spec.get('format_version')!r} is not supported "
                        f"(this lossensemble reads versions 1 and {FORMAT_VERSION})")
    missing = [k for k in _REQUIRED if k not in spec]
    if missing:
        raise UserError(f"{where}: missing fields {', '.join(missing)}")
    _str(spec, "embedding", where)
    _str(spec, "backbone", where)
    head_names = _names(spec, "head_names", where, allow_empty=False)
    _names(spec, "heads", where, allow_empty=True)
    for key in ("output_dim", "feature_dim", "embedding_dim"):
        _int(spec, key, where)
    _int(spec, "image_size", where, lo=8, hi=8192)
    if spec["data_kind"] not in DATA_KINDS:
        raise _bad(where, "data_kind", "'photo' or 'glyph'", spec["data_kind"])
    if spec.get("distance", "cosine") != "cosine":
        raise _bad(where, "distance", "'cosine'", spec["distance"])
    _weights(spec, where, head_names)
    _branches(spec, where)
    _compressor(spec, where)
    _normalisation(spec, where)
    if not isinstance(spec["tensors_sha256"], str) or not _HEX64.fullmatch(spec["tensors_sha256"]):
        raise _bad(where, "tensors_sha256", "a hex SHA-256", spec["tensors_sha256"])
    for key in ("source", "training", "metrics", "onnx"):
        if spec.get(key) is not None and not isinstance(spec[key], dict):
            raise _bad(where, key, "an object", spec[key])
    if spec.get("parameters") is not None:
        _int(spec, "parameters", where, lo=0, hi=1 << 50)
    for key in ("license", "lossensemble_version"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise _bad(where, key, "a string", spec[key])
    try:
        expected = select_heads(spec["embedding"], head_names, spec.get("compressor"))
    except UserError as exc:
        raise UserError(f"{where}: field 'embedding': {exc}") from None
    if list(spec["heads"]) != expected:
        raise UserError(f"{where}: embedding {spec['embedding']!r} needs heads {expected}, "
                        f"the file lists {spec['heads']} (field 'heads')")
    d = spec["embedding_dim"]
    want = {"ensemble": d * len(head_names), "compressed": (spec.get("compressor") or {}).get("dim")}.get(
        spec["embedding"], d)
    if spec["output_dim"] != want:
        raise _bad(where, "output_dim", f"{want} for embedding {spec['embedding']!r}", spec["output_dim"])
    return spec


def read_spec(path: str | Path) -> dict[str, Any]:
    """The validated description (config.json, or model.json of an older export) of a model folder."""
    cfg_path = config_path(model_dir(path))
    try:
        data = read_json(cfg_path)
    except (RecursionError, ValueError) as exc:  # nesting too deep, an integer of thousands of digits
        if isinstance(exc, UserError):
            raise
        raise UserError(f"{cfg_path}: not a usable JSON description ({type(exc).__name__})") from None
    return check_spec(data, cfg_path)


def tensors_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's header (call after the file parsed)."""
    try:
        n = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + n]).get("__metadata__") or {}
    except (ValueError, AttributeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def write_folder(out: str | Path, spec: dict[str, Any], tensors: dict, onnx_bytes: bytes | None = None) -> Path:
    """Write a model folder: model.safetensors, model.onnx (optional), README.md, then config.json (last).

    ``spec`` gets ``format``/``format_version``/``tensors_sha256`` set here; the tensors
    file's metadata records the description checksum. A model.json of an earlier export
    in the same folder is removed (config.json replaces it).
    """
    from safetensors.torch import save

    from lossensemble.inference.model_card import render_card
    from lossensemble.io import atomic_write_bytes, atomic_write_text

    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"-o {folder}: exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not ((folder / CONFIG_FILE).is_file() and (folder / MODEL_FILE).is_file()
                                                          or (folder / LEGACY_CONFIG_FILE).is_file()):
        raise UserError(f"-o {folder}: a folder of other files, not an exported model; its files would be "
                        "overwritten (choose an empty or new folder)")
    spec = {"format": MODEL_FORMAT, "format_version": FORMAT_VERSION, **spec}
    spec.update(format=MODEL_FORMAT, format_version=FORMAT_VERSION)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    data = save(tensors, metadata={"format": MODEL_FORMAT, "embedding": str(spec["embedding"]),
                                   "description_sha256": description_sha256(spec)})
    spec["tensors_sha256"] = sha256(data)
    if onnx_bytes is None:
        spec.pop("onnx", None)
    check_spec(json.loads(json.dumps(spec)), folder / CONFIG_FILE)  # what a reader will see
    atomic_write_bytes(folder / MODEL_FILE, data)
    if onnx_bytes is not None:
        atomic_write_bytes(folder / ONNX_FILE, onnx_bytes)
    else:
        (folder / ONNX_FILE).unlink(missing_ok=True)  # a stale graph of an earlier export would not match
    atomic_write_text(folder / CARD_FILE, render_card(spec))
    atomic_write_text(folder / CONFIG_FILE, json.dumps(spec, indent=2) + "\n")
    (folder / LEGACY_CONFIG_FILE).unlink(missing_ok=True)
    return folder


def check_description(folder: Path, spec: dict[str, Any], tensors_data: bytes) -> None:
    """Refuse a description whose architecture or preprocessing fields differ from those the tensors were
    exported with (``description_sha256`` in the tensors file's metadata), e.g. a config.json edited by hand."""
    cfg = config_path(folder).name
    described = tensors_metadata(tensors_data).get("description_sha256")
    if described is None and spec["format_version"] >= 2:
        raise UserError(f"{folder / MODEL_FILE}: has no description checksum, which format version "
                        f"{spec['format_version']} of {cfg} requires (not written by 'lossensemble export'?)")
    if described is not None and described != description_sha256(spec):
        raise UserError(f"{folder / cfg}: architecture or preprocessing fields differ from those the tensors were "
                        "exported with (edited by hand?); export the model again")
