"""Shared helpers of the inference tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lossensemble.inference import export_model
from lossensemble.models import EnsembleModel, build_backbone

HEADS = ["triplet", "proxy_nca"]


def export_tiny(out: Path, seed: int) -> Path:
    """Export a small_cnn ensemble (2 heads of 8 -> a 16-d embedding) with weights drawn from ``seed``."""
    torch.manual_seed(seed)
    model = EnsembleModel(build_backbone("small_cnn"), HEADS, 8).eval()
    return export_model(model, torch.tensor([0.6, 0.4]), out, embedding="ensemble", image_size=32,
                        data_kind="glyph", backbone_name="small_cnn")


def write_images(folder: Path, n_classes: int, per_class: int, seed: int) -> list[Path]:
    """Smooth random class prototypes + noise, saved as PNGs in one sub-folder per class; returns the files."""
    rng = np.random.default_rng(seed)
    files = []
    for c in range(n_classes):
        proto = np.kron(rng.random((8, 8)), np.ones((5, 5)))  # 40 x 40, blocky prototype
        sub = folder / f"class{c:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            img = np.clip(proto + 0.25 * rng.standard_normal(proto.shape), 0, 1)
            files.append(sub / f"{j:02d}.png")
            Image.fromarray((img * 255).astype(np.uint8)).save(files[-1])
    return files


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """``n`` L2-normalised float32 vectors around ``clusters`` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)
