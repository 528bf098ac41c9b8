"""Sweeps: one experiment over the product of config values, each point its own process.

``toysae sweep NAME --grid key=v1,v2 --grid key2=... [--quick] [--config FILE]
[--set key=value ...]`` resolves the base config as ``toysae run`` does
(``toysae.experiments.overrides``), then every combination of the grid's
values on top of it (the last ``--grid`` varies fastest). Every point's config
is built and validated before anything runs. The points run through joblib:
local worker processes by default (the ``loky`` backend), or any joblib
backend by name (``ray``, ... where the user has one registered); with
``n_jobs=1`` joblib runs them one after another in this process. Backend
``dask`` runs them on a dask.distributed cluster (``toysae.experiments.dask_cluster``:
a LocalCluster of ``n_jobs`` worker processes started for the sweep, or the
scheduler at ``scheduler``); the workers write into the same folders, so they
need to see them (one machine, or a filesystem shared with this one).

Output, under ``out_dir``:

- one folder per point, named from its grid values (``lam=0.1,seed=0``),
  holding ``config.json`` (the point's full config, readable by ``--config``)
  and the experiment's own outputs; a failed point also leaves ``error.txt``
  (its traceback, or why its worker died); a finished one ``complete.json``,
  written last: the SHA-256 of ``config.json`` and of every output, and the
  point's report;
- ``summary.json`` and ``summary.md``: per point its grid values, status
  (``ok``, ``failed``, ``not run``), wall time, the one-line error of a failed
  point, and its *headline numbers*: every number or bool of the experiment
  result's ``to_dict()`` outside ``config``, nested objects flattened to dotted
  names (``toy.pca_mmcs``), lists left out. The summary is rewritten as each
  point ends, so a long sweep can be watched. The markdown table shows the
  first few headline columns; the JSON holds them all.

A point that raises, or whose worker dies, is recorded as failed and the
others go on; the result's ``success`` is False when any point failed.

Running the same sweep again (after a kill, say) keeps every point whose
``complete.json`` matches its config and whose files still have the recorded
hashes (``kept`` in the summary: an earlier run's report, nothing rerun), and
runs the others from scratch; ``force=True`` (``--force``) reruns every point.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from toysae._config import jsonable
from toysae._io import file_sha256, remove_leftover_temporaries, write_text
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
#: A finished point's record: the hashes of its files and its report (module docstring).
COMPLETE = "complete.json"
CONFIG = "config.json"
ERROR = "error.txt"
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._+=,-]+")
_MAX_NAME = 120


@dataclass(repr=False)
class SweepPoint(Result):
    """One point of a sweep.

    success : the experiment ran and saved its outputs. message : ``"ok"`` or
    the one-line error. name : its folder's name. values : the grid values
    (dotted key -> value). status : "ok", "failed" or "not run". wall_time :
    seconds in the worker. headline : the result's headline numbers (module
    docstring). out_dir : its folder. kept : not rerun, its outputs being those of
    an earlier run of the same point, found complete and intact.
    """

    success: bool
    message: str
    name: str
    values: dict
    status: str
    wall_time: float
    headline: dict
    out_dir: str
    kept: bool = False


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
            rows.append([p.name, *(_cell(p.values[k]) for k in keys),
                         f"{p.status} (kept)" if p.kept else p.status,
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


def _run_point(index: int, experiment: str, config_json: str, out_dir: str,
               worker: bool = False) -> tuple[int, dict]:
    """Run one point (in a worker process): load its config, run, save; (index, report).
    An ok report lists the SHA-256 of every file it wrote (``files``, by name in
    ``out_dir``). ``worker``: in a local worker process started with Ctrl-C ignored
    (:func:`_spawning_ignores_interrupts`), where Ctrl-C acts during the point only."""
    start = time.perf_counter()
    with _interruptible(worker):
        try:
            from toysae import experiments

            module = experiments.get(experiment)
            result = module.run(module.Config.from_json(config_json))
            paths = experiments.save_outputs(module, result, out_dir)
            files = {Path(p).relative_to(out_dir).as_posix(): file_sha256(p) for p in paths}
            return index, {"status": "ok", "message": "ok", "headline": headline(result),
                           "wall_time": time.perf_counter() - start, "files": files}
        except Exception as err:  # a failed point is data: recorded, the sweep goes on
            write_text(Path(out_dir) / ERROR, traceback.format_exc())
            return index, {"status": "failed", "message": _one_line(err), "headline": {},
                           "wall_time": time.perf_counter() - start}
        except KeyboardInterrupt:
            if not worker:
                raise
            # The sweep itself was interrupted too and is ending its workers: a quiet
            # return (a worker's traceback would say nothing), the writes unwound.
            return index, {"status": "failed", "message": "interrupted", "headline": {},
                           "wall_time": time.perf_counter() - start}


# Ctrl-C in a terminal reaches every process of the foreground group: the sweep and its
# local workers. A worker interrupted while it starts (importing) or between points prints
# a traceback from joblib's own code, so workers are started with SIGINT ignored (the one
# disposition that survives exec, and Python then keeps it) and take it back only while
# they run a point, whose writes then unwind and remove their temporary files.
_SPAWNING_BACKENDS = ("loky", "multiprocessing")


@contextlib.contextmanager
def _spawning_ignores_interrupts(active: bool):
    """Ignore SIGINT in this process while local workers are started (a Ctrl-C in that
    moment is dropped; the next one acts)."""
    if not active or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@contextlib.contextmanager
def _interruptible(worker: bool):
    """In a local worker: Ctrl-C raises KeyboardInterrupt inside, ignored after."""
    if not worker or threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _check_backend(backend: str, n_jobs: int, scheduler: str | None) -> None:
    if not isinstance(backend, str) or not backend:
        raise TypeError(f"backend must be a joblib backend name or 'dask', got {backend!r}")
    if backend == "dask":
        from toysae.experiments.dask_cluster import require_distributed

        require_distributed("backend='dask'")
        if scheduler is not None:
            if not isinstance(scheduler, str) or not scheduler.strip():
                raise TypeError("scheduler must be a dask scheduler address such as "
                                f"'tcp://host:port', or None, got {scheduler!r}")
            if n_jobs != -1:
                raise ValueError(f"n_jobs={n_jobs} sizes the LocalCluster a sweep starts; "
                                 f"with scheduler={scheduler!r} the cluster's own workers run "
                                 "the points (leave n_jobs at -1)")
        return
    if scheduler is not None:
        raise ValueError(f"scheduler={scheduler!r} is the address of a dask scheduler, for "
                         f"backend='dask', not {backend!r}")
    import joblib

    try:
        with joblib.parallel_config(backend=backend, n_jobs=n_jobs):
            pass
    except (ValueError, ImportError) as err:
        raise ValueError(f"backend {backend!r}: {err}") from err


@contextlib.contextmanager
def _runner(backend: str, n_jobs: int, scheduler: str | None, n_points: int):
    """A function of the calls to make (``_run_point``'s arguments) that yields
    ``(index, report)`` as each point ends, on the backend; for dask, the cluster is
    reached (or started) on entry and closed on exit. A failure of the machinery
    itself (a loky worker dying) is raised from the iterator."""
    if backend == "dask":
        from toysae.experiments.dask_cluster import dask_client, run_calls

        if scheduler is None:
            import joblib

            workers = n_jobs if n_jobs > 0 else max(1, joblib.cpu_count() + 1 + n_jobs)
            workers = max(1, min(workers, n_points))
            in_flight = workers  # one point per worker: a worker's death is its point's
        else:
            workers, in_flight = 1, None  # the cluster's own workers; it may be adaptive
        with dask_client(scheduler, workers) if n_points else contextlib.nullcontext() as client:
            def run(calls):
                for pos, value, err in run_calls(client, _run_point, calls,
                                                 max_in_flight=in_flight):
                    if err is None:
                        yield value
                    else:  # the point's worker died, or dask could not run it at all
                        index, _, _, folder = calls[pos]
                        message = _one_line(err)
                        write_text(Path(folder) / ERROR, message + "\n")
                        yield index, {"status": "failed", "message": message,
                                      "headline": {}, "wall_time": 0.0}

            yield run
        return
    import joblib

    def run(calls):
        with joblib.parallel_config(backend=backend, n_jobs=n_jobs):
            spawns = backend in _SPAWNING_BACKENDS and joblib.effective_n_jobs(n_jobs) > 1
            # The call starts the workers and dispatches the first points.
            with _spawning_ignores_interrupts(spawns):
                reports = joblib.Parallel(return_as="generator_unordered")(
                    joblib.delayed(_run_point)(*args, worker=spawns) for args in calls)
            yield from reports

    yield run


def _kept_report(folder: Path, config_text: str) -> dict | None:
    """The report recorded in ``folder``'s complete.json when it is for this config and
    every file it lists still has its recorded hash; None otherwise (rerun the point)."""
    try:
        record = json.loads((folder / COMPLETE).read_text())
        files, report = record["files"], record["report"]
        if not (isinstance(files, dict) and isinstance(report, dict)
                and report.get("status") == "ok"
                and files.get(CONFIG) == _text_sha256(config_text)
                and all(file_sha256(folder / name) == digest
                        for name, digest in files.items())):
            return None
        return {k: report[k] for k in ("status", "message", "headline", "wall_time")}
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, unreadable or not ours: the point runs again


def _text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _record_completion(folder: Path, report: dict) -> dict:
    """Check the files a worker reported against this machine's copies, then write
    complete.json; the report, or a failed one when the files are not all here intact."""
    files = {CONFIG: file_sha256(folder / CONFIG), **report["files"]}
    wrong = []
    for name, digest in report["files"].items():
        try:
            if file_sha256(folder / name) != digest:
                wrong.append(f"{name} (other bytes)")
        except OSError:
            wrong.append(f"{name} (missing)")
    if wrong:
        message = (f"the point's outputs are not in {folder} as its worker wrote them: "
                   f"{', '.join(wrong)} (the workers must write to a folder this machine "
                   "sees: one machine, or a shared filesystem)")
        write_text(folder / ERROR, message + "\n")
        return {**report, "status": "failed", "message": message, "headline": {}}
    kept = {k: report[k] for k in ("status", "message", "headline", "wall_time")}
    write_text(folder / COMPLETE, json.dumps({"files": files, "report": kept}, indent=1)
               + "\n")
    return report


def _clear_point(folder: Path) -> None:
    """Before a point runs: no completion record (so a kill mid-run leaves none), no old
    error, no temporary files of a killed earlier run."""
    for name in (COMPLETE, ERROR):
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    remove_leftover_temporaries(folder)


def sweep(experiment: str, grid: Mapping[str, Sequence], *, quick: bool = False,
          config_file: str | os.PathLike | None = None, sets: Sequence[str] = (),
          out_dir: str | os.PathLike | None = None, n_jobs: int = -1, backend: str = "loky",
          scheduler: str | None = None, force: bool = False,
          on_point: Callable[[SweepPoint, int, int], None] | None = None) -> SweepResult:
    """Run ``experiment`` at every point of ``grid`` (dotted key -> values) and write the
    point folders and the summary (module docstring).

    A grid value that is a ``str`` is read like ``--set`` text against the
    field's type; any other value is checked as a JSON value. ``quick``,
    ``config_file``, ``sets``: the base config, as for ``toysae run``.
    ``out_dir`` defaults to ``sweeps/<experiment>``. ``n_jobs``: joblib's
    (``-1``: every core; for ``backend="dask"`` the LocalCluster's worker
    count). ``backend``: a joblib backend's name, or ``"dask"``, whose
    ``scheduler`` is a dask scheduler's address (None: a LocalCluster started
    here). ``force``: rerun the points an earlier run finished. ``on_point(point,
    done, total)`` is called as each point ends (first for the kept ones). Bad
    names, keys, values or configs raise ``ValueError`` before anything runs; an
    unreachable scheduler an ``OSError``, before anything is written.
    """
    from toysae import experiments

    module = experiments.get(experiment)
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"grid must map at least one key to its values, got {grid!r}")
    n_jobs = check_int(n_jobs, "n_jobs")
    if n_jobs == 0:
        raise ValueError("n_jobs must be a positive count or negative (joblib: -1 = every "
                         "core), got 0")
    _check_backend(backend, n_jobs, scheduler)
    if not isinstance(force, bool):
        raise TypeError(f"force must be a bool, got {force!r}")
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
    texts = [config.to_json() + "\n" for config in configs]
    kept = [None if force else _kept_report(folder, text)
            for folder, text in zip(folders, texts, strict=True)]
    points = [SweepPoint(False, "not run", name, values, "not run", 0.0, {}, str(folder))
              if report is None else
              SweepPoint(True, **report, name=name, values=values, out_dir=str(folder),
                         kept=True)
              for name, values, folder, report in zip(names, typed, folders, kept,
                                                      strict=True)]
    todo = [k for k, report in enumerate(kept) if report is None]
    try:
        with contextlib.ExitStack() as stack:
            run = stack.enter_context(_runner(backend, n_jobs, scheduler, len(todo)))
            for k in todo:
                _clear_point(folders[k])
                write_text(folders[k] / CONFIG, texts[k])
            base_info = {"quick": quick, "sets": sets,
                         "config_file": None if config_file is None else str(config_file)}
            grid_values = {k: _distinct([t[k] for t in typed]) for k in keys}
            summary = _write_summary(SweepResult(False, f"{len(points)} points of {experiment}: "
                                                 "running", experiment, base_info, grid_values,
                                                 tuple(points), str(out)), out)
            n_kept = sum(p.kept for p in points)
            if on_point is not None:
                for done, point in enumerate((p for p in points if p.kept), start=1):
                    on_point(point, done, len(points))
            # Workers get absolute folders: a cluster's workers need not share this cwd.
            reports = run([(k, experiment, configs[k].to_json(), str(folders[k].absolute()))
                           for k in todo])
            stack.callback(reports.close)  # before the cluster closes, even on Ctrl-C
            for done in range(n_kept + 1, len(points) + 1):
                try:
                    k, report = next(reports)
                except StopIteration:
                    break
                except Exception as err:  # the machinery failed (a worker died): the rest too
                    line = _one_line(err)
                    points = [p if p.status != "not run" else
                              dataclasses.replace(p, status="failed", message=f"not run: {line}")
                              for p in points]
                    break
                if report["status"] == "ok":
                    report = _record_completion(folders[k], report)
                report = {key: report[key] for key in ("status", "message", "headline",
                                                       "wall_time")}
                points[k] = dataclasses.replace(points[k], success=report["status"] == "ok",
                                                **report)
                summary = _write_summary(dataclasses.replace(summary, points=tuple(points)), out)
                if on_point is not None:
                    on_point(points[k], done, len(points))
    except KeyboardInterrupt:
        # The workers have ended (the runner closed): what their interrupted writes could
        # not remove themselves goes now.
        for k in todo:
            remove_leftover_temporaries(folders[k])
        remove_leftover_temporaries(out)
        raise
    failed = sum(p.status != "ok" for p in points)
    message = (f"{len(points)} points of {experiment}: "
               + ("all ok" if not failed else f"{failed} failed"))
    if n_kept:
        message += f" ({n_kept} kept from an earlier run)"
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
