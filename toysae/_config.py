"""Frozen dataclasses used as configs and results: JSON round trip, and field checks read
from the annotations.

:func:`validate_fields` checks every field of a config against its annotation,
with the messages of ``toysae._validation``'s checks (each names the field):

- ``int`` (``check_int``: bools and floats refused), ``float`` (``check_float``:
  a finite number), ``bool``, ``str``;
- ``tuple[X, ...]``: a non-empty sequence whose items are checked as ``X``,
  named ``name[k]`` (``check_tuple``); a bare ``tuple`` only as a non-empty sequence;
- ``X | None``: ``None`` or an ``X``; a union of several types: any member;
- a nested config class: an instance of it (``"host must be a ResidualToyConfig,
  got int"``); the nested config validated itself when it was built;
- anything else (``Any``, ``dict``): not checked.

Ranges and choices ride on the annotation with ``typing.Annotated``, and apply
to the number (or string) itself or to each item of a tuple::

    width: Annotated[int, Bounds(1)] = 96               # check_int(minimum=1)
    lam: Annotated[float, POSITIVE] = 0.1               # > 0
    cosines: Annotated[tuple[float, ...], Bounds(0.0, 1.0, max_inclusive=False)] = (0.3,)
    arch: Annotated[tuple[str, ...], OneOf(ARCHITECTURES)] = ARCHITECTURES
    seed: Seed = 0                                      # check_seed

``typing.get_type_hints`` drops ``Annotated``, so the override parser
(``toysae/experiments/overrides.py``) and ``from_dict`` read the plain type. A
rule that involves other fields (a minimum equal to another field, lengths that
must agree) stays a hand-written check in ``__post_init__``, after
``validate_fields(self)``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np

from toysae._validation import SEED_MAX, check_choice, check_float, check_int, check_tuple


def jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and nested dataclasses to JSON types."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def _tupleize(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tupleize(v) for v in value)
    return value


class JsonMixin:
    """``to_json``/``from_json`` for a dataclass whose fields are JSON-able.

    Lists come back as tuples so that a frozen config stays hashable and a
    round trip compares equal.
    """

    def to_dict(self) -> dict:
        return jsonable(self)

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **{"indent": 2, **kwargs})

    @classmethod
    def from_dict(cls, data: dict):
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(names)
        if unknown:
            raise ValueError(f"unknown field(s) for {cls.__name__}: {sorted(unknown)}")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in data.items():
            hint = hints.get(key)
            sub = _dataclass_in(hint)
            if sub is not None and isinstance(value, dict):
                kwargs[key] = sub.from_dict(value)
            else:
                kwargs[key] = _tupleize(value)
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))


def _dataclass_in(hint: Any):
    """The JsonMixin dataclass inside ``hint`` (``X`` or ``X | None``), if any."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and issubclass(hint, JsonMixin):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            found = _dataclass_in(arg)
            if found is not None:
                return found
    return None


# -- field checks from the annotations ---------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Bounds:
    """The range of a numeric field, or of every number in a tuple field, as
    ``Annotated[int, Bounds(1)]``; the arguments are ``check_float``'s (an ``int``
    field takes inclusive bounds only, as ``check_int``)."""

    minimum: float | None = None
    maximum: float | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True

    def __post_init__(self):
        if self.minimum is not None and self.maximum is not None \
                and self.minimum > self.maximum:
            raise ValueError(f"Bounds: minimum {self.minimum} is above maximum {self.maximum}")


@dataclasses.dataclass(frozen=True)
class OneOf:
    """The values a str field (or every item of a tuple field) may take, as
    ``Annotated[str, OneOf(("a", "b"))]``; checked by ``check_choice``."""

    choices: tuple


POSITIVE = Bounds(0.0, min_inclusive=False)
Seed = Annotated[int, Bounds(0, SEED_MAX)]  # what check_seed accepts


@functools.cache
def _field_hints(cls) -> tuple[tuple[str, Any], ...]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.name in hints)


def validate_fields(config) -> None:
    """Check every field of dataclass instance ``config`` against its annotation (module
    docstring); ``TypeError``/``ValueError`` naming the field otherwise. Call it first in
    ``__post_init__``."""
    for name, hint in _field_hints(type(config)):
        _check(getattr(config, name), hint, name, ())


def _check(value, hint, name: str, marks: tuple) -> None:
    """Check ``value`` against type ``hint``; ``marks``: the Bounds/OneOf met on the way."""
    if typing.get_origin(hint) is Annotated:
        base, *extra = typing.get_args(hint)
        _check(value, base, name, marks + tuple(m for m in extra
                                                if isinstance(m, (Bounds, OneOf))))
        return
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        _check_union(value, typing.get_args(hint), name, marks)
        return
    bounds = next((m for m in marks if isinstance(m, Bounds)), None)
    choices = next((m.choices for m in marks if isinstance(m, OneOf)), None)
    if hint is int:
        if bounds is not None and not (bounds.min_inclusive and bounds.max_inclusive):
            raise TypeError(f"{name}: an int field takes inclusive Bounds only")
        check_int(value, name, **({} if bounds is None else
                                   {"minimum": bounds.minimum, "maximum": bounds.maximum}))
    elif hint is float:
        check_float(value, name, **({} if bounds is None else dataclasses.asdict(bounds)))
    elif hint is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {value!r}")
    elif hint is str:
        if choices is not None:
            check_choice(value, name, choices)
        elif not isinstance(value, str):
            raise TypeError(f"{name} must be a str, got {value!r}")
    elif hint is tuple or typing.get_origin(hint) is tuple:
        _check_tuple(value, typing.get_args(hint), name, marks)
    elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, hint):
            raise TypeError(f"{name} must be a {hint.__name__}, got {type(value).__name__}")


def _check_union(value, args: tuple, name: str, marks: tuple) -> None:
    if value is None and type(None) in args:
        return
    members = [a for a in args if a is not type(None)]
    if len(members) == 1:
        _check(value, members[0], name, marks)
        return
    for member in members:
        try:
            _check(value, member, name, marks)
        except (TypeError, ValueError):
            continue
        return
    names = [getattr(m, "__name__", str(m)) for m in args]
    raise TypeError(f"{name} must be {' or '.join(names)}, got {value!r}")


def _check_tuple(value, items: tuple, name: str, marks: tuple) -> None:
    if items and items[-1] is not Ellipsis:  # tuple[int, str]: fixed length
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise TypeError(f"{name} must be a sequence, got {type(value).__name__}")
        if len(value) != len(items):
            raise ValueError(f"{name} must have {len(items)} entries, got {len(value)}")
        for k, (v, item) in enumerate(zip(value, items, strict=True)):
            _check(v, item, f"{name}[{k}]", marks)
        return
    item = items[0] if items else Any

    def each(v, item_name):
        _check(v, item, item_name, marks)

    check_tuple(value, name, each)
