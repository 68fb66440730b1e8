"""Hostile or careless configs: out-of-range values, non-UTF-8 files, YAML syntax errors, alias bombs."""

from __future__ import annotations

import time

import pytest

from lossensemble.config import ConfigError, load_config


@pytest.mark.parametrize("override,key", [
    ("train.eps=0", "train.eps"),
    ("train.eps=-1e-8", "train.eps"),
    ("train.momentum=1", "train.momentum"),
    ("train.momentum=-0.1", "train.momentum"),
    ("train.weight_decay=-0.01", "train.weight_decay"),
    ("train.lr.backbone=.inf", "train.lr.backbone"),
    ("train.lr.heads=.nan", "train.lr.heads"),
    ("train.grad_clip=.inf", "train.grad_clip"),
    ("eval.max_items=1", "eval.max_items"),
    ("eval.max_items=0", "eval.max_items"),
    ("seed=9223372036854775808", "seed"),
    ("model.embedding_dim=65537", "model.embedding_dim"),
    ("data.image_size=4097", "data.image_size"),
    ("data.batch_size=1000004", "data.batch_size"),
])
def test_out_of_range_values_are_one_line_errors_naming_the_key(override, key):
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=[override])
    msg = str(exc.value)
    assert msg.startswith(f"{key}:") and "\n" not in msg


@pytest.mark.parametrize("override", ["seed=9223372036854775807", "train.momentum=0", "train.weight_decay=0",
                                      "eval.max_items=2", "model.embedding_dim=65536", "data.image_size=4096",
                                      "data.batch_size=1000000", "train.grad_clip=null"])
def test_boundary_values_are_accepted(override):
    load_config(overrides=[override])


def test_non_utf8_config_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("seed: 1  # caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert "UTF-8" in msg and str(path) in msg and "\n" not in msg


@pytest.mark.parametrize("text,line", [
    ("train:\n  epochs: 3\n   lr: [1\n", 3),
    ("seed: 1\ndata: {name: glyphs\n", 3),
    ("seed: 1\n\tdata: 2\n", 2),
])
def test_yaml_syntax_errors_are_one_line_with_file_line_and_column(tmp_path, text, line):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}:{line}:") and "not valid YAML" in msg


def _bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    lines.append(f"seed: *a{levels - 1}")
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb())
    assert path.stat().st_size < 4096
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases") as exc:
        load_config(path)
    assert time.perf_counter() - start < 5
    assert "\n" not in str(exc.value)


def test_alias_bomb_in_an_override_is_refused(tmp_path):
    value = "[" + ", ".join(["[" + ", ".join(["[1,2,3,4,5,6,7,8,9,10]"] * 10) + "]"] * 10) + "]"
    load_config(overrides=[f"data.options.x={value}"])  # 1,111 values written out: fine
    bomb = "[&a [x,x,x,x,x,x,x,x,x,x]"
    for prev, name in zip("abcd", "bcde"):
        bomb += f", &{name} [{','.join(['*' + prev] * 10)}]"
    with pytest.raises(ConfigError, match="override: the YAML expands"):
        load_config(overrides=[f"data.options.x={bomb}]"])
    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {name: triplet}\nlosses: [*b]\n")  # ordinary aliases still work
    with pytest.raises(ConfigError, match="base: unknown key"):
        load_config(path)


def test_recursive_alias_is_a_clear_error(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("data:\n  options: &o {self: *o}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "\n" not in str(exc.value)
