"""Reading configurations: YAML files (``yaml.safe_load``), dotted overrides, type checking, saving.

A configuration is read from YAML (so Python-object tags are refused), merged with
overrides such as ``train.epochs=3`` or ``losses=[classification,triplet]``, and
validated field by field: an unknown key or a value of the wrong type raises
:class:`ConfigError` naming the dotted key.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from lossensemble.config.schema import Config, ConfigError

__all__ = ["load_config", "config_from_dict", "config_to_dict", "apply_overrides", "read_yaml", "save_config"]


# --------------------------------------------------------------------------------------
# dict <-> dataclass conversion with type checking
# --------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to type ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _from_dict(tp, value, key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp,) = args or (Any,)
        return [_coerce(v, item_tp, f"{key}.{i}") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")  # pragma: no cover


def _from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"{dotted}: unknown key{hint}")
        kwargs[key] = _coerce(value, hints[key], dotted)
    return cls(**kwargs)


def _normalise_losses(data: dict[str, Any]) -> dict[str, Any]:
    """Allow ``losses: [triplet, {name: binomial, options: {...}}]`` shorthand."""
    losses = data.get("losses")
    if isinstance(losses, (list, tuple)):
        data = dict(data)
        data["losses"] = [{"name": item} if isinstance(item, str) else item for item in losses]
    return data


def config_from_dict(data: dict[str, Any] | None) -> Config:
    """Build and validate a :class:`Config` from a plain mapping (as read from YAML)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(data).__name__}")
    return _from_dict(Config, _normalise_losses(data)).validate()


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The plain-data form of a config (for YAML/JSON output)."""
    return dataclasses.asdict(cfg)


# --------------------------------------------------------------------------------------
# overrides and files
# --------------------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    try:
        return safe_load_bounded(text, "override") if text != "" else ""
    except yaml.YAMLError:
        return text


#: Most nodes a YAML document may expand to once its aliases are resolved (a config has a few hundred).
MAX_YAML_NODES = 100_000


def _expanded_size(node: yaml.Node, source: str) -> int:
    """Nodes in ``node``'s tree with every alias expanded (memoised: shared nodes are sized once)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"{source}: a YAML alias refers to itself (recursive structures are not allowed)")
        active.add(key)
        total = 1
        if isinstance(n, yaml.SequenceNode):
            total += sum(size(c) for c in n.value)
        elif isinstance(n, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in n.value)
        active.discard(key)
        sizes[key] = total
        if total > MAX_YAML_NODES:
            raise ConfigError(f"{source}: the YAML expands to more than {MAX_YAML_NODES:,} values once its "
                              f"aliases (*name) are resolved; refusing it (an alias bomb?)")
        return total

    try:
        return size(node)
    except RecursionError:
        raise ConfigError(f"{source}: the YAML is nested too deeply") from None


def safe_load_bounded(text: str, source: str) -> Any:
    """``yaml.safe_load`` that first checks the composed node graph's expanded size (no alias bombs)."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise ConfigError(f"{source}: the YAML is nested too deeply") from None
        if node is None:
            return None
        _expanded_size(node, source)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _yaml_error(path: Path, exc: yaml.YAMLError) -> ConfigError:
    """One line: file, line, column and problem of a YAML syntax error."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    context = getattr(exc, "context", None)
    text = f"{problem} ({context})" if context and problem != str(exc) else problem
    return ConfigError(f"{where}: not valid YAML: {' '.join(str(text).split())}")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with ``key.sub=value`` overrides applied.

    Values are parsed as YAML (``3`` -> int, ``[a,b]`` -> list, ``null`` -> None).
    A numeric path component indexes a list (``losses.1.options.margin=0.2``).
    """
    data = _normalise_losses(copy.deepcopy(data))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. train.epochs=3)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r}: empty key")
        parts = key.split(".")
        node: Any = data
        for depth, part in enumerate(parts[:-1]):
            path = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                node = node[_list_index(node, part, path)]
            else:
                if part not in node or node[part] is None:
                    node[part] = {}
                node = node[part]
                if not isinstance(node, (dict, list)):
                    raise ConfigError(f"{path}: is not a section, cannot set {key}")
        value = _parse_value(raw)
        last = parts[-1]
        if isinstance(node, list):
            node[_list_index(node, last, key)] = value
        else:
            node[last] = value
        data = _normalise_losses(data)
    return data


def _list_index(node: list, part: str, path: str) -> int:
    try:
        idx = int(part)
    except ValueError:
        raise ConfigError(f"{path}: expected a list index, got {part!r}") from None
    if not -len(node) <= idx < len(node):
        raise ConfigError(f"{path}: index {idx} out of range (list has {len(node)} items)")
    return idx


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "options":
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping safely; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                          f"save the config as UTF-8") from None
    try:
        data = safe_load_bounded(text, str(path))
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> Config:
    """Load a config: defaults, then the ``base`` mapping, then the YAML file, then dotted overrides."""
    data = config_to_dict(Config())
    if base:
        data = _merge(data, _normalise_losses(base))
    if path is not None:
        data = _merge(data, _normalise_losses(read_yaml(path)))
    data = apply_overrides(data, overrides or [])
    return config_from_dict(data)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from lossensemble.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
