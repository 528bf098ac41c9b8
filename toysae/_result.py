"""The one result vocabulary: every solver result, training result, checker report and
history derives from :class:`Result`.

The words (docs/design.md, "Results"):

- ``success`` (solvers and training): the method did what it was asked, e.g. every
  sample met the stopping rule, the run trained all its planned steps;
- ``passed`` (checkers): the condition checked holds within its tolerance;
- ``message``: what happened, in words, for a person;
- ``n_iter``: iterations (solver) or steps (training), where that applies.

A result is a dataclass. It prints like scipy's ``OptimizeResult``: one
``name: value`` line per field, names right-aligned, arrays shown by shape and
range instead of dumped, nested results as one line each. ``to_dict()`` /
``to_json()`` export it; large per-sample arrays listed in ``_ARRAY_FIELDS``
stay out of the JSON unless ``include_arrays=True``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping

import numpy as np

from toysae._config import jsonable


def verdict(result) -> str:
    """``success=True`` / ``passed=False`` / the class name alone: one line for a nested result."""
    for word in ("success", "passed"):
        if hasattr(result, word):
            return f"{type(result).__name__}({word}={bool(getattr(result, word))})"
    return repr(result) if isinstance(result, History) else type(result).__name__


def short(value) -> str:
    """A one-line rendering of a field value (arrays by shape and range)."""
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return f"array(shape={value.shape})"
        if value.dtype == bool:
            return f"array(shape={value.shape}, {int(value.sum())} True)"
        if value.size <= 6 and value.ndim == 1:
            return np.array2string(value, precision=4)
        return f"array(shape={value.shape}, min={value.min():.4g}, max={value.max():.4g})"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Result):
        return verdict(value)
    if isinstance(value, (list, tuple)) and len(value) > 4:
        head = ", ".join(short(v) for v in value[:3])
        return f"[{head}, ... ({len(value)} items)]"
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], Result):
        return "[" + ", ".join(short(v) for v in value) + "]"
    if hasattr(value, "architecture") and hasattr(value, "width"):  # an SAE module
        return f"{type(value).__name__}(d={value.d}, width={value.width})"
    return repr(value)


class Result:
    """Base of every result dataclass: one repr, ``to_dict``, ``to_json``.

    Subclasses are dataclasses declared with ``repr=False`` (so this repr is
    used) that carry ``success`` or ``passed``, and ``message``.
    """

    _ARRAY_FIELDS: tuple[str, ...] = ()
    # Fields whose value is an object, not data (an SAE module, a config): shown, not exported.
    _OBJECT_FIELDS: tuple[str, ...] = ()

    def _lines(self) -> list[tuple[str, str]]:
        return [(f.name, short(getattr(self, f.name))) for f in dataclasses.fields(self)
                if f.repr and f.name != "message"]

    def __str__(self) -> str:
        lines = self._lines()
        width = max((len(k) for k, _ in lines), default=0)
        body = "\n".join(f"{k.rjust(width)}: {v}" for k, v in lines)
        message = getattr(self, "message", "")
        return f"{type(self).__name__}\n{body}" + (f"\n{message}" if message else "")

    __repr__ = __str__

    def to_dict(self, include_arrays: bool = False) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            if f.name in self._OBJECT_FIELDS or (f.name in self._ARRAY_FIELDS
                                                  and not include_arrays):
                continue
            out[f.name] = _export(getattr(self, f.name), include_arrays)
        return out

    def to_json(self, include_arrays: bool = False, **kwargs) -> str:
        """JSON of the result; large arrays only with ``include_arrays=True``."""
        return json.dumps(self.to_dict(include_arrays), **{"indent": 2, **kwargs})


def _export(value, include_arrays: bool):
    if isinstance(value, Result):
        return value.to_dict(include_arrays)
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], Result):
        return [v.to_dict(include_arrays) for v in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return jsonable(value)


class History(Result):
    """Rows of numbers logged along a run (training steps, learning steps), read by column.

    ``history["loss"]`` is a float array over the rows; a column missing from
    some rows (a callback run every few steps) reads NaN there. ``len`` is the
    number of rows; iterating gives the column names, like a dict of columns.
    ``last`` is the final row. ``n_iter`` is the number of rows.
    """

    def __init__(self, rows: list[dict[str, float]] | None = None):
        self.rows: list[dict[str, float]] = []
        self._columns: dict[str, None] = {}
        for row in rows or ():
            self.append(row)

    def append(self, row: Mapping[str, float]) -> None:
        row = {str(k): float(v) for k, v in row.items()}
        self.rows.append(row)
        self._columns.update(dict.fromkeys(row))

    @property
    def n_iter(self) -> int:
        return len(self.rows)

    @property
    def last(self) -> dict[str, float]:
        """The final row (``{}`` when nothing was logged)."""
        return dict(self.rows[-1]) if self.rows else {}

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._columns:
            raise KeyError(f"history has no column {key!r}; columns: {list(self._columns)}")
        return np.array([r.get(key, np.nan) for r in self.rows], dtype=float)

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, key) -> bool:
        return key in self._columns

    def keys(self) -> list[str]:
        return list(self._columns)

    def values(self) -> list[np.ndarray]:
        return [self[k] for k in self._columns]

    def items(self) -> list[tuple[str, np.ndarray]]:
        return [(k, self[k]) for k in self._columns]

    def __eq__(self, other) -> bool:
        return isinstance(other, History) and self.rows == other.rows

    __hash__ = None

    def to_dict(self, include_arrays: bool = False) -> dict[str, list[float]]:
        return {key: self[key].tolist() for key in self._columns}

    def __str__(self) -> str:
        last = ", ".join(f"{k}={v:.4g}" for k, v in self.last.items())
        return f"History({len(self)} rows; last: {last or 'none'})"

    __repr__ = __str__
