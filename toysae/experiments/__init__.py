"""Experiments: one module per experiment, found by discovery.

Every module in this package that defines ``NAME`` is an experiment and must
provide:

- ``NAME: str`` (the CLI name, e.g. ``"seed002-grid"``) and ``DESCRIPTION: str``,
  string literals: the list of experiments reads them from the source without
  importing the module (so ``toysae list`` loads no torch);
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

import ast
import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType


@dataclass(frozen=True)
class ExperimentInfo:
    name: str
    description: str
    module: str


def _literals(module: str) -> dict[str, str]:
    """``NAME`` and ``DESCRIPTION`` of ``module``, read from its source, not imported
    (importing an experiment imports torch; ``toysae list`` needs two strings). They
    must be plain string constants; anything else is a RuntimeError naming the module."""
    path = importlib.util.find_spec(module).origin
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), path)
    out = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) and node.value else [])
        for target in targets:
            if isinstance(target, ast.Name) and target.id in ("NAME", "DESCRIPTION"):
                try:
                    value = ast.literal_eval(node.value)
                except (ValueError, TypeError, SyntaxError):
                    value = None
                if not isinstance(value, str):
                    raise RuntimeError(f"{module}: {target.id} must be a string literal "
                                       "(the experiment list reads it from the source)")
                out[target.id] = value
    if "NAME" in out and "DESCRIPTION" not in out:
        raise RuntimeError(f"{module} defines NAME but no DESCRIPTION")
    return out


def _discover() -> dict[str, ExperimentInfo]:
    found: dict[str, ExperimentInfo] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = f"{__name__}.{info.name}"
        literals = _literals(module)
        name = literals.get("NAME")
        if name is None:
            continue
        if name in found:
            raise RuntimeError(f"two experiments are named {name!r}: "
                               f"{found[name].module} and {module}")
        found[name] = ExperimentInfo(name, literals["DESCRIPTION"], module)
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
