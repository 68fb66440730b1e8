"""The software and hardware a result was measured with (for reports)."""

from __future__ import annotations

import os
import platform
from importlib import metadata

__all__ = ["environment_info"]

#: Distributions whose versions a report lists (display name -> distribution name).
PACKAGES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "faiss": "faiss-cpu",
    "pytorch-metric-learning": "pytorch-metric-learning",
    "numpy": "numpy",
    "scikit-learn": "scikit-learn",
    "lossensemble": "lossensemble",
}


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _faiss_version() -> str:
    try:
        import faiss

        return str(getattr(faiss, "__version__", "unknown"))
    except ImportError:
        return "not installed"


def environment_info(device: str | None = None) -> dict[str, str]:
    """Versions (python, torch, torchvision, faiss, pml, lossensemble...), platform and the training device."""
    info = {"python": platform.python_version()}
    for name, dist in PACKAGES.items():
        info[name] = _faiss_version() if name == "faiss" else _version(dist)
    info["platform"] = platform.platform()
    info["cpu cores"] = str(os.cpu_count())
    info["device"] = device or "unknown"
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch threads"] = str(torch.get_num_threads())
        if torch.cuda.is_available():
            info["cuda device"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return info
