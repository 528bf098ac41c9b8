"""Where a stored result came from: the ``provenance`` block that
:func:`toysae.experiments.save_outputs` writes at the top of every ``NAME.json``.

An experiment's ``Result`` holds its numbers and the config that made them; the code and
the machine are not its business, so the runner adds them beside the result's fields
rather than every ``Result`` class growing them. The block (docs/design.md, "Reports"):

- ``schema_version``: the layout of ``NAME.json`` (:data:`SCHEMA_VERSION`: the result's
  fields at the top level and this block beside them), which ``toysae report`` checks;
- ``experiment``: ``NAME``; ``preset``: ``"full"`` (the config is ``Config()``),
  ``"quick"`` (``Config.quick()``) or ``"custom"``, and ``differs_from_full``, the
  top-level config fields that differ from ``Config()``;
- ``toysae_version``, ``commit`` (the git commit of the source tree toysae was
  imported from, None when it is not a git checkout) and ``dirty`` (whether
  tracked files under ``toysae/`` differed from that commit; None without git);
- ``python``, ``torch``, ``numpy`` (versions), ``platform``, ``cpu_count``, and ``date``,
  the UTC day the result was stored (a day, not a time, so two runs of one config on
  one machine and day write the same bytes: sweeps compare backends byte for byte).

The source state is read once per process, at the first :func:`source_state` call
(:func:`toysae.experiments.run_experiment` makes it before running), so a long run records
the commit it started from even if the tree moves on while it runs.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from types import ModuleType

#: The layout of ``NAME.json`` this toysae writes and ``toysae report`` reads.
SCHEMA_VERSION = 1
#: The key of the block in ``NAME.json``; a Result field of that name would collide.
KEY = "provenance"

_PACKAGE = Path(__file__).resolve().parents[1]  # the toysae/ folder this code runs from
_GIT_TIMEOUT = 10.0  # seconds; git answers in milliseconds, a hung one must not stop a run


def _git(*args: str) -> str | None:
    """``git -C <toysae's parent> ARGS`` stdout, stripped; None on any failure."""
    try:
        done = subprocess.run(["git", "-C", str(_PACKAGE.parent), *args], capture_output=True,
                              text=True, timeout=_GIT_TIMEOUT, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


@functools.cache
def source_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout toysae is imported from, read once per process;
    (None, None) when toysae is not in a git checkout of its own (an installed wheel, or a
    folder inside some other repository)."""
    top = _git("rev-parse", "--show-toplevel")
    if top is None or (Path(top) / "toysae").resolve() != _PACKAGE:
        return None, None
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no", "--", "toysae")
    if commit is None or status is None:
        return None, None
    return commit, bool(status)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def preset(module: ModuleType, config) -> tuple[str, list[str]]:
    """(``"full"``, ``"quick"`` or ``"custom"``, the top-level fields of ``config`` that
    differ from ``module.Config()``)."""
    if not isinstance(config, module.Config):
        raise TypeError(f"config must be a {module.__name__}.Config, got "
                        f"{type(config).__name__}")
    full = module.Config()
    differs = [f.name for f in dataclasses.fields(config)
               if getattr(config, f.name) != getattr(full, f.name)]
    if not differs:
        return "full", differs
    return ("quick" if config == module.Config.quick() else "custom"), differs


def provenance(module: ModuleType, config) -> dict:
    """The ``provenance`` block for a result of experiment ``module`` run at ``config``."""
    return block(module.NAME, *preset(module, config))


def block(name: str, preset_name: str, differs: list[str]) -> dict:
    """The ``provenance`` block of a result named ``name`` (an experiment's ``NAME``, or a
    benchmark's, whose JSON ``toysae report`` renders as well) at the preset
    ``preset_name``, whose config differs from the full one in ``differs``."""
    commit, dirty = source_state()
    return {"schema_version": SCHEMA_VERSION, "experiment": name, "preset": preset_name,
            "differs_from_full": list(differs), "toysae_version": _version("toysae"),
            "commit": commit, "dirty": dirty,
            "python": platform.python_version(), "torch": _version("torch"),
            "numpy": _version("numpy"), "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat()}


def check_block(block, path) -> dict:
    """``block`` (the ``provenance`` value read from ``path``) if this toysae can read the
    file it came from; ValueError naming ``path`` otherwise."""
    if not isinstance(block, dict):
        raise ValueError(f"{path}: no {KEY!r} block, so it was not written by toysae's "
                         f"save_outputs at schema version {SCHEMA_VERSION} or later; rerun "
                         "the experiment to store it again")
    version = block.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema version {version!r}, this toysae reads version "
                         f"{SCHEMA_VERSION}; rerun the experiment to store it again")
    return block


def describe(block: dict) -> str:
    """One line for a reader: ``toysae 1a2b3c4; full config; Linux-..., 2 CPUs; 2026-12-07``
    (and ``; 466 s``, the run's wall time, where the block has it)."""
    commit = block.get("commit")
    code = f"toysae {commit[:7]}" if commit else f"toysae {block.get('toysae_version')}"
    if block.get("dirty"):
        code += " with uncommitted changes"
    config = block.get("preset")
    if config == "custom":
        config = f"custom ({', '.join(block.get('differs_from_full', ()))})"
    wall = block.get("wall_time_s")
    return (f"{code}; {config} config; {block.get('platform')}, {block.get('cpu_count')} "
            f"CPUs; {block.get('date')}" + ("" if wall is None else f"; {wall:,.0f} s"))
