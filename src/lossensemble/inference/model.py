"""Exported inference models: load one with one call and embed images.

An exported model folder holds ``model.safetensors`` (only the tensors the chosen
embedding needs) and ``model.json`` (its description, with a checksum of the
tensors); see :mod:`lossensemble.inference.export`. Loading never unpickles anything
and checks, each failure being a one-line :class:`UserError`: both files exist,
model.json is valid and of this format, model.safetensors parses (a bad header, a
truncated file or a pickle renamed to .safetensors is refused), its checksum
matches, and its tensors fit the modules model.json describes exactly.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from lossensemble.errors import UserError
from lossensemble.io import read_json
from lossensemble.models import EnsembleModel

__all__ = [
    "MODEL_FORMAT",
    "FORMAT_VERSION",
    "MODEL_FILE",
    "CONFIG_FILE",
    "EmbeddedFiles",
    "InferenceModel",
    "model_dir",
    "read_spec",
    "select_heads",
    "load_model",
]

MODEL_FORMAT = "lossensemble-inference-model"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "model.json"


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data`` (the checksum stored in model.json)."""
    return hashlib.sha256(data).hexdigest()


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


class EmbeddedFiles:
    """The result of embedding image files: ``embeddings`` (N, D) float32, the ``paths`` of its rows, ``skipped``."""

    def __init__(self, embeddings: np.ndarray, paths: list[str], skipped: list[str]) -> None:
        self.embeddings = embeddings
        self.paths = paths
        self.skipped = skipped


class InferenceModel(EnsembleModel):
    """One retrieval embedding of a trained ensemble: ``forward(images) -> (B, D)`` L2-normalised.

    An :class:`~lossensemble.models.EnsembleModel` holding only the parts the embedding
    needs (the backbone, the heads it reads, the compressor), built from a model.json
    description (``spec``); its forward is the model's own embedding code.
    ``transform`` is the evaluation transform (PIL image -> tensor);
    :meth:`embed_images` embeds paths or PIL images in batches.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        from lossensemble.models import build_backbone, compressor_from_meta

        backbone = build_backbone(spec["backbone"], pretrained=False, weights=None)
        if backbone.feature_dim != spec["feature_dim"]:
            raise UserError(f"model.json: feature_dim {spec['feature_dim']} but backbone {spec['backbone']} "
                            f"gives {backbone.feature_dim}")
        super().__init__(backbone, list(spec["heads"]), int(spec["embedding_dim"]))
        self.spec = spec
        self.embedding: str = spec["embedding"]
        if self.embedding == "compressed":
            meta = spec.get("compressor")
            self.set_compressor(compressor_from_meta(meta), meta["variant"])
        weights = spec.get("weights") or {}
        self.register_buffer(
            "ensemble_weights",
            torch.tensor([float(weights.get(n, 0.0)) for n in self.head_names], dtype=torch.float32),
            persistent=False,
        )
        self.output_dim = int(spec["output_dim"])
        self._transform = None

    @property
    def transform(self):
        """The evaluation transform of the training data (PIL image -> normalised tensor)."""
        if self._transform is None:
            from lossensemble.data import build_transforms

            self._transform = build_transforms(self.spec["data_kind"], int(self.spec["image_size"]), train=False)
        return self._transform

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        feats = self.forward_features(images)
        return self.embeddings_from_features(feats, self.ensemble_weights, [self.embedding])[self.embedding]

    @torch.inference_mode()
    def embed_tensors(self, batch: torch.Tensor) -> np.ndarray:
        """Embed an already transformed batch (B, 3, H, W); returns float32 (B, D)."""
        self.eval()
        return self(batch.to(self.device)).float().cpu().numpy()

    def embed_images(self, images: Sequence[str | Path | Any], batch_size: int = 64,
                     progress: bool = False) -> np.ndarray:
        """Embed image files and/or PIL images, in order; an unreadable file is a :class:`UserError`."""
        from PIL import Image

        files = [x for x in images if not isinstance(x, Image.Image)]
        result = self.embed_files(files, batch_size=batch_size, progress=progress) if files else None
        if result is not None and result.skipped:
            raise UserError(f"cannot read image {result.skipped[0]}"
                            + (f" (and {len(result.skipped) - 1} more)" if len(result.skipped) > 1 else ""))
        out = np.zeros((len(images), self.output_dim), np.float32)
        file_rows = iter(result.embeddings if result is not None else [])
        pil = [(i, x) for i, x in enumerate(images) if isinstance(x, Image.Image)]
        for start in range(0, len(pil), batch_size):
            chunk = pil[start:start + batch_size]
            emb = self.embed_tensors(torch.stack([self.transform(x.convert("RGB")) for _, x in chunk]))
            for (i, _), row in zip(chunk, emb):
                out[i] = row
        for i, x in enumerate(images):
            if not isinstance(x, Image.Image):
                out[i] = next(file_rows)
        return out

    def embed_files(self, paths: Iterable[str | Path], batch_size: int = 64, progress: bool = False,
                    max_pixels: int | None = None) -> EmbeddedFiles:
        """Embed image files in batches, skipping (and reporting) unreadable ones."""
        from tqdm.auto import tqdm

        from lossensemble.data import SafeImageReader

        if batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {batch_size}")
        paths = [str(p) for p in paths]
        reader = SafeImageReader(max_pixels)
        chunks: list[np.ndarray] = []
        kept: list[str] = []
        skipped: list[str] = []
        with tqdm(total=len(paths), desc="embedding", unit="img", disable=not progress) as bar:
            for start in range(0, len(paths), batch_size):
                tensors = []
                for p in paths[start:start + batch_size]:
                    img = reader.read(p)
                    if img is None:
                        skipped.append(p)
                        continue
                    tensors.append(self.transform(img))
                    kept.append(p)
                if tensors:
                    chunks.append(self.embed_tensors(torch.stack(tensors)))
                bar.update(min(batch_size, len(paths) - start))
        emb = np.concatenate(chunks) if chunks else np.zeros((0, self.output_dim), np.float32)
        return EmbeddedFiles(emb, kept, skipped)


_REQUIRED = ("embedding", "output_dim", "backbone", "feature_dim", "head_names", "heads", "embedding_dim",
             "image_size", "data_kind", "tensors_sha256")


def model_dir(path: str | Path) -> Path:
    p = Path(path)
    if p.is_file() and p.name in (MODEL_FILE, CONFIG_FILE):
        p = p.parent
    if not p.is_dir():
        raise UserError(f"model folder not found: {p}")
    for name in (CONFIG_FILE, MODEL_FILE):
        if not (p / name).is_file():
            raise UserError(f"{p} is not an exported model (no {name}; create one with 'lossensemble export')")
    return p


def read_spec(path: str | Path) -> dict[str, Any]:
    """The validated model.json of a model folder."""
    folder = model_dir(path)
    cfg_path = folder / CONFIG_FILE
    spec = read_json(cfg_path)
    if not isinstance(spec, dict) or spec.get("format") != MODEL_FORMAT:
        raise UserError(f"{cfg_path}: not a lossensemble model description (format {MODEL_FORMAT!r} expected)")
    if spec.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{cfg_path}: format version {spec.get('format_version')!r} is not supported "
                        f"(this lossensemble reads version {FORMAT_VERSION})")
    missing = [k for k in _REQUIRED if k not in spec]
    if missing:
        raise UserError(f"{cfg_path}: missing keys {', '.join(missing)}")
    try:
        expected = select_heads(spec["embedding"], list(spec["head_names"]), spec.get("compressor"))
    except UserError as exc:
        raise UserError(f"{cfg_path}: {exc}") from None
    if list(spec["heads"]) != expected:
        raise UserError(f"{cfg_path}: embedding {spec['embedding']!r} needs heads {expected}, "
                        f"the file lists {spec['heads']}")
    if spec["data_kind"] not in ("photo", "glyph"):
        raise UserError(f"{cfg_path}: data_kind must be 'photo' or 'glyph'")
    return spec


def load_model(path: str | Path, device: str | torch.device = "cpu") -> InferenceModel:
    """Load an exported model folder (or its model.json / model.safetensors) for inference; no pickle.

    Returns an eval-mode :class:`InferenceModel` on ``device``. Any damage (bad header,
    truncation, a pickle in disguise, tensors that do not fit model.json) is a
    :class:`UserError`.
    """
    from safetensors.torch import load

    folder = model_dir(path)
    spec = read_spec(folder)
    file = folder / MODEL_FILE
    data = file.read_bytes()
    try:
        tensors = load(data)  # parses the header and checks every tensor's extent against the file size
    except Exception as exc:  # SafetensorError, or anything a hostile header triggers
        raise UserError(f"{file}: not a valid safetensors file, damaged or truncated "
                        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if sha256(data) != spec["tensors_sha256"]:
        raise UserError(f"{file}: contents differ from the checksum in {CONFIG_FILE} (modified after export?)")
    model = InferenceModel(spec)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise UserError(f"{file}: tensors do not match {CONFIG_FILE} ({lines[1] if len(lines) > 1 else lines[0]})"
                        ) from None
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}") from None
    return model.to(dev).eval()
