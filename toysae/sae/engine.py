"""The one training engine: every SAE in toysae trains through :func:`train_members`.

A run trains one or more *stacks*. A stack holds ``M >= 1`` SAEs whose
parameters live together (:class:`SingleSAE` wraps one SAE of any
architecture; :class:`toysae.sae.ensemble.ReLUSAEEnsemble` stacks many ReLU
SAEs into batched tensors). Every member sees the same batches. One step:

1. ``sae_input = objective.sae_input(batch)``; the stacks' forward passes
   (leading member axis on every output);
2. the objective's named parts, plus ``sparsity = coef_m * penalty`` and the
   architecture's auxiliary terms (dead-latent loss, gate loss), per member;
3. one backward pass per stack, the decoder gradient's component along each
   (unit) row removed, one Adam step over all parameters, rows renormalised;
4. firing counts, dead-latent resampling, history, divergence checks.

The loop owns the LR and sparsity schedules, the dead-latent remedies
(Anthropic's resampling, ghost grads, AuxK: each architecture names its own),
history (one :class:`toysae._result.History` per member), divergence
detection (NaN/Inf, and finite blow-up by ``config.divergence_factor``), the
data-scale check (``DATA_SCALE_RANGE``), device placement, train/eval mode,
the thread count and the progress bar.
Members never interact: the summed loss has a block-diagonal gradient, Adam is
element-wise, and resampling acts per member with its own generator, so a
member trains as it would alone (up to float rounding of batched matmuls).
"""

from __future__ import annotations

import abc
import functools
import json
import math
import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from toysae import _tuning
from toysae._result import History, Result
from toysae._threads import check_threads, thread_count
from toysae._validation import check_float, check_int, check_tuple, to_numpy
from toysae.sae.base import SAEOutput, SparseAutoencoder, make_sae
from toysae.sae.config import TrainConfig
from toysae.sae.objectives import LocalReconstruction, Objective
from toysae.sae.train_state import (
    TensorReader,
    data_fingerprint,
    read_train_state,
    run_differences,
    write_train_state,
)

__all__ = ["DATA_SCALE_RANGE", "DataScaleWarning", "MemberStack", "SingleSAE", "TrainResult",
           "TrainingDiverged", "data_scale", "train_members", "train_sae"]

ENGINE_PARTS = ("loss", "sparsity", "auxiliary")

# Where an absolute Adam step (lr ~ 1e-3..1e-2, the same for every parameter) means what it
# says: the data's scale, sqrt(mean_n ||x_n||^2) of the first batch at the SAE's input.
# The toys sit near 1 (the reference toy 1.3, synth_small 16); outside this range the run
# warns before training and a divergence is reported as a data-scale problem.
DATA_SCALE_RANGE = (1e-2, 1e3)


class DataScaleWarning(UserWarning):
    """The training data's scale is outside ``DATA_SCALE_RANGE``: lr, an absolute step
    size, is meaningless there; normalise the data."""


def data_scale(x: Tensor) -> float:
    """``sqrt(mean_n ||x_n||^2)`` of a (B, d) batch, computed in float64."""
    return float(x.detach().double().square().sum(dim=1).mean().sqrt())


# -- results --------------------------------------------------------------------
@dataclass(repr=False)
class TrainResult(Result):
    """One trained SAE: what :func:`train_sae` returns, and each member of a batched run.

    success : the run trained every planned step (or to the end of finite data).
    message : what happened, in words.
    n_iter : steps trained. n_samples : samples trained on.
    wall_time : seconds (eval_fn included); for a member of a batched run, the
        run's wall time divided by the number of members (amortised).
    sparsity_coef : this member's coefficient (``config.sparsity_coef`` for a single SAE).
    n_resampled : latents resampled in total.
    history : one row per logging step: ``step``, ``samples``, ``loss``, the
        objective's parts (``reconstruction`` by default), ``sparsity``,
        ``auxiliary``, ``l0`` (on the logged batch), ``dead`` (latents silent
        for ``dead_window`` steps), ``lr``, ``sparsity_coef`` (after warm-up),
        plus whatever ``eval_fn`` returns.
    sae : the trained SAE (for a single SAE, the object passed in, trained in place).
    config : the run's config with this member's ``sparsity_coef``.
    dictionary_history : unit-row (width, d) dictionaries at each logging step,
        when recorded.
    """

    success: bool
    message: str
    n_iter: int
    n_samples: int
    wall_time: float
    sparsity_coef: float
    n_resampled: int
    history: History
    sae: SparseAutoencoder
    config: TrainConfig
    dictionary_history: list[np.ndarray] = field(default_factory=list)

    _ARRAY_FIELDS = ("dictionary_history",)
    _OBJECT_FIELDS = ("sae",)

    @property
    def final(self) -> dict[str, float]:
        """The last history row."""
        return self.history.last

    def to_dict(self, include_arrays: bool = False) -> dict:
        return {"architecture": self.sae.architecture, "sae_config": self.sae.config(),
                **super().to_dict(include_arrays)}


class TrainingDiverged(RuntimeError, ValueError):
    """The loss turned NaN/Inf or blew up. ``.results`` holds one :class:`TrainResult`
    per member (``success=False``), every SAE restored to its last good logging step;
    ``.result`` is the first."""

    def __init__(self, message: str, results: list[TrainResult]):
        super().__init__(message)
        self.results = results
        self.result = results[0]


# -- stacks -----------------------------------------------------------------------
class MemberStack(abc.ABC):
    """M >= 1 SAEs on the same input width whose parameters step together.

    ``forward(x)`` returns ``(out, native)``: ``out`` with a leading member axis
    for the objective, ``native`` whatever the stack's own ``penalties`` and
    ``auxiliary`` read (for one SAE, its unstacked output, so no gradient is
    routed through a stacking view).
    """

    module: nn.Module
    n_members: int
    d: int
    widths: tuple[int, ...]
    max_width: int
    supports_dead_latent_loss: bool = True

    @abc.abstractmethod
    def forward(self, x: Tensor) -> tuple[SAEOutput, object]: ...

    @abc.abstractmethod
    def penalties(self, native) -> Tensor:
        """(M,) mean penalty of each member."""

    @abc.abstractmethod
    def auxiliary(self, x: Tensor, native, dead: Tensor | None, coef: float) -> Tensor | None:
        """(M,) auxiliary terms, or None when there are none; ``dead`` is (M, max_width)
        or None (remedy off)."""

    @abc.abstractmethod
    def member(self, m: int) -> SparseAutoencoder:
        """Member ``m`` as an SAE whose parameters alias the stack (valid while it trains)."""

    @abc.abstractmethod
    def trained_member(self, m: int) -> SparseAutoencoder:
        """The SAE a result hands out for member ``m`` once training ends."""

    @abc.abstractmethod
    def latent_slots(self, m: int, idx: Tensor) -> list[tuple[nn.Parameter, tuple]]:
        """(parameter, index) of every slice that belongs to latents ``idx`` of member ``m``."""

    @abc.abstractmethod
    def real_latents(self) -> Tensor | None:
        """(M, max_width) bool mask of real latents, or None when no member is padded."""

    @abc.abstractmethod
    def remove_parallel_grad_(self) -> None: ...

    def recycle_grads_(self) -> None:
        """Drop the gradients before a step (stacks may keep their memory for reuse)."""
        self.module.zero_grad(set_to_none=True)

    @abc.abstractmethod
    def normalize_decoder_(self) -> None: ...

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device


class SingleSAE(MemberStack):
    """One SAE of any architecture as a stack of one."""

    def __init__(self, sae: SparseAutoencoder):
        self.module = self.sae = sae
        self.n_members, self.d, self.widths, self.max_width = 1, sae.d, (sae.width,), sae.width

    def forward(self, x):
        out = self.sae(x)
        pre = None if out.pre_acts is None else out.pre_acts[None]
        fired = None if out.fired is None else out.fired[None]
        return SAEOutput(out.x_hat[None], out.codes[None], pre, fired=fired), out

    def penalties(self, native):
        return self.sae.penalty(native)[None]

    def auxiliary(self, x, native, dead, coef):
        if dead is None and not self.sae.has_auxiliary_term:
            return None
        return self.sae.auxiliary_loss(x, native, None if dead is None else dead[0], coef)[None]

    def member(self, m):
        return self.sae

    def trained_member(self, m):
        return self.sae

    def latent_slots(self, m, idx):
        return [(p, (slice(None),) * axis + (idx,)) for p, axis in self.sae.latent_parameters()]

    def real_latents(self):
        return None

    def remove_parallel_grad_(self):
        self.sae.remove_parallel_grad_()

    def recycle_grads_(self):
        self.sae.recycle_grads_()

    def normalize_decoder_(self):
        self.sae.normalize_decoder_()


# -- data -------------------------------------------------------------------------
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
    from toysae.data import SyntheticData  # data is the layer below; imported lazily

    B, n_steps = config.batch_size, config.n_steps
    if isinstance(data, SyntheticData):
        if data.config.d != width:
            raise ValueError(f"data has d={data.config.d} but the SAE has d={width}")
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
    raise TypeError(f"data must be a SyntheticData, an (n, d) array or an iterable of batches, "
                    f"got {type(data).__name__}")


def _synthetic_batches(data, B: int, n_steps: int, seed: int,
                       start: int = 0) -> Iterator[Tensor]:
    per_chunk = max(1, 65536 // B)
    for chunk in range(start // per_chunk, math.ceil(n_steps / per_chunk)):
        first = chunk * per_chunk
        count = min(per_chunk, n_steps - first)
        X = torch.from_numpy(data.sample(count * B, seed=derived_seed(seed, 1, chunk)).x)
        yield from X.split(B)[max(0, start - first):]


def _array_batches(X: Tensor, B: int, n_steps: int, seed: int,
                   start: int = 0) -> Iterator[Tensor]:
    gen = torch.Generator().manual_seed(derived_seed(seed, 2))
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
    """``d`` of a SyntheticData or an (n, d) array; ValueError for anything else."""
    from toysae.data import SyntheticData

    if isinstance(data, SyntheticData):
        return data.config.d
    if isinstance(data, (np.ndarray, torch.Tensor)) and data.ndim == 2:
        return int(data.shape[1])
    raise ValueError("pass an SAE (not a name) when data is an iterable of batches, or an "
                     f"(n, d) array / SyntheticData; got {type(data).__name__}")


# -- schedules and dead latents -----------------------------------------------------
def lr_schedule(step: int, n_steps: int, warmup: float, decay: float) -> float:
    """LR factor: linear warm-up over ``warmup`` of the steps, linear decay to 0 over ``decay``."""
    factor = 1.0
    warm = round(warmup * n_steps)
    if warm and step < warm:
        factor = (step + 1) / warm
    decay_steps = round(decay * n_steps)
    if decay_steps and step >= n_steps - decay_steps:
        factor = min(factor, (n_steps - step) / decay_steps)
    return factor


def sparsity_schedule(step: int, n_steps: int, warmup: float) -> float:
    """Sparsity-coefficient factor: linear warm-up from 0 over ``warmup`` of the steps."""
    warm = round(warmup * n_steps)
    return min(1.0, (step + 1) / warm) if warm else 1.0


@torch.no_grad()
def reinit_dead_latents_(sae: SparseAutoencoder, dead: Tensor, inputs: Tensor, *,
                         encoder_scale: float = 0.2,
                         generator: torch.Generator | None = None) -> Tensor:
    """Anthropic's resampling ("Towards Monosemanticity", 2023) of ``sae``'s dead latents.

    Each dead latent gets an input drawn with probability proportional to the
    square of its reconstruction loss: the unit input becomes the decoder row,
    the input scaled to ``encoder_scale`` x the mean alive encoder norm the
    encoder vector, the encoder bias 0. Returns the indices moved (the caller
    resets the optimizer state of those slices).
    """
    idx = dead.nonzero().squeeze(1)
    if idx.numel() == 0:
        return idx
    x_hat = torch.cat([sae(chunk).x_hat for chunk in inputs.split(4096)])
    weights = (x_hat - inputs).pow(2).sum(1).pow(2)
    # An all-zero input (no feature active) has no direction: it would make a zero atom.
    has_direction = inputs.norm(dim=1) > 1e-6
    if not bool(has_direction.any()):
        return idx[:0]
    weights = torch.where(has_direction, weights, 0.0)
    if not bool(weights.sum() > 0):
        weights = has_direction.to(weights.dtype)
    replace = idx.numel() > int((weights > 0).sum())
    pick = torch.multinomial(weights.cpu(), idx.numel(), replacement=replace,
                             generator=generator).to(inputs.device)
    directions = inputs[pick]
    directions = directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-12)
    norms = sae.encoder_norms()
    alive = ~dead
    scale = float(norms[alive].mean()) if bool(alive.any()) else 1.0
    sae.reinit_latents_(idx, directions, encoder_scale * scale)
    return idx


@torch.no_grad()
def reset_optimizer_slots_(optimizer: torch.optim.Optimizer, slots) -> None:
    """Zero Adam's moments on the given (parameter, index) slices, so stale statistics
    do not throw a re-initialised latent off at once."""
    for param, index in slots:
        state = optimizer.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][index] = 0.0


def resample_dead_latents_(sae: SparseAutoencoder, optimizer: torch.optim.Optimizer | None,
                           dead: Tensor, inputs: Tensor, *, encoder_scale: float = 0.2,
                           generator: torch.Generator | None = None) -> int:
    """:func:`reinit_dead_latents_` and, with an ``optimizer``, its Adam moments of the
    moved slices reset; returns how many latents moved."""
    idx = reinit_dead_latents_(sae, dead, inputs, encoder_scale=encoder_scale,
                               generator=generator)
    if optimizer is not None and idx.numel():
        reset_optimizer_slots_(optimizer, SingleSAE(sae).latent_slots(0, idx))
    return int(idx.numel())


def fused_adam_options() -> dict:
    """Fused Adam (one kernel for all parameters) where this torch build has it on the CPU."""
    try:
        torch.optim.Adam([torch.zeros(1, requires_grad=True)], fused=True)
    except (RuntimeError, TypeError, ValueError):
        return {"foreach": True}
    return {"fused": True}


# -- the loop -----------------------------------------------------------------------
def train_members(stacks: Sequence[MemberStack], sparsity_coefs: Sequence[float], data,
                  config: TrainConfig, *, objective: Objective | None = None,
                  eval_fn: Callable[[SparseAutoencoder], dict[str, float]] | None = None,
                  record_dictionaries: bool = False, progress: bool = True,
                  threads: int | None = None, checkpoint_every: int | None = None,
                  checkpoint_path: str | os.PathLike | None = None,
                  resume_from: str | os.PathLike | None = None) -> list[TrainResult]:
    """Train every member of ``stacks`` on the same batches; one :class:`TrainResult` each.

    Members are numbered across the stacks in order; member ``k`` uses
    ``sparsity_coefs[k]``. ``objective`` defaults to :class:`LocalReconstruction`.
    ``eval_fn(sae) -> {name: float}`` runs for each member at each logging step
    (eval mode, no grad, on a view valid during the call). ``threads``: torch
    threads for the run (None: one thread for small work, see toysae._threads).

    checkpoint_every, checkpoint_path : write the run's whole state to
        ``checkpoint_path`` (atomically, replacing the previous one) every
        ``checkpoint_every`` steps and once more when the run ends
        (``toysae.sae.train_state``).
    resume_from : a checkpoint of this same run (same config, members,
        coefficients, objective and data; ``ValueError`` naming what differs
        otherwise). The stacks' parameters, Adam, the schedules' position, the
        dead-latent counters, the resampling generators and pool, the
        histories and the data position are restored, and the run continues to
        end bit-identical to one never interrupted (on the same machine and
        thread count, as every seeded result in toysae). A checkpoint of a finished
        run returns its results at once. With ``checkpoint_every`` and no
        ``checkpoint_path``, checkpoints keep going to ``resume_from``.
    """
    objective = LocalReconstruction() if objective is None else objective
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a toysae.sae.Objective, got "
                        f"{type(objective).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if eval_fn is not None and not callable(eval_fn):
        raise TypeError(f"eval_fn must be callable, got {type(eval_fn).__name__}")
    for name, flag in (("record_dictionaries", record_dictionaries), ("progress", progress)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {flag!r}")
    threads = check_threads(threads)
    if isinstance(stacks, MemberStack) or not isinstance(stacks, Sequence) or not stacks:
        raise TypeError(f"stacks must be a non-empty sequence of MemberStack, got {stacks!r}")
    for k, stack in enumerate(stacks):
        if not isinstance(stack, MemberStack):
            raise TypeError(f"stacks[{k}] must be a MemberStack (SingleSAE(sae) wraps one "
                            f"SAE), got {type(stack).__name__}")
        if stack.d != stacks[0].d:
            raise ValueError(f"stacks[{k}] has d={stack.d} but stacks[0] has d={stacks[0].d}")
    n_members = sum(s.n_members for s in stacks)
    coefs = check_tuple(sparsity_coefs, "sparsity_coefs", check_float, minimum=0.0)
    if len(coefs) != n_members:
        raise ValueError(f"sparsity_coefs must have one entry per member ({n_members}), "
                         f"got {len(coefs)}")
    every, path, resume_from = _checkpoint_args(checkpoint_every, checkpoint_path, resume_from)
    saved = read_train_state(resume_from) if resume_from is not None else None
    d = stacks[0].d
    batches, n_steps = training_batches(data, objective.batch_width(d), config,
                                        start=saved[0]["n_iter"] if saved else 0)
    engine = _Engine(list(stacks), coefs, config, objective, eval_fn, record_dictionaries,
                     progress)
    if every is not None or saved is not None:
        engine.run_key = _run_key(engine, data)
        engine.checkpoint_every, engine.checkpoint_path = every, path
    if saved is not None:
        engine.load_state(*saved, n_steps=n_steps, source=resume_from)
    work = config.batch_size * d * sum(s.n_members * s.max_width for s in stacks)
    with thread_count(threads, work=work, small_work=_tuning.SAE_SMALL_WORK,
                      device=stacks[0].device):
        return engine.run(batches, n_steps)


def _checkpoint_args(every, path, resume_from) -> tuple[int | None, Path | None, Path | None]:
    """Validated (checkpoint_every, checkpoint_path, resume_from)."""
    if every is not None:
        every = check_int(every, "checkpoint_every", minimum=1)
    for name, value in (("checkpoint_path", path), ("resume_from", resume_from)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"{name} must be a path, got {type(value).__name__}")
    if resume_from is not None:
        resume_from = Path(resume_from)
        if not resume_from.is_file():
            raise FileNotFoundError(f"resume_from: no training checkpoint at {resume_from}")
        if every is not None and path is None:
            path = resume_from
    if (every is None) != (path is None):
        raise ValueError("checkpoint_every and checkpoint_path go together: give both to "
                         f"checkpoint a run, got checkpoint_every={every!r}, "
                         f"checkpoint_path={path!r}")
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"checkpoint_path {path} is a directory; name a file")
    return every, path, resume_from


def _run_key(engine: _Engine, data) -> dict:
    """What a checkpoint's run must share with this one to resume it (JSON types)."""
    stacks = [{"kind": type(s).__name__, "d": s.d, "widths": list(s.widths),
               "members": [{"architecture": s.member(m).architecture, **s.member(m).config()}
                           for m in range(s.n_members)]} for s in engine.stacks]
    key = {"config": engine.cfg.to_dict(), "sparsity_coefs": list(engine.member_coefs),
           "objective": engine.objective.describe(), "stacks": stacks,
           "record_dictionaries": engine.record, "data": data_fingerprint(data)}
    return json.loads(json.dumps(key))


class _Engine:
    def __init__(self, stacks, coefs, config, objective, eval_fn, record, progress):
        self.stacks, self.cfg, self.objective = stacks, config, objective
        self.eval_fn, self.record, self.progress = eval_fn, record, progress
        self.where = [(g, m) for g, s in enumerate(stacks) for m in range(s.n_members)]
        self.device = stacks[0].device
        offsets = np.cumsum([0] + [s.n_members for s in stacks])
        self.coefs = [torch.tensor(coefs[a:b], dtype=torch.float32, device=self.device)
                      for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        self.dead_coef = self._dead_latent_coef()
        params = [p for s in stacks for p in s.module.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=config.lr,
                                          betas=(config.beta1, config.beta2), eps=config.eps,
                                          **fused_adam_options())
        self.silent = [torch.zeros(s.n_members, s.max_width, dtype=torch.int64,
                                   device=self.device) for s in stacks]
        self.real = [s.real_latents() for s in stacks]
        # One generator per member, seeded alike, so a member resamples as it would alone.
        self.gens = [torch.Generator().manual_seed(derived_seed(config.seed, 3))
                     for _ in self.where]
        n = len(self.where)
        self.histories = [History() for _ in range(n)]
        self.frames: list[list[np.ndarray]] = [[] for _ in range(n)]
        self.n_resampled = [0] * n
        self.member_coefs = list(coefs)
        self.n_iter = self.n_samples = 0
        self.reference: list[Tensor | None] = [None] * len(stacks)
        # Run state that run() creates, unless a checkpoint restored it first.
        self.pool: deque[Tensor] | None = None
        self.finite: list[Tensor] | None = None
        self.good: list[dict] | None = None
        self.elapsed = 0.0  # wall time of the sessions before a resume
        self.finished: str | None = None  # the message of a finished run's last checkpoint
        self.run_key: dict | None = None
        self.checkpoint_every: int | None = None
        self.checkpoint_path: Path | None = None
        self.data_scale: float | None = None  # of the first batch, see DATA_SCALE_RANGE

    def _dead_latent_coef(self) -> float:
        """The dead-latent loss weight: the config's, or the architecture's default."""
        if self.cfg.dead_latent_coef is not None:
            coef = self.cfg.dead_latent_coef
        else:
            coef = max(type(s.member(0)).default_dead_latent_coef for s in self.stacks)
        if coef and not all(s.supports_dead_latent_loss for s in self.stacks):
            raise ValueError(f"dead_latent_coef={coef} (a dead-latent loss) is not supported by "
                             "the batched ensemble; train those SAEs with train_sae")
        return coef

    def dead(self, g: int) -> Tensor:
        dead = self.silent[g] >= self.cfg.dead_window
        return dead if self.real[g] is None else dead & self.real[g]

    def step(self, batch: Tensor, factor: float) -> list[dict[str, Tensor]]:
        for stack in self.stacks:
            stack.recycle_grads_()
        x = self.objective.sae_input(batch)
        if self.data_scale is None:
            self._check_data_scale(x)
        parts = []
        for g, stack in enumerate(self.stacks):
            out, native = stack.forward(x)
            named = self._objective_parts(batch, x, out)
            named["sparsity"] = self.coefs[g] * factor * stack.penalties(native)
            dead = self.dead(g) if self.dead_coef else None
            aux = stack.auxiliary(x, native, dead, self.dead_coef)
            total = functools.reduce(torch.add, named.values())
            if aux is not None:  # None: no auxiliary term this step (saves two tiny ops)
                total = total + aux
            total.sum().backward()
            named = {"loss": total.detach(), **{k: v.detach() for k, v in named.items()},
                     "auxiliary": (torch.zeros_like(total) if aux is None else aux).detach()}
            codes = out.codes.detach()
            self.silent[g].add_(1).masked_fill_(out.fired_latents(), 0)
            named["_codes"] = codes
            stack.remove_parallel_grad_()
            parts.append(named)
        self.optimizer.step()
        for stack in self.stacks:
            stack.normalize_decoder_()
        return parts

    def _check_data_scale(self, x: Tensor) -> None:
        """Measure the first batch's scale; warn (DataScaleWarning) when out of range."""
        self.data_scale = data_scale(x)
        if not self._scale_in_range():
            lo, hi = DATA_SCALE_RANGE
            warnings.warn(DataScaleWarning(
                f"the training data's scale sqrt(mean ||x||^2) = {self.data_scale:.3g} (first "
                f"batch, at the SAE's input) is outside [{lo:g}, {hi:g}]: lr={self.cfg.lr:g} "
                "is an absolute step size for every parameter, so at this scale it is "
                f"meaningless. Normalise the data (divide it by {self.data_scale:.3g} for "
                "unit scale), or scale lr and sparsity_coef with it."), stacklevel=2)

    def _scale_in_range(self) -> bool:
        lo, hi = DATA_SCALE_RANGE
        return self.data_scale is None or lo <= self.data_scale <= hi

    def _objective_parts(self, batch, x, out) -> dict[str, Tensor]:
        named = dict(self.objective(batch, x, out))
        clash = [k for k in named if k in ENGINE_PARTS or k.startswith("_")]
        if clash or not named:
            raise ValueError(f"objective {self.objective.describe()} returned parts "
                             f"{sorted(named)}: it must return at least one, none named "
                             f"{ENGINE_PARTS} or starting with '_' (the engine's own)")
        return named

    def resample(self, pool: Tensor) -> None:
        for k, (g, m) in enumerate(self.where):
            dead = self.dead(g)[m]
            if not bool(dead.any()):
                continue
            stack = self.stacks[g]
            view = stack.member(m)
            idx = reinit_dead_latents_(view, dead[:view.width], pool,
                                       encoder_scale=self.cfg.resample_encoder_scale,
                                       generator=self.gens[k])
            reset_optimizer_slots_(self.optimizer, stack.latent_slots(m, idx))
            self.silent[g][m].masked_fill_(dead, 0)
            self.n_resampled[k] += int(idx.numel())

    def run(self, batches: Iterator[Tensor], n_steps: int) -> list[TrainResult]:
        cfg = self.cfg
        if self.finished is not None:  # resumed from the last checkpoint of a finished run
            for stack in self.stacks:
                stack.module.eval()
            return self._results(True, self.finished, self.elapsed)
        if self.pool is None:
            self.pool = deque(maxlen=math.ceil(cfg.resample_pool / cfg.batch_size))
        if self.good is None:
            self.good = self._snapshot()
        if self.finite is None:
            self.finite = [torch.ones(s.n_members, dtype=torch.bool, device=self.device)
                           for s in self.stacks]
        pool, finite, first = self.pool, self.finite, self.n_iter
        desc = f"{len(self.where)} SAEs" if len(self.where) > 1 else None
        bar = tqdm(total=n_steps, initial=first, disable=not self.progress, unit="step",
                   leave=False, desc=desc)
        start = time.perf_counter()
        for stack in self.stacks:
            stack.module.train()
        step, parts = first - 1, None
        try:
            for step, batch in enumerate(batches, start=first):
                batch = batch.to(self.device, non_blocking=True)
                lr = cfg.lr * lr_schedule(step, n_steps, cfg.lr_warmup, cfg.lr_decay)
                factor = sparsity_schedule(step, n_steps, cfg.sparsity_warmup)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                parts = self.step(batch, factor)
                for g, named in enumerate(parts):
                    finite[g] &= torch.isfinite(named["loss"])
                    if self.reference[g] is None:
                        self.reference[g] = named["loss"].clone()
                self.n_iter, self.n_samples = step + 1, self.n_samples + batch.shape[0]
                pool.append(self.objective.sae_input(batch))
                if (cfg.resample_every and (step + 1) % cfg.resample_every == 0
                        and step < cfg.resample_until * n_steps):
                    self.resample(torch.cat(list(pool)))
                if (step + 1) % cfg.log_every == 0 or step + 1 == n_steps:
                    self._check(finite, parts, self.good, step, start)
                    self._log(step, parts, lr, factor, bar)
                    if step + 1 != n_steps:  # the last step's restore point is never read
                        self.good = self._snapshot()
                if (self.checkpoint_every and self.n_iter % self.checkpoint_every == 0
                        and self.n_iter != n_steps):  # the run's end writes its own
                    self.write_checkpoint(n_steps, start)
                bar.update(1)
            if step >= first and (step + 1) % cfg.log_every and step + 1 != n_steps:
                self._check(finite, parts, self.good, step, start)  # data ended between logs
                self._log(step, parts, lr, factor, bar)
        finally:
            bar.close()
            for stack in self.stacks:
                stack.module.eval()
        if step < first:
            if first == 0:
                raise ValueError("data yielded no batches")
            raise ValueError(f"resume_from: the data yielded no batch after the checkpoint's "
                             f"step {first}: the interrupted run had trained on all of it, and "
                             "the history row it logs when data ends between logging steps "
                             "cannot be rebuilt from a checkpoint")
        ended = (f"trained {self.n_iter} steps ({self.n_samples} samples)"
                 + ("" if self.n_iter == n_steps else
                    f"; the data ended before the planned {n_steps} steps"))
        if self.checkpoint_every:
            self.write_checkpoint(n_steps, start, finished=ended)
        return self._results(True, ended, self._wall(start))

    def _wall(self, start: float) -> float:
        """Wall time of the run so far, sessions before a resume included."""
        return self.elapsed + time.perf_counter() - start

    def _results(self, success: bool, message: str, wall_time: float) -> list[TrainResult]:
        share = wall_time / len(self.where)
        out = []
        for k, (g, m) in enumerate(self.where):
            coef = self.member_coefs[k]
            cfg = self.cfg if coef == self.cfg.sparsity_coef else \
                self.cfg.replace(sparsity_coef=coef)
            out.append(TrainResult(
                success=success, message=message, n_iter=self.n_iter,
                n_samples=self.n_samples, wall_time=wall_time if len(self.where) == 1 else share,
                sparsity_coef=coef, n_resampled=self.n_resampled[k], history=self.histories[k],
                sae=self.stacks[g].trained_member(m), config=cfg,
                dictionary_history=self.frames[k]))
        return out

    def _snapshot(self) -> list[dict]:
        return [{k: v.detach().clone() for k, v in s.module.state_dict().items()}
                for s in self.stacks]

    # -- checkpoints (toysae.sae.train_state) --------------------------------------------
    def _params(self) -> list[nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def _resampling_ahead(self, n_steps: int) -> bool:
        return bool(self.cfg.resample_every) and self.n_iter < self.cfg.resample_until * n_steps

    def write_checkpoint(self, n_steps: int, start: float, finished: str | None = None) -> None:
        """Write the whole run state to ``checkpoint_path`` (atomically)."""
        tensors: dict[str, Tensor] = {}
        at_log = self.n_iter % self.cfg.log_every == 0 or self.n_iter == n_steps
        for g, stack in enumerate(self.stacks):
            for key, value in stack.module.state_dict().items():
                tensors[f"stack.{g}.{key}"] = value
            if not at_log and finished is None:  # the divergence check's restore point
                for key, value in self.good[g].items():
                    tensors[f"good.{g}.{key}"] = value
            tensors[f"silent.{g}"] = self.silent[g]
            tensors[f"finite.{g}"] = self.finite[g]
            if self.reference[g] is not None:
                tensors[f"reference.{g}"] = self.reference[g]
        for i, param in enumerate(self._params()):
            for key, value in self.optimizer.state.get(param, {}).items():
                tensors[f"adam.{i}.{key}"] = torch.as_tensor(value)
        for k, gen in enumerate(self.gens):
            tensors[f"generator.{k}"] = gen.get_state()
        pool_sizes = []
        if self._resampling_ahead(n_steps) and self.pool:
            pool_sizes = [int(b.shape[0]) for b in self.pool]
            tensors["pool"] = torch.cat(list(self.pool))
        for k, frames in enumerate(self.frames):
            if frames:
                tensors[f"frames.{k}"] = torch.from_numpy(np.stack(frames))
        state = {"run": self.run_key, "n_iter": self.n_iter, "n_samples": self.n_samples,
                 "n_steps": n_steps, "wall_time": self._wall(start),
                 "n_resampled": list(self.n_resampled),
                 "histories": [h.rows for h in self.histories], "pool_sizes": pool_sizes,
                 "finished": finished, "data_scale": self.data_scale}
        write_train_state(self.checkpoint_path, tensors, state)

    def load_state(self, state: dict, tensors: dict[str, Tensor], *, n_steps: int,
                   source: Path) -> None:
        """Restore a checkpoint of this run; ValueError before any change if it is not one."""
        differ = run_differences(state["run"], self.run_key)
        if differ:
            shown = "; ".join(differ[:6]) + (f"; and {len(differ) - 6} more"
                                             if len(differ) > 6 else "")
            raise ValueError(f"resume_from: {source} is a checkpoint of a different run: "
                             f"{shown}")
        n = len(self.where)
        if (state["n_steps"] != n_steps or len(state["histories"]) != n
                or len(state["n_resampled"]) != n):
            raise ValueError(f"resume_from: {source} holds {len(state['histories'])} members "
                             f"and {state['n_steps']} planned steps; this run has {n} and "
                             f"{n_steps}")
        # Every tensor is checked against its destination before anything is written.
        read = TensorReader(tensors, source)
        modules = [read.group(f"stack.{g}", s.module.state_dict())
                   for g, s in enumerate(self.stacks)]
        goods = [read.group(f"good.{g}", s.module.state_dict(), optional=True)
                 for g, s in enumerate(self.stacks)]
        silent = [read.take(f"silent.{g}", self.silent[g]) for g in range(len(self.stacks))]
        finite = [read.take(f"finite.{g}", torch.ones(s.n_members, dtype=torch.bool))
                  for g, s in enumerate(self.stacks)]
        reference = [read.take(f"reference.{g}", torch.zeros(s.n_members), optional=True)
                     for g, s in enumerate(self.stacks)]
        adam = {}
        for i, param in enumerate(self._params()):
            moments = read.group(f"adam.{i}", {"exp_avg": param.detach(),
                                               "exp_avg_sq": param.detach()}, optional=True)
            step = read.take(f"adam.{i}.step", None, optional=True)
            if (moments is None) != (step is None):
                raise ValueError(f"resume_from: {source} has an incomplete Adam state for "
                                 f"parameter {i}")
            if moments is not None:
                adam[i] = {"step": step, **moments}
        gens = [read.take(f"generator.{k}", gen.get_state()) for k, gen in enumerate(self.gens)]
        sizes = state["pool_sizes"]
        pool = read.take("pool", torch.zeros(sum(sizes), self.stacks[0].d),
                         optional=not sizes)
        frames = [read.take(f"frames.{k}", torch.zeros(len(state["histories"][k]),
                                                       self.stacks[g].widths[m],
                                                       self.stacks[g].d),
                            optional=not (self.record and state["histories"][k]))
                  for k, (g, m) in enumerate(self.where)]
        read.done()

        with torch.no_grad():
            for stack, module_state in zip(self.stacks, modules, strict=True):
                stack.module.load_state_dict(module_state)
            for counter, value in zip(self.silent, silent, strict=True):
                counter.copy_(value)
        self.good = [{k: v.detach().clone() for k, v in s.module.state_dict().items()}
                     if good is None else {k: v.to(self.device) for k, v in good.items()}
                     for s, good in zip(self.stacks, goods, strict=True)]
        self.finite = [f.to(self.device) for f in finite]
        self.reference = [None if r is None else r.to(self.device) for r in reference]
        self.optimizer.load_state_dict({"state": adam,
                                        "param_groups": self.optimizer.state_dict()[
                                            "param_groups"]})
        for gen, value in zip(self.gens, gens, strict=True):
            gen.set_state(value)
        self.pool = deque(maxlen=math.ceil(self.cfg.resample_pool / self.cfg.batch_size))
        if pool is not None:
            self.pool.extend(pool.to(self.device).split(sizes))
        self.frames = [[] if f is None else list(f.numpy()) for f in frames]
        self.histories = [History(rows) for rows in state["histories"]]
        self.n_resampled = list(state["n_resampled"])
        self.n_iter, self.n_samples = state["n_iter"], state["n_samples"]
        self.elapsed, self.finished = state["wall_time"], state["finished"]
        self.data_scale = state["data_scale"]  # measured once, on the run's first batch

    def _check(self, finite, parts, good, step: int, start: float) -> None:
        """Raise TrainingDiverged, every stack restored to ``good``, on NaN/Inf or blow-up."""
        factor = self.cfg.divergence_factor
        bad = []
        for k, (g, m) in enumerate(self.where):
            ref = float(self.reference[g][m])
            now = float(parts[g]["loss"][m])
            if not bool(finite[g][m]):
                bad.append((k, "the loss became NaN or Inf"))
            elif ref > 0 and now > factor * ref:
                bad.append((k, f"the loss grew from {ref:.4g} at step 1 to {now:.4g} "
                               f"(over divergence_factor={factor:g} times)"))
        if not bad:
            return
        for stack, state in zip(self.stacks, good, strict=True):
            stack.module.load_state_dict(state)
        last = int(self.histories[0]["step"][-1]) if len(self.histories[0]) else 0
        what = "; ".join(
            (f"member {k} (sparsity_coef={self.member_coefs[k]:g}, "
             f"width={self.stacks[self.where[k][0]].widths[self.where[k][1]]}): {why}"
             if len(self.where) > 1 else why) for k, why in bad)
        lo, hi = DATA_SCALE_RANGE
        scale = f"the data's scale sqrt(mean ||x||^2) = {self.data_scale:.3g} on the first batch"
        advice = (f"Lower lr ({scale} is within [{lo:g}, {hi:g}], so the step size, not the "
                  "data, is the likely cause)." if self._scale_in_range() else
                  f"This is a data-scale problem: {scale} is outside [{lo:g}, {hi:g}], and lr "
                  "is an absolute step size, meaningless at that scale. Normalise the data "
                  f"(divide it by {self.data_scale:.3g} for unit scale) rather than only "
                  "lowering lr.")
        message = (f"training diverged between step {last + 1} and step {step + 1}: {what} "
                   f"(lr={self.cfg.lr}); restored to the state at step {last}. {advice}")
        raise TrainingDiverged(message, self._results(False, message, self._wall(start)))

    def _log(self, step: int, parts, lr: float, factor: float, bar) -> None:
        cols: dict[str, list[float]] = {}
        for g, named in enumerate(parts):
            for key, value in named.items():
                if key != "_codes":
                    cols.setdefault(key, []).extend(value.tolist())
            codes = named["_codes"]
            # codes >= 0, so fired = nonzero; a whole-tensor count per member skips the
            # bool -> int64 cast of (codes > 0).sum (31 ms -> 1.2 ms at 1024 x 4096)
            cols.setdefault("l0", []).extend(
                int(torch.count_nonzero(member)) / codes.shape[1] for member in codes)
            cols.setdefault("dead", []).extend(self.dead(g).sum(1).tolist())
        for k, (g, m) in enumerate(self.where):
            row = {"step": step + 1, "samples": self.n_samples,
                   **{key: values[k] for key, values in cols.items()},
                   "lr": lr, "sparsity_coef": self.member_coefs[k] * factor}
            if self.eval_fn is not None or self.record:
                view = self.stacks[g].member(m)
                view.eval()
                if self.record:
                    self.frames[k].append(view.dictionary.numpy())
                if self.eval_fn is not None:
                    row.update(_evaluate(self.eval_fn, view, row))
                view.train()
            self.histories[k].append(row)
        bar.set_postfix(loss=f"{np.mean(cols['loss']):.4g}", l0=f"{np.mean(cols['l0']):.1f}",
                        dead=int(sum(cols["dead"])), refresh=False)


def _evaluate(eval_fn, sae: SparseAutoencoder, row: dict) -> dict[str, float]:
    with torch.no_grad():
        extra = eval_fn(sae)
    if not isinstance(extra, dict):
        raise TypeError(f"eval_fn must return a dict, got {type(extra).__name__}")
    clash = set(extra) & set(row)
    if clash:
        names = ", ".join(repr(c) for c in sorted(clash))
        raise ValueError(f"eval_fn returned {names}, name(s) the engine already logs")
    return {key: float(value) for key, value in extra.items()}


def train_sae(sae: SparseAutoencoder | str, data, config: TrainConfig | None = None, *,
              width: int | None = None, sae_kwargs: dict | None = None,
              objective: Objective | None = None,
              eval_fn: Callable[[SparseAutoencoder], dict[str, float]] | None = None,
              progress: bool = True, threads: int | None = None,
              checkpoint_every: int | None = None,
              checkpoint_path: str | os.PathLike | None = None,
              resume_from: str | os.PathLike | None = None) -> TrainResult:
    """Train one SAE with the engine and return its :class:`TrainResult`.

    sae : an SAE (trained in place) or a registered architecture name, then
        built as ``make_sae(name, d, width, **sae_kwargs)`` with ``d`` from the data.
        The SAE trains on the device its parameters are on (batches are moved there).
    data : a ``toysae.data.SyntheticData`` (fresh samples, seeded by
        ``config.seed``), an (n, d) numpy array / torch tensor (shuffled
        epochs) or an iterable of batches ((B, d) arrays or ``Batch``
        objects; training stops when it ends or after ``n_samples``).
    objective : what to minimise besides the architecture's own terms
        (default :class:`toysae.sae.LocalReconstruction`).
    eval_fn : called at each logging step as ``eval_fn(sae)`` (eval mode, no
        grad); its ``{name: float}`` is appended to the history. This is how
        callers add ground-truth metrics (MMCS, ...) without this layer
        importing ``toysae.metrics``.
    threads : torch threads for the run (None: one for a small SAE, else unchanged).
    checkpoint_every, checkpoint_path, resume_from : write the run's state every
        ``checkpoint_every`` steps (and at its end) to ``checkpoint_path``;
        continue a run from such a checkpoint, ending bit-identical to the run
        never interrupted (:func:`train_members`). To resume, pass the same SAE
        as built for the first session (or the same name, width and
        sae_kwargs), the same data and config: its weights are overwritten
        from the checkpoint.

    A NaN/Inf loss, or one that grows ``config.divergence_factor``-fold, raises
    :class:`TrainingDiverged` at the next logging step, with the SAE restored to
    the state of the last good logging step. Data whose scale
    ``sqrt(mean ||x||^2)`` (first batch) is outside ``DATA_SCALE_RANGE`` warns
    (:class:`DataScaleWarning`) before the first step, and a divergence then
    says it is a data-scale problem.
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if isinstance(sae, str):
        if width is None:
            raise ValueError("width is required when sae is an architecture name")
        sae = make_sae(sae, data_dim(data), width, **(sae_kwargs or {}))
    elif not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder or an architecture name, "
                        f"got {type(sae).__name__}")
    elif width is not None or sae_kwargs:
        raise ValueError("width and sae_kwargs only apply when sae is an architecture name")
    return train_members([SingleSAE(sae)], [config.sparsity_coef], data, config,
                         objective=objective, eval_fn=eval_fn, progress=progress,
                         threads=threads, checkpoint_every=checkpoint_every,
                         checkpoint_path=checkpoint_path, resume_from=resume_from)[0]
