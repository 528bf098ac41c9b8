"""Experiments: one module (or package) per experiment, found by discovery.

Every module or package in this folder that defines ``NAME`` is an experiment
and must provide:

- ``NAME: str`` (the CLI name, e.g. ``"seed002-grid"``) and ``DESCRIPTION: str``,
  string literals: the list of experiments reads them from the source without
  importing the module (so ``toysae list`` loads no torch);
- ``Config``: a frozen dataclass (``toysae._config.JsonMixin``) whose defaults
  are the full experiment, with a ``quick()`` classmethod for the small version
  that ``make demo`` and the tests run; its ``__post_init__`` calls
  ``toysae._config.validate_fields(self)`` (types, ranges and choices read from
  the annotations) and then checks what involves several fields;
- ``run(config) -> result``: computes everything, writes nothing; the result
  is a dataclass with ``to_json()`` whose ``config`` field is the config it ran;
- ``save(result, out_dir) -> list[Path]``: writes its figures and tables into
  ``out_dir`` (atomically, ``toysae._io``) and returns their paths.

The JSON of numbers, ``NAME.json``, is written by :func:`save_outputs`, the one
way every caller (the CLI, ``make demo``, sweeps, tests) stores a result; it adds the
``provenance`` block (``provenance.py``). An experiment may also provide
``report_tables(data: dict) -> dict[str, str]``: markdown tables rendered from its
parsed ``NAME.json``, by name, which ``toysae report`` writes into the docs (``report.py``).
Adding an experiment therefore touches one file (or one package) and its test
(docs/design.md, "Add an experiment"). Its ``Config`` is also what ``toysae run
NAME --config FILE --set key=value`` overrides and what ``toysae sweep`` varies
(``overrides.py``, ``sweep.py``; docs/design.md, "Runs, overrides and sweeps").
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import json
import os
import pkgutil
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from toysae._io import write_text
from toysae.experiments import provenance


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
    return dict(_source_literals(module, path, os.stat(path).st_mtime_ns))


@functools.cache
def _source_literals(module: str, path: str, mtime_ns: int) -> dict[str, str]:
    """:func:`_literals` of the source at ``path`` as last modified at ``mtime_ns`` (the
    key: an edited file is read again). Cached, since ``get`` discovers every experiment
    and parsing all of their sources on each call costs a tenth of a second."""
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


def check_replaceable(module: ModuleType, config, out_dir: str | Path) -> None:
    """Refuse, before any work, to store a quick result of ``module`` where ``out_dir``
    already holds one of its results from another config (a full run's, say): quick runs
    are undertrained and must never replace the outputs a reader is shown. ValueError
    naming the file; nothing is read but ``NAME.json``'s config."""
    path = Path(out_dir) / f"{module.NAME}.json"
    quick = module.Config.quick()
    if config != quick or not path.is_file():
        return
    try:
        stored = json.loads(path.read_text(encoding="utf-8")).get("config")
    except (OSError, ValueError, AttributeError):
        return  # not a result of ours (unreadable, not JSON, not an object): nothing to keep
    if stored is not None and stored != json.loads(quick.to_json()):
        raise ValueError(f"{path} holds a {module.NAME} result from a config other than the "
                         "quick one (a full run's?); a quick run never replaces it: choose "
                         "another output folder (make demo writes figures/quick)")


def save_outputs(module: ModuleType, result, out_dir: str | Path, *,
                 wall_time: float | None = None) -> list[Path]:
    """Store ``result`` of experiment ``module`` in ``out_dir``: ``NAME.json`` first, so a
    failing figure never loses the numbers, then the experiment's own ``save`` (figures and
    tables). ``NAME.json`` holds a ``provenance`` block (schema version, code, machine, date:
    :mod:`toysae.experiments.provenance`) and then the fields of ``result.to_json()``, its
    numbers and the config it ran; written atomically. A quick result is refused where a
    result from another config is stored (:func:`check_replaceable`). ``wall_time``: the
    seconds the run took, kept in the provenance block (``wall_time_s``). Returns every path
    written, the JSON first."""
    out_dir = Path(out_dir)
    check_replaceable(module, result.config, out_dir)
    numbers = result.to_dict()
    if provenance.KEY in numbers:
        raise TypeError(f"{type(result).__name__} has a field {provenance.KEY!r}, which "
                        "NAME.json keeps for the runner's provenance block: rename it")
    block = provenance.provenance(module, result.config)
    if wall_time is not None:
        block["wall_time_s"] = round(float(wall_time), 1)
    paths = [write_text(out_dir / f"{module.NAME}.json",
                        json.dumps({provenance.KEY: block, **numbers}, indent=2))]
    paths += module.save(result, out_dir)
    return paths


def run_experiment(name: str, *, quick: bool = False, out_dir: str | Path = "figures",
                   config=None) -> list[Path]:
    """Run experiment ``name`` (full or quick config, or a given one) and store its outputs
    (:func:`save_outputs`; :func:`check_replaceable` is asked before the run)."""
    module = get(name)
    if config is None:
        config = module.Config.quick() if quick else module.Config()
    check_replaceable(module, config, out_dir)
    provenance.source_state()  # the commit this run starts from, not the one it ends at
    start = time.perf_counter()
    result = module.run(config)
    return save_outputs(module, result, out_dir, wall_time=time.perf_counter() - start)
