"""Sweeps: one experiment over the product of config values, each point its own process.

``toysae sweep NAME --grid key=v1,v2 --grid key2=... [--quick] [--config FILE]
[--set key=value ...]`` resolves the base config as ``toysae run`` does
(``toysae.experiments.overrides``), then every combination of the grid's
values on top of it (the last ``--grid`` varies fastest). Every point's config
is built and validated before anything runs. The points run through joblib:
local worker processes by default (the ``loky`` backend), or any joblib
backend by name (``dask``, ``ray``, ... where the user has one registered);
with ``n_jobs=1`` joblib runs them one after another in this process.

Output, under ``out_dir``:

- one folder per point, named from its grid values (``lam=0.1,seed=0``),
  holding ``config.json`` (the point's full config, readable by ``--config``)
  and the experiment's own outputs; a failed point also leaves ``error.txt``
  (its traceback);
- ``summary.json`` and ``summary.md``: per point its grid values, status
  (``ok``, ``failed``, ``not run``), wall time, the one-line error of a failed
  point, and its *headline numbers*: every number or bool of the experiment
  result's ``to_dict()`` outside ``config``, nested objects flattened to dotted
  names (``toy.pca_mmcs``), lists left out. The summary is rewritten as each
  point ends, so a long sweep can be watched. The markdown table shows the
  first few headline columns; the JSON holds them all.

A point that raises is recorded as failed and the others go on; the
result's ``success`` is False when any point failed.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import re
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from toysae._config import jsonable
from toysae._io import write_text
from toysae._result import Result
from toysae._validation import check_int
from toysae.experiments.overrides import (
    ConfigError,
    apply_overrides,
    parse_assignment,
    resolve_config,
    split_top_level,
)

__all__ = ["SweepPoint", "SweepResult", "headline", "parse_grid", "point_name", "sweep"]

MARKDOWN_HEADLINE_COLUMNS = 8  # more would not fit a screen; summary.json holds every one
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._+=,-]+")
_MAX_NAME = 120


@dataclass(repr=False)
class SweepPoint(Result):
    """One point of a sweep.

    success : the experiment ran and saved its outputs. message : ``"ok"`` or
    the one-line error. name : its folder's name. values : the grid values
    (dotted key -> value). status : "ok", "failed" or "not run". wall_time :
    seconds in the worker. headline : the result's headline numbers (module
    docstring). out_dir : its folder.
    """

    success: bool
    message: str
    name: str
    values: dict
    status: str
    wall_time: float
    headline: dict
    out_dir: str


@dataclass(repr=False)
class SweepResult(Result):
    """A whole sweep: every point, in grid order.

    success : every point succeeded. message : how many failed. experiment :
    its name. base : how the base config was made (quick, config file, sets).
    grid : dotted key -> the values swept. points : SweepPoint per point.
    out_dir : the sweep's folder; paths : the summary files.
    """

    success: bool
    message: str
    experiment: str
    base: dict
    grid: dict
    points: tuple
    out_dir: str
    paths: tuple = field(default=())

    @property
    def n_failed(self) -> int:
        return sum(p.status != "ok" for p in self.points)

    def table(self) -> str:
        """The markdown summary table."""
        keys = list(self.grid)
        numbers: dict[str, None] = {}
        for p in self.points:
            numbers.update(dict.fromkeys(p.headline))
        shown = list(numbers)[:MARKDOWN_HEADLINE_COLUMNS]
        head = ["point", *keys, "status", "wall (s)", *shown, "error"]
        rows = [head, ["---"] * len(head)]
        for p in self.points:
            rows.append([p.name, *(_cell(p.values[k]) for k in keys), p.status,
                         f"{p.wall_time:.1f}", *(_cell(p.headline.get(k)) for k in shown),
                         "" if p.success else p.message])
        lines = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        note = [f"\n{len(numbers) - len(shown)} more headline numbers per point in "
                "summary.json."] if len(numbers) > len(shown) else []
        title = (f"# Sweep of {self.experiment}: {len(self.points)} points, "
                 f"{self.n_failed} not ok\n")
        return "\n".join([title, *lines, *note]) + "\n"


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (tuple, list)):
        return json.dumps(jsonable(value))
    return str(value)


# -- grid ---------------------------------------------------------------------------
def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """``["lam=0.1,0.2", "seed=0,1"]`` -> ``{"lam": ["0.1", "0.2"], "seed": ["0", "1"]}``.

    Commas inside brackets or quotes do not split (``sizes=[1,2],[4,8]``).
    """
    grid: dict[str, list[str]] = {}
    for text in items:
        key, values = parse_assignment(text)
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice")
        parts = split_top_level(values)
        if any(not p for p in parts):
            raise ConfigError(f"--grid {key}={values}: a value is empty")
        grid[key] = parts
    return grid


def _name_part(value) -> str:
    if isinstance(value, (tuple, list)):
        return "-".join(_name_part(v) for v in value) or "empty"
    if value is None:
        return "none"
    return str(value)


def point_name(values: Mapping[str, object]) -> str:
    """A folder name from a point's grid values: ``lam=0.1,seed=0``; tuples joined by
    ``-`` (``sizes=1-2``); characters other than letters, digits and ``._+=,-`` become
    ``-``."""
    text = ",".join(f"{k}={_name_part(v)}" for k, v in values.items())
    name = _NAME_CHARS.sub("-", text).strip(".-") or "point"
    return name[:_MAX_NAME]


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


# -- headline numbers -----------------------------------------------------------------
def headline(result) -> dict[str, float | int | bool]:
    """Every finite number and bool of ``result.to_dict()`` outside ``config``, nested
    objects flattened to dotted names; lists are left out."""
    data = result.to_dict() if hasattr(result, "to_dict") else jsonable(result)
    out: dict[str, float | int | bool] = {}

    def walk(obj: dict, prefix: str) -> None:
        for key, value in obj.items():
            if not prefix and key == "config":
                continue
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, name + ".")
            elif isinstance(value, bool) or (isinstance(value, int)):
                out[name] = value
            elif isinstance(value, float) and math.isfinite(value):
                out[name] = value

    walk(data if isinstance(data, dict) else {}, "")
    return out


# -- running --------------------------------------------------------------------------
def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _run_point(index: int, experiment: str, config_json: str,
               out_dir: str) -> tuple[int, dict]:
    """Run one point (in a worker process): load its config, run, save; (index, report)."""
    start = time.perf_counter()
    try:
        from toysae import experiments

        module = experiments.get(experiment)
        result = module.run(module.Config.from_json(config_json))
        experiments.save_outputs(module, result, out_dir)
        return index, {"status": "ok", "message": "ok", "headline": headline(result),
                       "wall_time": time.perf_counter() - start}
    except Exception as err:  # a failed point is data: recorded, the sweep goes on
        write_text(Path(out_dir) / "error.txt", traceback.format_exc())
        return index, {"status": "failed", "message": _one_line(err), "headline": {},
                       "wall_time": time.perf_counter() - start}


def _check_backend(backend: str, n_jobs: int) -> None:
    import joblib

    if not isinstance(backend, str) or not backend:
        raise TypeError(f"backend must be a joblib backend name, got {backend!r}")
    try:
        with joblib.parallel_config(backend=backend, n_jobs=n_jobs):
            pass
    except (ValueError, ImportError) as err:
        raise ValueError(f"backend {backend!r}: {err}") from err


def sweep(experiment: str, grid: Mapping[str, Sequence], *, quick: bool = False,
          config_file: str | os.PathLike | None = None, sets: Sequence[str] = (),
          out_dir: str | os.PathLike | None = None, n_jobs: int = -1, backend: str = "loky",
          on_point: Callable[[SweepPoint, int, int], None] | None = None) -> SweepResult:
    """Run ``experiment`` at every point of ``grid`` (dotted key -> values) and write the
    point folders and the summary (module docstring).

    A grid value that is a ``str`` is read like ``--set`` text against the
    field's type; any other value is checked as a JSON value. ``quick``,
    ``config_file``, ``sets``: the base config, as for ``toysae run``.
    ``out_dir`` defaults to ``sweeps/<experiment>``. ``n_jobs``: joblib's
    (``-1``: every core). ``on_point(point, done, total)`` is called as each
    point ends. Bad names, keys, values or configs raise ``ValueError`` before
    anything runs.
    """
    from toysae import experiments

    module = experiments.get(experiment)
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"grid must map at least one key to its values, got {grid!r}")
    n_jobs = check_int(n_jobs, "n_jobs")
    if n_jobs == 0:
        raise ValueError("n_jobs must be a positive count or negative (joblib: -1 = every "
                         "core), got 0")
    _check_backend(backend, n_jobs)
    if on_point is not None and not callable(on_point):
        raise TypeError(f"on_point must be callable, got {type(on_point).__name__}")
    sets = list(sets)
    base = resolve_config(module.Config, quick=quick, config_file=config_file, sets=sets)
    set_keys = {parse_assignment(s)[0] for s in sets}
    for key, values in grid.items():
        if key in set_keys:
            raise ConfigError(f"{key} is both swept (--grid) and set (--set); give it once")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ConfigError(f"grid {key}: needs a non-empty list of values, got {values!r}")
    keys = list(grid)
    configs = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        try:
            configs.append(apply_overrides(base, values))
        except ConfigError as err:
            raise ConfigError(f"grid point {point_name(values)}: {err}") from err
    # The values as the configs hold them (text read against the field types).
    typed = [{k: _get(config, k) for k in keys} for config in configs]
    names = _unique([point_name(v) for v in typed])
    out = Path("sweeps") / experiment if out_dir is None else Path(out_dir)
    folders = [out / name for name in names]
    for folder, config in zip(folders, configs, strict=True):
        write_text(folder / "config.json", config.to_json() + "\n")
    points = [SweepPoint(False, "not run", name, values, "not run", 0.0, {}, str(folder))
              for name, values, folder in zip(names, typed, folders, strict=True)]
    base_info = {"quick": quick, "sets": sets,
                 "config_file": None if config_file is None else str(config_file)}
    grid_values = {k: _distinct([t[k] for t in typed]) for k in keys}
    summary = _write_summary(SweepResult(False, f"{len(points)} points of {experiment}: "
                                         "running", experiment, base_info, grid_values,
                                         tuple(points), str(out)), out)

    import joblib

    jobs = (joblib.delayed(_run_point)(k, experiment, config.to_json(), str(folder))
            for k, (config, folder) in enumerate(zip(configs, folders, strict=True)))
    with joblib.parallel_config(backend=backend, n_jobs=n_jobs):
        reports = joblib.Parallel(return_as="generator_unordered")(jobs)
        for done in range(1, len(points) + 1):
            try:
                k, report = next(reports)
            except Exception as err:  # the machinery failed (a worker died): the rest too
                line = _one_line(err)
                points = [p if p.status != "not run" else
                          dataclasses.replace(p, status="failed", message=f"not run: {line}")
                          for p in points]
                break
            points[k] = dataclasses.replace(points[k], success=report["status"] == "ok",
                                            **report)
            summary = _write_summary(dataclasses.replace(summary, points=tuple(points)), out)
            if on_point is not None:
                on_point(points[k], done, len(points))
    failed = sum(p.status != "ok" for p in points)
    message = (f"{len(points)} points of {experiment}: "
               + ("all ok" if not failed else f"{failed} failed"))
    return _write_summary(dataclasses.replace(summary, success=not failed, message=message,
                                              points=tuple(points)), out)


def _get(config, key: str):
    value = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _distinct(values: list) -> list:
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _write_summary(summary: SweepResult, out: Path) -> SweepResult:
    paths = (write_text(out / "summary.json", summary.to_json() + "\n"),
             write_text(out / "summary.md", summary.table()))
    return dataclasses.replace(summary, paths=tuple(str(p) for p in paths))
