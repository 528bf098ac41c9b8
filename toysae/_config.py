"""JSON round-trip for the frozen dataclasses used as configs and results."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

import numpy as np


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
