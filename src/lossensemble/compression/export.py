"""Self-contained inference models: export from a run, load with one call, embed images.

Written here because the model layout (backbone + the heads and compressor one
embedding needs) is the library's own; the tensors are stored with safetensors and
the description with JSON, so loading never unpickles anything.

A model folder holds two files:

* ``model.safetensors``: only the tensors the chosen embedding needs, named as in
  :class:`InferenceModel` (``backbone.*``, ``heads.<name>.*``, ``compressor.*``);
  e.g. ``compressed`` with the ``direct`` variant = backbone + one linear layer,
  ``heads.<name>`` = backbone + that head, ``ensemble`` = backbone + every head.
* ``model.json``: format and version, lossensemble version, ``embedding`` (which
  one), ``output_dim``, ``distance`` ("cosine": outputs are L2-normalised),
  ``backbone``, ``feature_dim``, ``head_names`` (all heads of the run), ``heads``
  (the heads stored), ``embedding_dim`` (one head's d), ``weights`` (loss weight of
  every head, used by the ensemble), ``compressor`` (variant, in_dim, dim, hidden,
  objective, or null), ``image_size``, ``data_kind`` ("photo"/"glyph": which eval
  transform), ``normalisation`` (mean/std), ``source`` (run and checkpoint),
  ``tensors_sha256`` (checksum of model.safetensors) and ``parameters``.

Loading checks, each failure being a one-line :class:`UserError`: both files exist,
model.json is valid and of this format, model.safetensors parses (a bad header, a
truncated file or a pickle renamed to .safetensors is refused), its checksum
matches, and its tensors fit the modules model.json describes exactly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lossensemble.errors import UserError

__all__ = [
    "MODEL_FORMAT",
    "MODEL_FILE",
    "CONFIG_FILE",
    "InferenceModel",
    "EmbeddedFiles",
    "export_model",
    "export_run",
    "load_model",
]

MODEL_FORMAT = "lossensemble-inference-model"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "model.json"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class EmbeddedFiles:
    """The result of embedding image files: ``embeddings`` (N, D) float32, the ``paths`` of its rows, ``skipped``."""

    def __init__(self, embeddings: np.ndarray, paths: list[str], skipped: list[str]) -> None:
        self.embeddings = embeddings
        self.paths = paths
        self.skipped = skipped


class InferenceModel(nn.Module):
    """One retrieval embedding of a trained ensemble: ``forward(images) -> (B, D)`` L2-normalised.

    Built from a model.json description (``spec``); holds only the modules the
    embedding needs. ``transform`` is the evaluation transform (PIL image -> tensor);
    :meth:`embed_images` embeds paths or PIL images in batches.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        from lossensemble.compression.modules import build_compressor, compressor_input
        from lossensemble.models.backbones import build_backbone

        self.spec = spec
        self.embedding: str = spec["embedding"]
        self.backbone = build_backbone(spec["backbone"], pretrained=False, weights=None)
        if self.backbone.feature_dim != spec["feature_dim"]:
            raise UserError(f"model.json: feature_dim {spec['feature_dim']} but backbone {spec['backbone']} "
                            f"gives {self.backbone.feature_dim}")
        self.head_names: list[str] = list(spec["heads"])
        d = int(spec["embedding_dim"])
        self.heads = nn.ModuleDict({n: nn.Linear(self.backbone.feature_dim, d) for n in self.head_names})
        meta = spec.get("compressor")
        self.compressor: nn.Module | None = None
        self.compressor_input = "ensemble"
        if self.embedding == "compressed":
            self.compressor = build_compressor(meta["variant"], meta["in_dim"], meta["dim"], hidden=meta.get("hidden"))
            self.compressor_input = compressor_input(meta["variant"])
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

    def _ensemble(self, feats: torch.Tensor) -> torch.Tensor:
        from lossensemble.models.ensemble import ensemble_embedding

        heads = [self.heads[n](feats) for n in self.head_names]
        return ensemble_embedding(heads, self.ensemble_weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(images)
        if self.embedding == "compressed":
            src = feats if self.compressor_input == "features" else self._ensemble(feats)
            return F.normalize(self.compressor(src), dim=1)
        if self.embedding == "ensemble":
            return self._ensemble(feats)
        return F.normalize(self.heads[self.head_names[0]](feats), dim=1)

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


# ---------------------------------------------------------------------------------- export


def _select_heads(embedding: str, head_names: list[str], compressor_meta: dict | None) -> list[str]:
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


def export_model(
    model,
    weights: torch.Tensor | Sequence[float],
    out_dir: str | Path,
    *,
    embedding: str,
    image_size: int,
    data_kind: str,
    backbone_name: str,
    compressor_meta: dict | None = None,
    source: dict | None = None,
) -> Path:
    """Write the inference model of one embedding of an :class:`EnsembleModel`; returns the folder.

    Both files are written atomically; model.json last, so a folder with a
    model.json always has its matching tensors.
    """
    from safetensors.torch import save

    from lossensemble import __version__
    from lossensemble.data import IMAGENET_MEAN, IMAGENET_STD
    from lossensemble.training.checkpoint import atomic_write_text, atomic_write_bytes

    if data_kind not in ("photo", "glyph"):
        raise UserError(f"data kind must be 'photo' or 'glyph', got {data_kind!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: exists and is not a folder")
    head_names = list(model.head_names)
    if model.compressor is None:
        compressor_meta = None
    heads = _select_heads(embedding, head_names, compressor_meta)
    w = torch.as_tensor(weights, dtype=torch.float32).detach().cpu()
    state = model.state_dict()
    tensors = {k: v for k, v in state.items() if k.startswith("backbone.")}
    for name in heads:
        tensors.update({k: v for k, v in state.items() if k.startswith(f"heads.{name}.")})
    if embedding == "compressed":
        tensors.update({k: v for k, v in state.items() if k.startswith("compressor.")})
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    data = save(tensors, metadata={"format": MODEL_FORMAT, "embedding": embedding})
    d = int(model.embedding_dim)
    output_dim = {"ensemble": d * len(head_names)}.get(embedding, d)
    if embedding == "compressed":
        output_dim = int(compressor_meta["dim"])
    spec = {
        "format": MODEL_FORMAT,
        "format_version": FORMAT_VERSION,
        "lossensemble_version": __version__,
        "embedding": embedding,
        "output_dim": output_dim,
        "distance": "cosine",
        "backbone": backbone_name,
        "feature_dim": int(model.backbone.feature_dim),
        "head_names": head_names,
        "heads": heads,
        "embedding_dim": d,
        "weights": dict(zip(head_names, w.tolist())),
        "compressor": compressor_meta if embedding == "compressed" else None,
        "image_size": int(image_size),
        "data_kind": data_kind,
        "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "source": source or {},
        "tensors_sha256": _sha256(data),
        "parameters": int(sum(v.numel() for k, v in tensors.items() if v.is_floating_point()
                              and "running_" not in k)),
    }
    atomic_write_bytes(out / MODEL_FILE, data)
    atomic_write_text(out / CONFIG_FILE, json.dumps(spec, indent=2) + "\n")
    return out


def export_run(run_dir: str | Path, out_dir: str | Path, *, embedding: str | None = None,
               checkpoint: str | None = None) -> Path:
    """Export one embedding of a trained run (see :func:`export_model`).

    ``checkpoint``: "last", "best" or "compressed" (the post-hoc compressed
    checkpoint); default "compressed" when ``lossensemble compress`` wrote one, else
    "last". ``embedding``: default "compressed" when that checkpoint has a
    compressor, else "ensemble".
    """
    from lossensemble.compression.posthoc import compressed_checkpoint_path
    from lossensemble.data.registry import get_source
    from lossensemble.training.loading import load_run

    import lossensemble.data  # noqa: F401  (registers the datasets)

    compressed = compressed_checkpoint_path(run_dir)
    if checkpoint is None:
        checkpoint = "compressed" if compressed.is_file() else "last"
    if checkpoint not in ("last", "best", "compressed"):
        raise UserError(f"--checkpoint must be last, best or compressed, got {checkpoint!r}")
    if checkpoint == "compressed" and not compressed.is_file():
        raise UserError(f"{compressed} not found: run 'lossensemble compress {run_dir}' first")
    loaded = load_run(run_dir, checkpoint=str(compressed) if checkpoint == "compressed" else checkpoint,
                      device="cpu")
    model = loaded.model
    meta = loaded.state.get("compressor")
    if embedding is None:
        embedding = "compressed" if model.compressor is not None else "ensemble"
    cfg = loaded.cfg
    return export_model(
        model, loaded.weights, out_dir, embedding=embedding, image_size=cfg.data.image_size,
        data_kind=get_source(cfg.data.name).kind, backbone_name=cfg.model.backbone, compressor_meta=meta,
        source={"run": str(Path(run_dir).resolve()), "checkpoint": checkpoint, "dataset": cfg.data.name},
    )


# ---------------------------------------------------------------------------------- loading

_REQUIRED = ("embedding", "output_dim", "backbone", "feature_dim", "head_names", "heads", "embedding_dim",
             "image_size", "data_kind", "tensors_sha256")


def _model_dir(path: str | Path) -> Path:
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
    folder = _model_dir(path)
    cfg_path = folder / CONFIG_FILE
    from lossensemble.training.run import read_json

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
        expected = _select_heads(spec["embedding"], list(spec["head_names"]), spec.get("compressor"))
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

    folder = _model_dir(path)
    spec = read_spec(folder)
    file = folder / MODEL_FILE
    data = file.read_bytes()
    try:
        tensors = load(data)  # parses the header and checks every tensor's extent against the file size
    except Exception as exc:  # SafetensorError, or anything a hostile header triggers
        raise UserError(f"{file}: not a valid safetensors file, damaged or truncated "
                        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if _sha256(data) != spec["tensors_sha256"]:
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
