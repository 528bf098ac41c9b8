"""Checkpoints of a training run: the engine's whole state, to resume it bit-identically.

One safetensors file (written atomically, ``toysae._io``) holds every tensor of
the run: each stack's parameters and buffers, Adam's moments and step counts,
the dead-latent counters, the resampling generators' states, the resampling
pool, the reference losses of the divergence check, the recorded
dictionaries and the L0 controller's state (``toysae.sae.l0_control``). Its
metadata holds one JSON document: the run's *key* (what must
match to resume: the TrainConfig, the members' architectures and constructor
arguments, the sparsity coefficients, the objective, the data), the position
(steps and samples trained), the histories and the amortised wall time.
Loading parses a JSON header and raw tensors: nothing is unpickled.

:func:`write_checkpoint` gathers the state of a running engine
(``toysae.sae.engine``) into such a file, :func:`restore_checkpoint` checks a
file against the engine's run and restores it, :func:`run_key` is what the run
must share with a checkpoint to resume it; the rest writes, reads and
validates the file and compares run keys.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from toysae._io import read_safetensors, write_safetensors
from toysae._result import History
from toysae._validation import to_numpy

if TYPE_CHECKING:  # the engine imports this module; it is only named here
    from toysae.sae.engine import Engine

FORMAT = "toysae-train-state"
VERSION = "1"

# The JSON document's keys and the type each must have.
_STATE_KEYS = {"run": dict, "n_iter": int, "n_samples": int, "n_steps": int,
               "wall_time": float, "n_resampled": list, "histories": list,
               "pool_sizes": list, "finished": (str, type(None)),
               "data_scale": (float, type(None))}


def data_fingerprint(data) -> dict:
    """What identifies the training data in a run key.

    A ground-truth world (``toysae.data.GroundTruthData``): its ``fingerprint()``
    (for ``SyntheticData`` its config: the stream is a function of it and the
    run's seed). An (n, d) array or tensor: its shape and a BLAKE2b digest of
    its float32 bytes. An iterable of batches cannot be identified; resuming
    skips as many batches as the checkpoint trained on, so the caller must pass
    the same data from its start.
    """
    from toysae.data import GroundTruthData  # data is the layer below; imported lazily

    if isinstance(data, GroundTruthData):
        return data.fingerprint()
    if isinstance(data, (np.ndarray, torch.Tensor)):
        X = np.ascontiguousarray(to_numpy(data, "data", dtype=np.float32, ndim=2))
        return {"kind": "array", "shape": list(X.shape),
                "blake2b": hashlib.blake2b(X.data, digest_size=16).hexdigest()}
    return {"kind": "batches"}


def write_train_state(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                      state: dict) -> Path:
    """Write the tensors and the JSON ``state`` atomically to ``path``."""
    missing = set(_STATE_KEYS) - set(state)
    if missing:
        raise ValueError(f"train state lacks {sorted(missing)}")
    metadata = {"format": FORMAT, "version": VERSION, "state": json.dumps(state)}
    return write_safetensors(path, tensors, metadata)


def read_train_state(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """(state, tensors) of a file written by :func:`write_train_state`.

    ``FileNotFoundError`` when missing; ``ValueError`` when the file is not a
    readable toysae train state or its JSON document is malformed (a key
    missing, unknown or of the wrong type; a history row that is not numbers).
    """
    path = Path(path)
    metadata, tensors = read_safetensors(path, "training checkpoint")
    if metadata.get("format") != FORMAT:
        raise ValueError(f"resume_from: {path} is a safetensors file but not a toysae training "
                         f"checkpoint (metadata format={metadata.get('format')!r}; an SAE "
                         "checkpoint of toysae.sae.save holds weights only, not a run)")
    if metadata.get("version") != VERSION:
        raise ValueError(f"resume_from: {path} has training-checkpoint version "
                         f"{metadata.get('version')!r}; this toysae reads version {VERSION}")
    try:
        state = json.loads(metadata.get("state", ""))
    except json.JSONDecodeError as err:
        raise ValueError(f"resume_from: {path} has a corrupt state document: {err}") from err
    _check_state(state, path)
    return state, tensors


def _check_state(state, path: Path) -> None:
    def bad(what: str):
        return ValueError(f"resume_from: {path} has a corrupt state document: {what}")

    if not isinstance(state, dict):
        raise bad(f"expected an object, got {type(state).__name__}")
    if set(state) != set(_STATE_KEYS):
        raise bad(f"keys {sorted(state)}, expected {sorted(_STATE_KEYS)}")
    for key, kind in _STATE_KEYS.items():
        value = state[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = state[key] = float(value)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise bad(f"{key} is {value!r}")
    for key in ("n_iter", "n_samples", "n_steps"):
        if state[key] < 0:
            raise bad(f"{key} = {state[key]} is negative")
    if state["data_scale"] is not None and not (math.isfinite(state["data_scale"])
                                                and state["data_scale"] >= 0):
        raise bad(f"data_scale = {state['data_scale']}")
    if state["n_iter"] > state["n_steps"] or not math.isfinite(state["wall_time"]):
        raise bad(f"n_iter={state['n_iter']}, n_steps={state['n_steps']}, "
                  f"wall_time={state['wall_time']}")
    for key in ("n_resampled", "pool_sizes"):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                   for v in state[key]):
            raise bad(f"{key} must hold counts, got {state[key]!r}")
    for k, rows in enumerate(state["histories"]):
        if not isinstance(rows, list) or not all(
                isinstance(row, dict) and all(isinstance(v, (int, float))
                                              and not isinstance(v, bool) for v in row.values())
                for row in rows):
            raise bad(f"history {k} is not a list of rows of numbers")


def run_differences(saved, current, where: str = "") -> list[str]:
    """Where two run keys differ, one line each (``config.lr: 0.01 in the checkpoint,
    0.02 here``); empty when they match."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in list(saved) + [k for k in current if k not in saved]:
            name = f"{where}.{key}" if where else str(key)
            if key not in current:
                out.append(f"{name}: {_short(saved[key])} in the checkpoint, absent here")
            elif key not in saved:
                out.append(f"{name}: absent in the checkpoint, {_short(current[key])} here")
            else:
                out.extend(run_differences(saved[key], current[key], name))
        return out
    if isinstance(saved, list) and isinstance(current, list) and len(saved) == len(current):
        return [line for k, (a, b) in enumerate(zip(saved, current, strict=True))
                for line in run_differences(a, b, f"{where}[{k}]")]
    if saved == current and type(saved) is type(current):
        return []
    return [f"{where}: {_short(saved)} in the checkpoint, {_short(current)} here"]


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


class TensorReader:
    """Takes a checkpoint's tensors one by one, each checked against its destination's
    shape and dtype, so a restore can check everything before it writes anything."""

    def __init__(self, tensors: dict[str, torch.Tensor], source: Path):
        self.left, self.source = dict(tensors), source

    def take(self, name: str, like: torch.Tensor | None, *,
             optional: bool = False) -> torch.Tensor | None:
        """Tensor ``name`` (shape and dtype of ``like``; ``like=None``: one element of any
        dtype); None when absent and ``optional``."""
        if name not in self.left:
            if optional:
                return None
            raise ValueError(f"resume_from: {self.source} lacks tensor {name!r}")
        value = self.left.pop(name)
        ok = (value.numel() == 1 if like is None
              else value.shape == like.shape and value.dtype == like.dtype)
        if not ok:
            expected = "one element" if like is None else f"{tuple(like.shape)} {like.dtype}"
            raise ValueError(f"resume_from: {self.source} tensor {name!r} is "
                             f"{tuple(value.shape)} {value.dtype}, expected {expected}")
        return value

    def group(self, prefix: str, like: dict[str, torch.Tensor], *,
              optional: bool = False) -> dict[str, torch.Tensor] | None:
        """Tensors ``prefix.key`` for every key of ``like``; None when all are absent and
        ``optional`` (ValueError when only some are)."""
        present = [k for k in like if f"{prefix}.{k}" in self.left]
        if optional and not present:
            return None
        return {k: self.take(f"{prefix}.{k}", v) for k, v in like.items()}

    def done(self) -> None:
        """ValueError if the file holds tensors nothing took."""
        if self.left:
            raise ValueError(f"resume_from: {self.source} holds unexpected tensors "
                             f"{sorted(self.left)[:8]}")


# -- the engine's state ---------------------------------------------------------------
def run_key(engine: Engine, data) -> dict:
    """What a checkpoint's run must share with this one to resume it (JSON types)."""
    stacks = [{"kind": type(s).__name__, "d": s.d, "widths": list(s.widths),
               "members": [{"architecture": s.member(m).architecture, **s.member(m).config()}
                           for m in range(s.n_members)]} for s in engine.stacks]
    key = {"config": engine.cfg.to_dict(), "sparsity_coefs": list(engine.member_coefs),
           "objective": engine.objective.describe(), "stacks": stacks,
           "record_dictionaries": engine.record, "data": data_fingerprint(data)}
    return json.loads(json.dumps(key))


def _optimized(engine: Engine) -> list[nn.Parameter]:
    """The optimizer's parameters in its order: a checkpoint numbers Adam's state by it."""
    return [p for group in engine.optimizer.param_groups for p in group["params"]]


def _resampling_ahead(engine: Engine, n_steps: int) -> bool:
    cfg = engine.cfg
    return bool(cfg.resample_every) and engine.n_iter < cfg.resample_until * n_steps


def write_checkpoint(engine: Engine, n_steps: int, wall_time: float,
                     finished: str | None = None) -> Path:
    """Write ``engine``'s whole run state to its ``checkpoint_path`` (atomically).

    n_steps : the run's planned steps. wall_time : seconds trained so far, earlier
    sessions included. finished : the run's closing message when it has ended
    (a resume then returns the results at once), else None.
    """
    tensors: dict[str, Tensor] = {}
    at_log = engine.n_iter % engine.cfg.log_every == 0 or engine.n_iter == n_steps
    for g, stack in enumerate(engine.stacks):
        for key, value in stack.module.state_dict().items():
            tensors[f"stack.{g}.{key}"] = value
        if not at_log and finished is None:  # the divergence check's restore point
            for key, value in engine.good[g].items():
                tensors[f"good.{g}.{key}"] = value
        tensors[f"silent.{g}"] = engine.silent[g]
        tensors[f"finite.{g}"] = engine.finite[g]
        if engine.reference[g] is not None:
            tensors[f"reference.{g}"] = engine.reference[g]
    for i, param in enumerate(_optimized(engine)):
        for key, value in engine.optimizer.state.get(param, {}).items():
            tensors[f"adam.{i}.{key}"] = torch.as_tensor(value)
    for k, gen in enumerate(engine.gens):
        tensors[f"generator.{k}"] = gen.get_state()
    pool_sizes = []
    if _resampling_ahead(engine, n_steps) and engine.pool:
        pool_sizes = [int(b.shape[0]) for b in engine.pool]
        tensors["pool"] = torch.cat(list(engine.pool))
    for k, frames in enumerate(engine.frames):
        if frames:
            tensors[f"frames.{k}"] = torch.from_numpy(np.stack(frames))
    if engine.controller is not None:
        for key, value in engine.controller.state_tensors().items():
            tensors[f"l0_control.{key}"] = value
    state = {"run": engine.run_key, "n_iter": engine.n_iter, "n_samples": engine.n_samples,
             "n_steps": n_steps, "wall_time": wall_time,
             "n_resampled": list(engine.n_resampled),
             "histories": [h.rows for h in engine.histories], "pool_sizes": pool_sizes,
             "finished": finished, "data_scale": engine.data_scale}
    return write_train_state(engine.checkpoint_path, tensors, state)


def restore_checkpoint(engine: Engine, state: dict, tensors: dict[str, Tensor], *,
                       n_steps: int, source: Path) -> None:
    """Restore a checkpoint (:func:`read_train_state`) of ``engine``'s run into it;
    ValueError before any change if it is not one."""
    differ = run_differences(state["run"], engine.run_key)
    if differ:
        shown = "; ".join(differ[:6]) + (f"; and {len(differ) - 6} more"
                                         if len(differ) > 6 else "")
        raise ValueError(f"resume_from: {source} is a checkpoint of a different run: "
                         f"{shown}")
    n = len(engine.where)
    if (state["n_steps"] != n_steps or len(state["histories"]) != n
            or len(state["n_resampled"]) != n):
        raise ValueError(f"resume_from: {source} holds {len(state['histories'])} members "
                         f"and {state['n_steps']} planned steps; this run has {n} and "
                         f"{n_steps}")
    stacks, device = engine.stacks, engine.device
    # Every tensor is checked against its destination before anything is written.
    read = TensorReader(tensors, source)
    modules = [read.group(f"stack.{g}", s.module.state_dict()) for g, s in enumerate(stacks)]
    goods = [read.group(f"good.{g}", s.module.state_dict(), optional=True)
             for g, s in enumerate(stacks)]
    silent = [read.take(f"silent.{g}", engine.silent[g]) for g in range(len(stacks))]
    finite = [read.take(f"finite.{g}", torch.ones(s.n_members, dtype=torch.bool))
              for g, s in enumerate(stacks)]
    reference = [read.take(f"reference.{g}", torch.zeros(s.n_members), optional=True)
                 for g, s in enumerate(stacks)]
    adam = {}
    for i, param in enumerate(_optimized(engine)):
        moments = read.group(f"adam.{i}", {"exp_avg": param.detach(),
                                           "exp_avg_sq": param.detach()}, optional=True)
        step = read.take(f"adam.{i}.step", None, optional=True)
        if (moments is None) != (step is None):
            raise ValueError(f"resume_from: {source} has an incomplete Adam state for "
                             f"parameter {i}")
        if moments is not None:
            adam[i] = {"step": step, **moments}
    gens = [read.take(f"generator.{k}", gen.get_state()) for k, gen in enumerate(engine.gens)]
    sizes = state["pool_sizes"]
    pool = read.take("pool", torch.zeros(sum(sizes), stacks[0].d), optional=not sizes)
    frames = [read.take(f"frames.{k}", torch.zeros(len(state["histories"][k]),
                                                   stacks[g].widths[m], stacks[g].d),
                        optional=not (engine.record and state["histories"][k]))
              for k, (g, m) in enumerate(engine.where)]
    control = None
    if engine.controller is not None:
        like = engine.controller.state_tensors()
        control = read.group("l0_control", like)
        averages = {"smoothed": like["log_coef"], "trend": like["log_coef"]}
        control.update(read.group("l0_control", averages, optional=True) or {})
    read.done()

    with torch.no_grad():
        for stack, module_state in zip(stacks, modules, strict=True):
            stack.module.load_state_dict(module_state)
        for counter, value in zip(engine.silent, silent, strict=True):
            counter.copy_(value)
    engine.good = [{k: v.detach().clone() for k, v in s.module.state_dict().items()}
                   if good is None else {k: v.to(device) for k, v in good.items()}
                   for s, good in zip(stacks, goods, strict=True)]
    engine.finite = [f.to(device) for f in finite]
    engine.reference = [None if r is None else r.to(device) for r in reference]
    engine.optimizer.load_state_dict({"state": adam,
                                      "param_groups": engine.optimizer.state_dict()[
                                          "param_groups"]})
    for gen, value in zip(engine.gens, gens, strict=True):
        gen.set_state(value)
    engine.pool = deque(maxlen=math.ceil(engine.cfg.resample_pool / engine.cfg.batch_size))
    if pool is not None:
        engine.pool.extend(pool.to(device).split(sizes))
    engine.frames = [[] if f is None else list(f.numpy()) for f in frames]
    engine.histories = [History(rows) for rows in state["histories"]]
    engine.n_resampled = list(state["n_resampled"])
    engine.n_iter, engine.n_samples = state["n_iter"], state["n_samples"]
    engine.elapsed, engine.finished = state["wall_time"], state["finished"]
    engine.data_scale = state["data_scale"]  # measured once, on the run's first batch
    if control is not None:
        engine.controller.load_state_tensors(control)
        engine.set_coefs(engine.controller.log_coef.exp())
