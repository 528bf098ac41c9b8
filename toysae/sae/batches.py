"""The training data as batches: which samples each step of a run sees.

:func:`training_batches` turns what a trainer is given into a stream of float32
``(B, d)`` batches and the planned number of steps:

* a ground-truth world (``toysae.data.GroundTruthData``: a ``SyntheticData``, a
  SAELens world): fresh samples, drawn in chunks of
  ``_tuning.SYNTHETIC_CHUNK_SAMPLES // B`` batches, chunk ``c`` the world's
  ``sample(count, seed=derived_seed(config.seed, SEED_KEY_SYNTHETIC, c))``;
* an (n, d) array or tensor: shuffled epochs, one generator seeded
  ``derived_seed(config.seed, SEED_KEY_EPOCHS)`` drawing every epoch's order;
* an iterable of batches ((B, d) arrays or ``Batch`` objects), checked one by
  one, until it ends or ``config.n_samples`` samples were read.

Each can start at a later step (a resumed run) and yields exactly the batches
the uninterrupted run would from there. The chunking and the seed keys decide
which samples a step sees, so they are part of every seeded result
(``toysae/_tuning.py``, "reproducibility").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

from toysae import _tuning
from toysae._validation import to_numpy
from toysae.sae.config import TrainConfig

__all__ = ["data_dim", "derived_seed", "training_batches"]


def derived_seed(seed: int, *key: int) -> int:
    """A 32-bit seed derived from ``seed`` and a key path (independent streams)."""
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1)[0])


def training_batches(data, width: int, config: TrainConfig, *,
                     start: int = 0) -> tuple[Iterator[Tensor], int]:
    """(iterator of float32 (B, width) tensors, planned number of steps).

    start : the first step's batch (a resumed run): synthetic streams and
        array epochs are regenerated from that position; an iterable of
        batches has its first ``start`` batches read and dropped.
    """
    from toysae.data import GroundTruthData  # data is the layer below; imported lazily

    B, n_steps = config.batch_size, config.n_steps
    if isinstance(data, GroundTruthData):
        if data.d != width:
            raise ValueError(f"data has d={data.d} but the SAE has d={width}")
        return _synthetic_batches(data, B, n_steps, config.seed, start), n_steps
    if isinstance(data, (np.ndarray, torch.Tensor)):
        X = to_numpy(data, "data", dtype=np.float32, ndim=2)
        if X.shape[1] != width:
            raise ValueError(f"data has {X.shape[1]} columns but the SAE has d={width}")
        if X.shape[0] == 0:
            raise ValueError("data has no rows")
        return _array_batches(torch.from_numpy(X), B, n_steps, config.seed, start), n_steps
    if isinstance(data, (Iterable, Iterator)) and not isinstance(data, (str, bytes, dict)):
        batches = _checked_batches(iter(data), width, config.n_samples)
        return (_skip_batches(batches, start) if start else batches), n_steps
    raise TypeError(f"data must be a ground-truth world (SyntheticData, SAELensWorld), an "
                    f"(n, d) array or an iterable of batches, got {type(data).__name__}")


def _synthetic_batches(data, B: int, n_steps: int, seed: int,
                       start: int = 0) -> Iterator[Tensor]:
    per_chunk = max(1, _tuning.SYNTHETIC_CHUNK_SAMPLES // B)
    for chunk in range(start // per_chunk, math.ceil(n_steps / per_chunk)):
        first = chunk * per_chunk
        count = min(per_chunk, n_steps - first)
        chunk_seed = derived_seed(seed, _tuning.SEED_KEY_SYNTHETIC, chunk)
        X = torch.from_numpy(data.sample(count * B, seed=chunk_seed).x)
        yield from X.split(B)[max(0, start - first):]


def _array_batches(X: Tensor, B: int, n_steps: int, seed: int,
                   start: int = 0) -> Iterator[Tensor]:
    gen = torch.Generator().manual_seed(derived_seed(seed, _tuning.SEED_KEY_EPOCHS))
    n, step = X.shape[0], 0
    while True:
        order = torch.randperm(n, generator=gen)  # drawn for skipped epochs too: same stream
        for first in range(0, n, B):
            if step == n_steps:
                return
            if step >= start:
                yield X.index_select(0, order[first:first + B])
            step += 1


def _skip_batches(batches: Iterator[Tensor], start: int) -> Iterator[Tensor]:
    for k in range(start):
        if next(batches, None) is None:
            raise ValueError(f"resume_from: the data ended after {k} batches, before the "
                             f"{start} the checkpoint had trained on; pass the same data "
                             "from its start")
    yield from batches


def _checked_batches(it: Iterator, width: int, n_samples: int) -> Iterator[Tensor]:
    seen = 0
    for k, item in enumerate(it):
        if seen >= n_samples:
            return
        x = getattr(item, "x", item)  # a toysae.data.Batch or a bare array
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if not isinstance(x, Tensor):
            raise TypeError(f"data batch {k} must be an array or Batch, got {type(item).__name__}")
        if x.ndim != 2 or x.shape[1] != width or x.shape[0] == 0:
            raise ValueError(f"data batch {k} must have shape (n, {width}), got {tuple(x.shape)}")
        x = x.float()
        # A NaN or Inf entry makes the sum NaN or Inf: one reduction clears a good batch
        # (an elementwise isfinite costs 7x as much); the exact test runs only on doubt.
        if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
            raise ValueError(f"data batch {k} contains NaN or Inf values")
        seen += x.shape[0]
        yield x


def data_dim(data) -> int:
    """``d`` of a ground-truth world or an (n, d) array; ValueError for anything else."""
    from toysae.data import GroundTruthData

    if isinstance(data, GroundTruthData):
        return data.d
    if isinstance(data, (np.ndarray, torch.Tensor)) and data.ndim == 2:
        return int(data.shape[1])
    raise ValueError("pass an SAE (not a name) when data is an iterable of batches, or an "
                     f"(n, d) array / ground-truth world; got {type(data).__name__}")
