"""Experiments: one module per experiment, found by discovery.

Every module in this package that defines ``NAME`` is an experiment and must
provide:

- ``NAME: str`` (the CLI name, e.g. ``"seed002-grid"``) and ``DESCRIPTION: str``;
- ``Config``: a frozen dataclass (``toysae._config.JsonMixin``) whose defaults
  are the full experiment, with a ``quick()`` classmethod for the small version
  that ``make demo`` and the tests run;
- ``run(config) -> result``: computes everything, writes nothing; the result
  is a dataclass with ``to_json()``;
- ``save(result, out_dir) -> list[Path]``: writes figures and the JSON of
  numbers into ``out_dir`` (atomically) and returns their paths.

Adding an experiment therefore touches exactly one file. Its ``Config`` is
also what ``toysae run NAME --config FILE --set key=value`` overrides and what
``toysae sweep`` varies (``_overrides.py``, ``_sweep.py``; docs/design.md,
"Runs, overrides and sweeps").
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType


@dataclass(frozen=True)
class ExperimentInfo:
    name: str
    description: str
    module: str


def _discover() -> dict[str, ExperimentInfo]:
    found: dict[str, ExperimentInfo] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        name = getattr(module, "NAME", None)
        if name is None:
            continue
        if name in found:
            raise RuntimeError(f"two experiments are named {name!r}: "
                               f"{found[name].module} and {module.__name__}")
        found[name] = ExperimentInfo(name, module.DESCRIPTION, module.__name__)
    return dict(sorted(found.items()))


def available() -> dict[str, ExperimentInfo]:
    """All experiments, by name."""
    return _discover()


def get(name: str) -> ModuleType:
    """The module of experiment ``name``; ``ValueError`` listing the names if unknown."""
    experiments = _discover()
    if name not in experiments:
        raise ValueError(f"experiment must be one of {list(experiments)}, got {name!r}")
    return importlib.import_module(experiments[name].module)


def run_experiment(name: str, *, quick: bool = False, out_dir: str | Path = "figures",
                   config=None) -> list[Path]:
    """Run experiment ``name`` (full or quick config, or a given one) and save its outputs."""
    module = get(name)
    if config is None:
        config = module.Config.quick() if quick else module.Config()
    result = module.run(config)
    return module.save(result, Path(out_dir))
