"""The package's import rule: folders in one order, imports only point down, no cycles.

The order (lowest first) is the one the README's "Architecture" section states;
every ``import``/``from ... import`` in ``src/lossensemble`` (at module level or
inside a function) is checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lossensemble"

#: Layer of each top-level module or folder; an import must go to a strictly lower layer
#: (or stay inside its own folder). Same-layer folders are independent of each other.
LAYERS = {
    "errors": 0, "lazy": 0, "preprocess": 0,
    "io": 1, "registry": 1, "distributed": 1,
    "config": 2, "runtime": 2,
    "data": 3, "losses": 3,
    "models": 4,
    "evaluation": 5,
    "training": 6,
    "compression": 7,
    "experiments": 8, "inference": 8,
    "reporting": 9,
    "cli": 10,
}
#: The package root (``lossensemble/__init__.py``: version and lazy shortcuts) and ``__main__`` sit above all.
TOP = {"__init__", "__main__"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The lossensemble modules ``path`` imports (``from pkg import sub`` counts as ``pkg.sub`` when a module)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("lossensemble"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.startswith("lossensemble"):
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
            out.update(subs or [node.module])
    return out


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_top_level_folder_has_a_layer():
    tops = {_top(m) for m in _modules()} - TOP
    assert tops <= set(LAYERS), f"add {sorted(tops - set(LAYERS))} to LAYERS (and to the README's architecture)"


def test_imports_only_point_down():
    modules = _modules()
    upward = []
    for name, path in modules.items():
        src = _top(name)
        if src in TOP:
            continue
        for target in _imports(path, modules):
            dst = _top(target)
            if dst == src or dst in ("__init__",) and target == "lossensemble":
                continue
            if dst not in LAYERS or LAYERS[dst] >= LAYERS[src]:
                upward.append(f"{name} -> {target}")
    assert not upward, "imports that do not point down:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    modules = _modules()
    graph = {name: {t for t in _imports(path, modules) if t in modules and t != name}
             for name, path in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_over_400_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 420, "split this module (one job per module)"


def test_no_reference_to_files_users_do_not_have():
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "DESIGN.md" in p.read_text(encoding="utf-8")]
    assert not offenders
