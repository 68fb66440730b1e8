"""One registry helper for everything chosen by name: losses, weightings, datasets, backbones.

A :class:`Registry` maps names to objects (classes or factories). Registering the same
name twice is an error; looking up an unknown name raises a one-line
:class:`~lossensemble.errors.UserError` that suggests the closest names. Every place
that lists allowed names (config validation, CLI choices, ``--help`` texts, docs)
reads them from the registry, so adding an entry is one decorator in one file.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from lossensemble.errors import UserError

__all__ = ["Registry", "keyword_options", "check_options"]

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """A read-only mapping ``name -> object`` filled by :meth:`register`.

    Args:
        kind: what the entries are, for messages ("loss", "weighting scheme", ...).
        key: the config key that names an entry, for messages ("weighting.scheme").
    """

    def __init__(self, kind: str, key: str | None = None, plural: str | None = None) -> None:
        self.kind = kind
        self.key = key
        self.plural = plural or f"{kind}s"
        self._entries: dict[str, T] = {}

    # Mapping interface ------------------------------------------------------------
    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"

    # registration -----------------------------------------------------------------
    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; without ``obj``, a decorator that does so.

        Raises:
            ValueError: ``name`` is empty or already registered to another object.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")

        def add(target: T) -> T:
            current = self._entries.get(name)
            if current is not None and current is not target:
                raise ValueError(f"a {self.kind} named {name!r} is already registered ({current!r})")
            self._entries[name] = target
            return target

        return add if obj is None else add(obj)

    def class_decorator(self, name: str, base: type, attribute: str = "name") -> Callable[[T], T]:
        """A decorator registering a subclass of ``base`` under ``name`` and setting ``cls.<attribute> = name``."""

        def decorate(cls):
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise TypeError(f"registering {self.kind} {name!r} expects a {base.__name__} subclass, got {cls!r}")
            self.register(name, cls)
            setattr(cls, attribute, name)
            return cls

        return decorate

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests and plug-ins that replace an entry)."""
        self._entries.pop(name, None)

    # lookup -----------------------------------------------------------------------
    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def get_or_raise(self, name: str) -> T:
        """The entry for ``name``; an unknown name is a :class:`UserError` with the closest names."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UserError(self.unknown_message(name)) from None

    def unknown_message(self, name: object) -> str:
        """The one-line message for an unknown ``name``."""
        close = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        where = f"{self.key}: " if self.key else ""
        return f"{where}unknown {self.kind} {name!r}; {hint}available {self.plural}: {', '.join(self.names())}"


def keyword_options(target: Callable) -> dict[str, Any]:
    """The options of a class or function: its keyword-only parameters with their defaults.

    Registered components declare their user-settable options this way
    (``def __init__(self, names, *, margin: float = 0.2)``), so the options a config
    accepts are read from the code, never retyped.
    """
    func = target.__init__ if isinstance(target, type) else target
    return {
        p.name: p.default
        for p in inspect.signature(func).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def _check_value(label: str, key: str, value: Any, default: Any) -> Any:
    """``value`` checked against the type of ``default`` (ints promoted to float where it is a float)."""
    bad = UserError(f"{label}: option '{key}' expects {type(default).__name__} like {default!r}, got {value!r}")
    if default is None or default is inspect.Parameter.empty:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if not math.isfinite(float(value)):
            raise UserError(f"{label}: option '{key}' must be a finite number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad
        return value
    return value


def check_options(label: str, target: Callable, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` checked against ``target``'s keyword-only parameters (see :func:`keyword_options`).

    An unknown option (with the closest known one suggested) or a value of the wrong
    type is a one-line :class:`UserError` that starts with ``label`` (e.g. ``loss 'triplet'``).
    """
    spec = keyword_options(target)
    checked: dict[str, Any] = {}
    for key, value in options.items():
        if key not in spec:
            close = difflib.get_close_matches(str(key), list(spec), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            known = ", ".join(spec) if spec else "none"
            raise UserError(f"{label}: unknown option '{key}'; {hint}known options: {known}")
        checked[key] = _check_value(label, key, value, spec[key])
    return checked
