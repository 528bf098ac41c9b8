"""Printing and JSON export shared by the checker reports.

Reports print like scipy's ``OptimizeResult``: one ``name: value`` line per
field, right-aligned names, arrays shown by shape and range instead of dumped.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from toysae._config import _plain


def _short(value) -> str:
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return f"array(shape={value.shape})"
        if value.dtype == bool:
            return f"array(shape={value.shape}, {int(value.sum())} True)"
        if value.size <= 6 and value.ndim == 1:
            return np.array2string(value, precision=4)
        return (f"array(shape={value.shape}, min={value.min():.4g}, "
                f"max={value.max():.4g})")
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)) and len(value) > 4:
        head = ", ".join(_short(v) for v in value[:3])
        return f"[{head}, ... ({len(value)} items)]"
    if isinstance(value, ReportMixin):
        return f"{type(value).__name__}(passed={getattr(value, 'passed', '?')})"
    return repr(value)


class ReportMixin:
    """``__str__``/``__repr__`` in the OptimizeResult style, ``to_dict``/``to_json``.

    Subclasses may list in ``_ARRAY_FIELDS`` the large per-sample/per-pair
    arrays that JSON leaves out unless ``include_arrays=True``.
    """

    _ARRAY_FIELDS: tuple[str, ...] = ()

    def _lines(self) -> list[tuple[str, str]]:
        return [(f.name, _short(getattr(self, f.name))) for f in dataclasses.fields(self)
                if f.repr]

    def __str__(self) -> str:
        lines = self._lines()
        width = max(len(k) for k, _ in lines)
        body = "\n".join(f"{k.rjust(width)}: {v}" for k, v in lines)
        return f"{type(self).__name__}\n{body}"

    __repr__ = __str__

    def to_dict(self, include_arrays: bool = False) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in self._ARRAY_FIELDS and not include_arrays:
                continue
            if isinstance(value, ReportMixin):
                out[f.name] = value.to_dict(include_arrays)
            elif isinstance(value, (list, tuple)) and value and isinstance(value[0],
                                                                          ReportMixin):
                out[f.name] = [v.to_dict(include_arrays) for v in value]
            else:
                out[f.name] = _plain(value)
        return out

    def to_json(self, include_arrays: bool = False, **kwargs) -> str:
        """JSON of the report; large arrays only with ``include_arrays=True``."""
        return json.dumps(self.to_dict(include_arrays), **{"indent": 2, **kwargs})
