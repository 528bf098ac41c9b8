"""Finished runs of an experiment kept as JSON files, so a stopped run continues where it
stopped (``work_dir``; docs/design.md, "Runs, overrides and sweeps").

A run is one unit of an experiment's work (an architecture at one seed and target, say),
named by a string. :class:`RunStore` keeps each finished unit as
``work_dir/<key>/<unit>.json``, where the key hashes every config field that changes what
a unit computes; the fields that only choose WHICH units run (the lists of architectures,
seeds, targets) are left out of the key, so a larger run reuses a smaller one's units.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from toysae._io import write_text
from toysae.experiments.provenance import source_state


class RunStore:
    """Units of ``config``'s run under ``config.work_dir`` (nothing kept when it is None).

    varied : the top-level config fields left out of the key (``work_dir`` always is).
    """

    def __init__(self, config, varied: tuple[str, ...]):
        self.root = None
        work_dir = config.work_dir
        if work_dir is not None:
            plain = config.to_dict()
            for name in (*varied, "work_dir"):
                plain.pop(name)
            key = hashlib.blake2b(json.dumps(plain, sort_keys=True).encode(),
                                  digest_size=8).hexdigest()
            self.root = Path(work_dir) / key

    def path(self, unit: str) -> Path:
        return self.root / f"{unit}.json"

    def get(self, unit: str) -> dict | None:
        """The kept payload of ``unit`` (as :meth:`put` was given it), or None."""
        if self.root is None or not self.path(unit).is_file():
            return None
        return json.loads(self.path(unit).read_text(encoding="utf-8"))

    def put(self, unit: str, payload: dict) -> None:
        """Keep a finished unit (written whole, then renamed into place), with the commit
        and dirty flag of the code that computed it beside its payload's own keys."""
        if self.root is not None:
            commit, dirty = source_state()
            write_text(self.path(unit), json.dumps({"commit": commit, "dirty": dirty,
                                                    **payload}))
