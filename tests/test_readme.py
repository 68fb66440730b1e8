"""Every Python code block in README.md runs (in a scratch folder holding a copy of configs/)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_python_examples():
    assert BLOCKS


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch):
    shutil.copytree(ROOT / "src" / "lossensemble" / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), {"__name__": "__readme__"})


def _config_keys() -> set[str]:
    """Every dotted key of the config schema (sections' fields; ``options``/``lr`` mappings as one key)."""
    import dataclasses

    from lossensemble.config import Config

    keys = set()
    for field in dataclasses.fields(Config):
        section = field.default_factory() if field.default_factory is not dataclasses.MISSING else None
        if section is not None and dataclasses.is_dataclass(section):
            keys.update(f"{field.name}.{sub.name}" for sub in dataclasses.fields(section))
        else:
            keys.add(field.name)
    return keys


def test_readme_config_table_lists_every_key():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    listed = set()
    for cell in first_cells:
        for name in re.findall(r"`([^`]+)`", cell):  # a cell may list several: `a` / `b`, `train.lr.{x,y}`
            listed.add(name.split(".{")[0])
    missing = sorted(_config_keys() - listed)
    assert not missing, f"README's configuration table misses {missing}"
