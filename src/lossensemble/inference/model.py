"""Exported inference models: load one with one call and embed images.

An exported model folder (Hugging Face layout, see :mod:`lossensemble.inference.layout`)
holds ``config.json`` (the description; ``model.json`` in folders exported before),
``model.safetensors`` (only the tensors the chosen embedding needs), a ``README.md``
model card and optionally ``model.onnx``. Loading never unpickles anything and checks,
each failure being a one-line :class:`UserError`: the files exist, every field of
the description has the right type and range, model.safetensors parses (a bad
header, a truncated file or a pickle renamed to .safetensors is refused), its
checksum matches, the description's architecture fields match the checksum the
tensors file carries, and the tensors fit the modules the description describes.

:meth:`InferenceModel.save_pretrained` / :meth:`InferenceModel.from_pretrained` follow
the Hugging Face convention (``from_pretrained`` also takes a Hub repo id, which needs
``huggingface_hub``); a local folder never touches the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from lossensemble.errors import UserError
from lossensemble.inference.layout import (
    CONFIG_FILE,
    FORMAT_VERSION,
    LEGACY_CONFIG_FILE,
    MODEL_FILE,
    MODEL_FORMAT,
    check_description,
    config_path,
    model_dir,
    read_spec,
    select_heads,
    sha256,
    write_folder,
)
from lossensemble.models import EnsembleModel
from lossensemble.preprocess import Normalisation, to_rgb

__all__ = [
    "MODEL_FORMAT",
    "FORMAT_VERSION",
    "MODEL_FILE",
    "CONFIG_FILE",
    "LEGACY_CONFIG_FILE",
    "EmbeddedFiles",
    "InferenceModel",
    "model_dir",
    "read_spec",
    "select_heads",
    "sha256",
    "load_model",
]


class EmbeddedFiles:
    """The result of embedding image files: ``embeddings`` (N, D) float32, the ``paths`` of its rows, ``skipped``."""

    def __init__(self, embeddings: np.ndarray, paths: list[str], skipped: list[str]) -> None:
        self.embeddings = embeddings
        self.paths = paths
        self.skipped = skipped


class InferenceModel(EnsembleModel):
    """One retrieval embedding of a trained ensemble: ``forward(images) -> (B, D)`` L2-normalised.

    An :class:`~lossensemble.models.EnsembleModel` holding only the parts the embedding
    needs (the backbone, the heads it reads, the compressor), built from a config.json
    description (``spec``); its forward is the model's own embedding code.
    ``transform`` is the evaluation transform (PIL image -> tensor);
    :meth:`embed_images` embeds paths or PIL images in batches.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        from lossensemble.models import build_backbone, compressor_from_meta

        branches = dict(spec.get("branches") or [])
        if branches:  # a model trained with model.branch_at: the exported heads' branches only
            from lossensemble.models.branching import build_branched

            owners = list(dict.fromkeys(branches.values()))
            backbone = build_branched(spec["backbone"], int(spec["branch_at"]), owners,
                                      lambda: build_backbone(spec["backbone"], pretrained=False, weights=None))
        else:
            backbone = build_backbone(spec["backbone"], pretrained=False, weights=None)
        if backbone.feature_dim != spec["feature_dim"]:
            raise UserError(f"field 'feature_dim' is {spec['feature_dim']} but backbone {spec['backbone']} "
                            f"gives {backbone.feature_dim}")
        super().__init__(backbone, list(spec["heads"]), int(spec["embedding_dim"]),
                         branch_of=branches)
        self.spec = spec
        self.embedding: str = spec["embedding"]
        if self.embedding == "compressed":
            meta = spec.get("compressor")
            self.set_compressor(compressor_from_meta(meta), meta["variant"])
        weights = spec.get("weights") or {}
        if isinstance(weights, list):
            weights = dict(zip(spec["head_names"], weights))
        self.register_buffer(
            "ensemble_weights",
            torch.tensor([float(weights.get(n, 0.0)) for n in self.head_names], dtype=torch.float32),
            persistent=False,
        )
        self.output_dim = int(spec["output_dim"])
        self._transform = None

    @property
    def normalisation(self) -> Normalisation:
        """The exported mean/std, filter and crop (``normalisation`` in config.json; ImageNet's when absent)."""
        return Normalisation.from_dict(self.spec.get("normalisation"))

    @property
    def transform(self):
        """The evaluation transform of the training data (PIL image -> normalised tensor)."""
        if self._transform is None:
            from lossensemble.data import build_transforms

            self._transform = build_transforms(self.spec["data_kind"], int(self.spec["image_size"]), train=False,
                                               normalisation=self.normalisation)
        return self._transform

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def save_pretrained(self, save_directory: str | Path) -> Path:
        """Write this model as a model folder (config.json, model.safetensors, README.md); returns it.

        The Hugging Face convention: :meth:`from_pretrained` and :func:`load_model` read it back.
        """
        return write_folder(save_directory, {k: v for k, v in self.spec.items() if k != "onnx"},
                            self.state_dict())

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None,
                    commit_message: str = "Upload lossensemble model") -> str:
        """Upload this model's folder (:meth:`save_pretrained`) to a Hugging Face Hub repo; returns the commit URL.

        Needs ``huggingface_hub`` (``pip install 'lossensemble[hub]'``) and network access.
        """
        import tempfile

        try:
            from huggingface_hub import HfApi
        except ImportError:
            raise UserError("push_to_hub needs huggingface_hub: pip install 'lossensemble[hub]'") from None
        api = HfApi(token=token)
        with tempfile.TemporaryDirectory(prefix="lossensemble-hub-") as tmp:
            folder = self.save_pretrained(Path(tmp) / "model")
            api.create_repo(repo_id, private=private, exist_ok=True)
            return str(api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message))

    @classmethod
    def from_pretrained(cls, model_id: str | Path, *, device: str | torch.device = "cpu",
                        revision: str | None = None, cache_dir: str | Path | None = None,
                        token: str | bool | None = None, local_files_only: bool = False) -> "InferenceModel":
        """Load a model folder, or download a Hugging Face Hub repo (``owner/name``) and load it.

        A local folder is read directly (the network is never used); a repo id needs
        ``huggingface_hub`` (``pip install 'lossensemble[hub]'``).
        """
        path = Path(model_id)
        if path.exists() or not isinstance(model_id, str) or model_id.count("/") != 1:
            return load_model(path, device=device)
        try:
            from huggingface_hub import snapshot_download
        except ImportError:
            raise UserError(f"{model_id!r} is not a local folder; downloading it from the Hugging Face Hub "
                            "needs huggingface_hub: pip install 'lossensemble[hub]'") from None
        try:
            folder = snapshot_download(model_id, revision=revision, cache_dir=cache_dir, token=token,
                                       local_files_only=local_files_only,
                                       allow_patterns=[CONFIG_FILE, MODEL_FILE, "README.md"])
        except Exception as exc:  # offline, unknown repo, no access...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{model_id!r}: no such local folder, and it cannot be fetched from the "
                            f"Hugging Face Hub ({first})") from None
        return load_model(folder, device=device)

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
            emb = self.embed_tensors(torch.stack([self.transform(to_rgb(x)) for _, x in chunk]))
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
        with tqdm(total=len(paths), desc="embedding", unit="img", disable=None if progress else True) as bar:
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


def load_model(path: str | Path, device: str | torch.device = "cpu") -> InferenceModel:
    """Load an exported model folder (or its config.json / model.safetensors) for inference; no pickle.

    Returns an eval-mode :class:`InferenceModel` on ``device``. Any damage (bad header,
    truncation, a pickle in disguise, a description edited after export, tensors that
    do not fit the description) is a :class:`UserError`.
    """
    from safetensors.torch import load

    folder = model_dir(path)
    spec = read_spec(folder)
    cfg = config_path(folder).name
    file = folder / MODEL_FILE
    data = file.read_bytes()
    try:
        tensors = load(data)  # parses the header and checks every tensor's extent against the file size
    except Exception as exc:  # SafetensorError, or anything a hostile header triggers
        raise UserError(f"{file}: not a valid safetensors file, damaged or truncated "
                        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if sha256(data) != spec["tensors_sha256"]:
        raise UserError(f"{file}: contents differ from the checksum in {cfg} (modified after export?)")
    check_description(folder, spec, data)
    try:
        model = InferenceModel(spec)
    except UserError as exc:
        raise UserError(f"{folder / cfg}: {exc}") from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise UserError(f"{file}: tensors do not match {cfg} ({lines[1] if len(lines) > 1 else lines[0]})"
                        ) from None
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}") from None
    return model.to(dev).eval()
