"""``History``: one record (dict of numbers) per learning step, read by column."""

from __future__ import annotations

import json

import numpy as np


class History:
    """Per-step records; ``history["objective"]`` is a float array over steps.

    Keys missing from some records (e.g. a callback run every few steps) read
    as NaN there.
    """

    def __init__(self):
        self.records: list[dict[str, float]] = []

    def append(self, record: dict) -> None:
        self.records.append(dict(record))

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for record in self.records:
            seen.update(dict.fromkeys(record))
        return list(seen)

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self.keys():
            raise KeyError(f"history has no column {key!r}; columns: {self.keys()}")
        return np.array([r.get(key, np.nan) for r in self.records], dtype=float)

    def __len__(self) -> int:
        return len(self.records)

    def as_dict(self) -> dict[str, list[float]]:
        return {key: self[key].tolist() for key in self.keys()}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.as_dict(), **{"indent": 2, **kwargs})

    def __repr__(self) -> str:
        return f"History({len(self)} steps, columns={self.keys()})"
