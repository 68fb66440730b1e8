"""Lazy package exports: a package names what it offers, and each submodule is imported on first use.

This keeps ``import lossensemble.<package>`` cheap, so that the CLI's start-up (``--help``,
``search``) does not pay for faiss, scikit-learn or torchvision it never uses.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, where ``exports`` maps a public name to its submodule.

    Use at the end of a package's ``__init__.py``::

        __getattr__, __dir__ = lazy_exports(__name__, {"knn_search": "neighbors"})
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
