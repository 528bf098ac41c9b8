"""Checkpoints of a training run: the engine's whole state, to resume it bit-identically.

One safetensors file (written atomically, ``toysae._io``) holds every tensor of
the run: each stack's parameters and buffers, Adam's moments and step counts,
the dead-latent counters, the resampling generators' states, the resampling
pool, the reference losses of the divergence check and the recorded
dictionaries. Its metadata holds one JSON document: the run's *key* (what must
match to resume: the TrainConfig, the members' architectures and constructor
arguments, the sparsity coefficients, the objective, the data), the position
(steps and samples trained), the histories and the amortised wall time.
Loading parses a JSON header and raw tensors: nothing is unpickled.

The engine (``toysae.sae.engine``) gathers and restores the state; this
module only writes, reads and validates the file and compares run keys.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from toysae._io import read_safetensors, write_safetensors
from toysae._validation import to_numpy

FORMAT = "toysae-train-state"
VERSION = "1"

# The JSON document's keys and the type each must have.
_STATE_KEYS = {"run": dict, "n_iter": int, "n_samples": int, "n_steps": int,
               "wall_time": float, "n_resampled": list, "histories": list,
               "pool_sizes": list, "finished": (str, type(None)),
               "data_scale": (float, type(None))}


def data_fingerprint(data) -> dict:
    """What identifies the training data in a run key.

    ``SyntheticData``: its config (the stream is a function of it and the
    run's seed). An (n, d) array or tensor: its shape and a BLAKE2b digest of
    its float32 bytes. An iterable of batches cannot be identified; resuming
    skips as many batches as the checkpoint trained on, so the caller must pass
    the same data from its start.
    """
    from toysae.data import SyntheticData  # data is the layer below; imported lazily

    if isinstance(data, SyntheticData):
        return {"kind": "SyntheticData", "config": data.config.to_dict()}
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
