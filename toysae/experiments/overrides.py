"""An experiment's config from its defaults, a JSON file and ``key=value`` overrides.

``toysae run NAME [--quick] [--config FILE.json] [--set key=value ...]`` and
``toysae sweep`` resolve a config the same way (docs/design.md, "Runs, overrides
and sweeps"):

1. the base: ``Config.quick()`` with ``--quick``, else ``Config()`` (the full run);
2. the JSON file, a full or partial config (nested objects merge into the
   nested configs, so ``{"train": {"lr": 0.01}}`` changes one field);
3. each ``key=value`` in order; nested configs are reached with dots
   (``train.lr=0.01``).

A value is read against the field's annotated type: ``int`` (``1000``,
``1_000``; never ``1.5``), ``float``, ``bool`` (true/false, yes/no, on/off,
1/0), ``str`` (as written), ``None`` (``none`` or ``null``, where the field
allows it), ``tuple`` (``1,2,3`` or a JSON list ``[1, 2, 3]``; nested lists
become nested tuples) and nested configs (a JSON object, merged). A union such
as ``float | tuple | None`` takes the first member the text reads as; a field
annotated ``Annotated[int, Bounds(1)]`` reads as an ``int`` (``typing.get_type_hints``
drops the ``Annotated`` part). The config's own ``__post_init__`` then validates
the result (``toysae._config.validate_fields`` and its own cross-field checks). Every error names
the key; an unknown key also lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "apply_overrides", "parse_assignment", "parse_value",
           "read_config_file", "resolve_config", "split_top_level", "valid_keys"]

_INT = re.compile(r"[+-]?\d(_?\d)*")
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
_NONE = {"none", "null"}


class ConfigError(ValueError):
    """A config override that names no field, reads as the wrong type, or fails the
    config's validation. The message names the key."""


# -- types --------------------------------------------------------------------------
def _is_config(hint) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _hints(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def _union_args(hint) -> tuple | None:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return None


def _describe(hint) -> str:
    args = _union_args(hint)
    if args is not None:
        names = [_describe(a) for a in args]
        return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
    if hint is type(None):
        return "None"
    if typing.get_origin(hint) is tuple:
        inner = typing.get_args(hint)
        return f"tuple of {_describe(inner[0])}" if inner else "tuple"
    if _is_config(hint):
        return f"{hint.__name__} (a JSON object)"
    return getattr(hint, "__name__", str(hint))


def valid_keys(cls, prefix: str = "", *, nested: bool = True) -> list[str]:
    """Every settable key of config class ``cls``, nested configs' fields dotted
    (``nested=False``: this level only, a nested config shown as ``name.<key>``)."""
    keys = []
    for name, hint in _hints(cls).items():
        sub = _config_in(hint)
        if sub is not None and not nested:
            keys.append(f"{prefix}{name}.<key>")
            continue
        keys.append(prefix + name)
        if sub is not None:
            keys.extend(valid_keys(sub, f"{prefix}{name}."))
    return keys


def _config_in(hint):
    """The config class of a field typed ``X`` or ``X | None``, if any."""
    if _is_config(hint):
        return hint
    for arg in _union_args(hint) or ():
        if _is_config(arg):
            return arg
    return None


# -- values -------------------------------------------------------------------------
def split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets and quotes: ``"[1,2],[3],a"`` -> 3 items."""
    items, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "[({":
            depth += 1
        elif ch in "])}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    items.append(text[start:].strip())
    return items


def _scalar_from_text(text: str):
    """An untyped tuple item: JSON number/bool/null if it reads as one, else the string."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if not isinstance(value, (list, dict)) else _tuples(value)


def _tuples(value):
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


class _Mismatch(Exception):
    """The value does not read as the type (the caller words the error)."""


def _from_text(text: str, hint):
    """Read command-line ``text`` as a value of type ``hint`` (raises _Mismatch)."""
    args = _union_args(hint)
    if args is not None:
        if type(None) in args and text.strip().lower() in _NONE:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _from_text(text, arg)
            except _Mismatch:
                continue
        raise _Mismatch
    if hint is Any:
        return _scalar_from_text(text.strip())
    if hint is type(None):
        if text.strip().lower() in _NONE:
            return None
        raise _Mismatch
    if hint is bool:
        word = text.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise _Mismatch
    if hint is int:
        if _INT.fullmatch(text.strip()):
            return int(text.strip())
        raise _Mismatch
    if hint is float:
        try:
            return float(text)
        except ValueError:
            raise _Mismatch from None
    if hint is str:
        return text
    if hint is tuple or typing.get_origin(hint) is tuple:
        return _tuple_from_text(text, hint)
    if hint is dict or typing.get_origin(hint) is dict or _is_config(hint):
        return _json_as(text, dict)  # a nested config's object is merged by the caller
    raise _Mismatch


def _json_as(text: str, kind: type):
    """``text`` parsed as JSON, which must give a ``kind``; ``_Mismatch`` otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise _Mismatch from None
    if not isinstance(value, kind):
        raise _Mismatch
    return value


def _tuple_from_text(text: str, hint) -> tuple:
    inner = typing.get_args(hint)
    item = inner[0] if inner and (len(inner) == 1 or inner[1] is Ellipsis) else Any
    stripped = text.strip()
    if stripped.startswith("[") or stripped.startswith("("):
        if stripped.startswith("("):
            stripped = "[" + stripped[1:-1] + "]" if stripped.endswith(")") else stripped
        return tuple(_from_json(v, item) for v in _json_as(stripped, list))
    if not stripped:
        return ()
    return tuple(_scalar_from_text(part) if item is Any else _from_text(part, item)
                 for part in split_top_level(stripped))


def _from_json(value, hint):
    """Check a JSON value against type ``hint`` (lists become tuples; raises _Mismatch)."""
    args = _union_args(hint)
    if args is not None:
        for arg in args:
            try:
                return _from_json(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch
    if hint is Any:
        return _tuples(value)
    if hint is type(None):
        if value is None:
            return None
        raise _Mismatch
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if hint is tuple or typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        inner = typing.get_args(hint)
        item = inner[0] if inner and (len(inner) == 1 or inner[1] is Ellipsis) else Any
        return tuple(_from_json(v, item) for v in value)
    if hint is dict or typing.get_origin(hint) is dict or _is_config(hint):
        if isinstance(value, dict):
            return value
        raise _Mismatch
    raise _Mismatch


def parse_value(text: str, hint, key: str = "value"):
    """``text`` read as a value of type ``hint``; ConfigError naming ``key`` otherwise."""
    if not isinstance(text, str):
        raise TypeError(f"{key}: the text to read must be a str, got {type(text).__name__}")
    try:
        return _from_text(text, hint)
    except _Mismatch:
        raise ConfigError(f"{key}={text!r}: expected {_describe(hint)}") from None


def parse_assignment(text: str) -> tuple[str, str]:
    """``"key=value"`` -> ``("key", "value")`` (the first ``=`` splits)."""
    if not isinstance(text, str) or "=" not in text or not text.split("=", 1)[0].strip():
        raise ConfigError(f"an override must read key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value


# -- applying -----------------------------------------------------------------------
def _unknown(cls, name: str, where: str) -> ConfigError:
    keys = valid_keys(cls, where, nested=False)
    return ConfigError(f"{where}{name}: {cls.__name__} has no such key; valid keys: "
                       f"{', '.join(keys)}")


def _set(changes: dict, cls, path: list[str], value, raw: bool, where: str = "") -> None:
    """Record ``value`` at dotted ``path`` in the nested ``changes`` of config class ``cls``;
    ``raw``: ``value`` is command-line text, else a JSON value."""
    name, rest = path[0], path[1:]
    hints = _hints(cls)
    if name not in hints:
        raise _unknown(cls, name, where)
    hint, key = hints[name], f"{where}{name}"
    sub = _config_in(hint)
    if rest:
        if sub is None:
            raise ConfigError(f"{key}.{'.'.join(rest)}: {key} is not a config with keys (it "
                              f"holds {_describe(hint)})")
        nested = changes.setdefault(name, {})
        if not isinstance(nested, dict):
            nested = changes[name] = {}
        _set(nested, sub, rest, value, raw, f"{key}.")
        return
    try:
        converted = _from_text(value, hint) if raw else _from_json(value, hint)
    except _Mismatch:
        shown = value if raw else json.dumps(value)
        raise ConfigError(f"{key}={shown}: expected {_describe(hint)}") from None
    if sub is not None and isinstance(converted, dict):
        nested = changes.setdefault(name, {})
        if not isinstance(nested, dict):
            nested = changes[name] = {}
        for inner, inner_value in converted.items():
            _set(nested, sub, [inner], inner_value, False, f"{key}.")
    else:
        changes[name] = converted


def _rebuild(config, changes: dict, where: str = ""):
    """``config`` with the nested ``changes`` applied; each level validated by its class."""
    updates = {}
    for name, change in changes.items():
        current = getattr(config, name)
        if isinstance(change, dict) and _is_config(type(current)):
            updates[name] = _rebuild(current, change, f"{where}{name}.")
        elif isinstance(change, dict):  # a nested config where the default is None
            cls = _config_in(_hints(type(config))[name])
            updates[name] = _rebuild(cls(), change, f"{where}{name}.")
        else:
            updates[name] = change
    try:
        return dataclasses.replace(config, **updates)
    except (TypeError, ValueError) as err:
        label = where.rstrip(".") or "config"
        raise ConfigError(f"{label}: {err}") from err


def apply_overrides(config, overrides: Mapping[str, Any] | Iterable[tuple[str, Any]], *,
                    strings_are_text: bool = True):
    """``config`` (a frozen config dataclass) with dotted-key overrides applied.

    A ``str`` value is read as command-line text against the field's type
    (``strings_are_text=False``: as a JSON string, for values read from a JSON
    file); any other value is checked as a JSON value (lists as tuples, dicts
    merged into nested configs). The result is validated by the config
    classes; :class:`ConfigError` (a ValueError) names the key on any problem.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config must be a config dataclass instance, got {config!r}")
    items = overrides.items() if isinstance(overrides, Mapping) else overrides
    changes: dict = {}
    for key, value in items:
        if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
            raise ConfigError(f"a config key must be a dotted name, got {key!r}")
        _set(changes, type(config), key.split("."), value,
             strings_are_text and isinstance(value, str))
    return _rebuild(config, changes) if changes else config


def read_config_file(path: str | os.PathLike) -> dict:
    """The JSON object in ``path`` (a full or partial config)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config: no file at {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"--config: {path} is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path} must hold a JSON object, got "
                          f"{type(data).__name__}")
    return data


def resolve_config(config_class, *, quick: bool = False,
                   config_file: str | os.PathLike | None = None,
                   sets: Iterable[str] = ()):
    """The config of one run: ``quick()`` or the defaults, then the file, then ``key=value``
    assignments in order (module docstring)."""
    if not isinstance(quick, bool):
        raise TypeError(f"quick must be a bool, got {quick!r}")
    config = config_class.quick() if quick else config_class()
    if config_file is not None:
        config = apply_overrides(config, read_config_file(config_file), strings_are_text=False)
    assignments = [parse_assignment(text) for text in sets]
    return apply_overrides(config, assignments) if assignments else config
