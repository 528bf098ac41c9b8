"""The one training loop: every SAE in toysae trains through :func:`train_members`.

A run trains one or more *stacks* (``toysae.sae.stacks``): a stack holds
``M >= 1`` SAEs whose parameters live together (:class:`SingleSAE` wraps one
SAE of any architecture; :class:`toysae.sae.ensemble.ReLUSAEEnsemble` stacks
many ReLU SAEs into batched tensors). Every member sees the same batches
(``toysae.sae.batches``). One step:

1. ``sae_input = objective.sae_input(batch)``; the stacks' forward passes
   (leading member axis on every output);
2. the objective's named parts, plus ``sparsity = coef_m * penalty`` and the
   architecture's auxiliary terms (dead-latent loss, gate loss), per member;
3. one backward pass per stack, the decoder gradient's component along each
   (unit) row removed, one Adam step over all parameters, rows renormalised;
4. firing counts, dead-latent resampling (``toysae.sae.resampling``), the
   callbacks' ``on_step``, history, divergence checks, checkpoints.

The loop owns the LR and sparsity schedules (``toysae.sae.schedules``), the
dead-latent remedies (Anthropic's resampling, ghost grads, AuxK: each
architecture names its own), history (one :class:`toysae._result.History` per
member), divergence detection (NaN/Inf, and finite blow-up by
``config.divergence_factor``), the data-scale check (``DATA_SCALE_RANGE``),
device placement, train/eval mode, the thread count, the progress bar and the
callbacks (``toysae.sae.callbacks``: per-step hooks, ``eval_fn`` among them).
Checkpoints of the whole run state are written and restored by
``toysae.sae.train_state``. The run's options (objective, eval_fn, callbacks,
recording, progress, threads, checkpointing) travel as one :class:`RunOptions`.
Members never interact: the summed loss has a block-diagonal gradient, Adam is
element-wise, and resampling acts per member with its own generator, so a
member trains as it would alone (up to float rounding of batched matmuls).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from toysae import _tuning
from toysae._result import History, Result
from toysae._threads import check_threads, thread_count
from toysae._validation import check_float, check_int, check_tuple
from toysae.sae.base import SparseAutoencoder, make_sae
from toysae.sae.batches import data_dim, derived_seed, training_batches
from toysae.sae.callbacks import Callback, EvalFnCallback, StopTraining, TrainingState, check_rows
from toysae.sae.config import TrainConfig
from toysae.sae.l0_control import L0Controller
from toysae.sae.resampling import (
    duplicate_latents,
    reinit_dead_latents_,
    reset_optimizer_slots_,
)
from toysae.sae.schedules import lr_schedule, sparsity_schedule
from toysae.sae.stacks import MemberStack, SingleSAE
from toysae.sae.train_state import read_train_state, restore_checkpoint, run_key, write_checkpoint
from toysae.sae.training_objective import LocalReconstruction, Objective

__all__ = ["DATA_SCALE_RANGE", "DataScaleWarning", "RunOptions", "TrainResult",
           "TrainingDiverged", "data_scale", "fused_adam_options", "train_members", "train_sae"]

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
    sparsity_coef : this member's coefficient (``config.sparsity_coef`` for a single SAE);
        with ``config.target_l0``, the controller's start.
    final_sparsity_coef : the coefficient at the end: ``sparsity_coef``, or where the
        L0 controller left it (``config.target_l0``, ``toysae.sae.l0_control``).
    n_resampled : latents resampled in total.
    history : one row per logging step: ``step``, ``samples``, ``loss``, the
        objective's parts (``reconstruction`` by default), ``sparsity``,
        ``auxiliary``, ``l0`` (on the logged batch), ``dead`` (latents silent
        for ``dead_window`` steps), ``lr``, ``sparsity_coef`` (the step's, after
        warm-up and control),
        plus the columns ``eval_fn`` and the callbacks add.
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
    final_sparsity_coef: float
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


# -- the run's options --------------------------------------------------------------
@dataclass(frozen=True)
class RunOptions:
    """How a run trains, beside what (stacks, data) and with which hyperparameters
    (``TrainConfig``): one object every trainer takes and relays.

    objective : what to minimise besides the architecture's own terms (None:
        :class:`toysae.sae.LocalReconstruction`, stored as such).
    eval_fn : ``eval_fn(sae) -> {name: float}``, run for each member at each
        logging step (eval mode, no grad, on a view valid during the call); its
        values join the history row. This is how callers add ground-truth
        metrics (MMCS, ...) without this layer importing ``toysae.metrics``.
        It runs as the first callback (:class:`toysae.sae.EvalFnCallback`).
    callbacks : :class:`toysae.sae.Callback` objects (a single one is accepted),
        whose hooks the loop calls in this order (``toysae.sae.callbacks``).
    record_dictionaries : keep each member's unit-row dictionary at each logging
        step (``TrainResult.dictionary_history``).
    progress : show a progress bar.
    threads : torch threads for the run (None: one thread for small work, see
        ``toysae._threads``).
    checkpoint_every, checkpoint_path : write the run's whole state to
        ``checkpoint_path`` (atomically, replacing the previous one) every
        ``checkpoint_every`` steps and once more when the run ends
        (``toysae.sae.train_state``).
    resume_from : a checkpoint of this same run (:func:`train_members`). With
        ``checkpoint_every`` and no ``checkpoint_path``, checkpoints keep going to
        ``resume_from`` (:attr:`checkpoint_file`).

    Every field is checked here, when the options are made: TypeError/ValueError
    naming the field, FileNotFoundError for a missing ``resume_from``.
    """

    objective: Objective | None = None
    eval_fn: Callable[[SparseAutoencoder], dict[str, float]] | None = None
    callbacks: Sequence[Callback] = ()
    record_dictionaries: bool = False
    progress: bool = True
    threads: int | None = None
    checkpoint_every: int | None = None
    checkpoint_path: str | os.PathLike | None = None
    resume_from: str | os.PathLike | None = None

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        if self.objective is None:
            put("objective", LocalReconstruction())
        elif not isinstance(self.objective, Objective):
            raise TypeError(f"objective must be a toysae.sae.Objective, got "
                            f"{type(self.objective).__name__}")
        if self.eval_fn is not None and not callable(self.eval_fn):
            raise TypeError(f"eval_fn must be callable, got {type(self.eval_fn).__name__}")
        put("callbacks", _check_callbacks(self.callbacks))
        for name in ("record_dictionaries", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        put("threads", check_threads(self.threads))
        self._check_checkpointing(put)

    def _check_checkpointing(self, put) -> None:
        every, path, resume_from = self.checkpoint_every, self.checkpoint_path, self.resume_from
        if every is not None:
            put("checkpoint_every", check_int(every, "checkpoint_every", minimum=1))
        for name, value in (("checkpoint_path", path), ("resume_from", resume_from)):
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"{name} must be a path, got {type(value).__name__}")
        if resume_from is not None:
            put("resume_from", Path(resume_from))
            if not self.resume_from.is_file():
                raise FileNotFoundError(f"resume_from: no training checkpoint at "
                                        f"{self.resume_from}")
        if (every is None) != (self.checkpoint_file is None):
            raise ValueError("checkpoint_every and checkpoint_path go together: give both to "
                             f"checkpoint a run, got checkpoint_every={every!r}, "
                             f"checkpoint_path={path!r}")
        if path is not None:
            put("checkpoint_path", Path(path))
            if self.checkpoint_path.is_dir():
                raise ValueError(f"checkpoint_path {self.checkpoint_path} is a directory; "
                                 "name a file")

    @property
    def checkpoint_file(self) -> Path | None:
        """Where checkpoints are written: ``checkpoint_path``, or ``resume_from`` when only
        ``checkpoint_every`` was given with it; None when the run is not checkpointed."""
        if self.checkpoint_path is not None:
            return Path(self.checkpoint_path)
        if self.checkpoint_every is not None and self.resume_from is not None:
            return Path(self.resume_from)
        return None

    @property
    def checkpointing(self) -> bool:
        """Whether the options write or read a checkpoint."""
        return self.checkpoint_every is not None or self.resume_from is not None

    def replace(self, **changes) -> RunOptions:
        """A copy with ``changes`` applied (checked again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, options: RunOptions | None = None, **fields) -> RunOptions:
        """``options`` (None: the defaults) with the given fields replaced: what a trainer
        that takes both ``options`` and the fields as keywords runs with."""
        if options is not None and not isinstance(options, RunOptions):
            raise TypeError(f"options must be a RunOptions, got {type(options).__name__}")
        unknown = set(fields) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}; the run "
                            f"options are {[f.name for f in dataclasses.fields(cls)]}")
        if options is None:
            return cls(**fields)
        return dataclasses.replace(options, **fields) if fields else options


def _check_callbacks(callbacks) -> tuple[Callback, ...]:
    if isinstance(callbacks, Callback):
        return (callbacks,)
    if isinstance(callbacks, (str, bytes, dict)) or not hasattr(callbacks, "__iter__"):
        raise TypeError(f"callbacks must be a sequence of toysae.sae.Callback, got "
                        f"{type(callbacks).__name__}")
    callbacks = tuple(callbacks)
    for k, callback in enumerate(callbacks):
        if not isinstance(callback, Callback):
            raise TypeError(f"callbacks[{k}] must be a toysae.sae.Callback (subclass it and "
                            f"override on_start, on_step or on_log), got "
                            f"{type(callback).__name__}")
    return callbacks


def fused_adam_options() -> dict:
    """Fused Adam (one kernel for all parameters) where this torch build has it on the CPU."""
    try:
        torch.optim.Adam([torch.zeros(1, requires_grad=True)], fused=True)
    except (RuntimeError, TypeError, ValueError):
        return {"foreach": True}
    return {"fused": True}


# -- the loop -----------------------------------------------------------------------
def train_members(stacks: Sequence[MemberStack], sparsity_coefs: Sequence[float], data,
                  config: TrainConfig, options: RunOptions | None = None) -> list[TrainResult]:
    """Train every member of ``stacks`` on the same batches; one :class:`TrainResult` each.

    Members are numbered across the stacks in order; member ``k`` uses
    ``sparsity_coefs[k]``. ``data``: as for :func:`train_sae`. ``options``
    (:class:`RunOptions`, None: the defaults): the objective, ``eval_fn``, the
    callbacks, dictionary recording, the progress bar, threads and
    checkpointing.

    With ``options.resume_from``, a checkpoint of this same run (same config,
    members, coefficients, objective and data; ``ValueError`` naming what
    differs otherwise): the stacks' parameters, Adam, the schedules' position,
    the dead-latent counters, the resampling generators and pool, the histories
    and the data position are restored, and the run continues to end
    bit-identical to one never interrupted (on the same machine and thread
    count, as every seeded result in toysae). A checkpoint of a finished run
    returns its results at once.
    """
    options = RunOptions.of(options)
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
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
    if config.target_l0 is not None:
        _check_target_l0(stacks, coefs, config)
    resume_from = options.resume_from
    saved = read_train_state(resume_from) if resume_from is not None else None
    d = stacks[0].d
    batches, n_steps = training_batches(data, options.objective.batch_width(d), config,
                                        start=saved[0]["n_iter"] if saved else 0)
    engine = Engine(list(stacks), coefs, config, options)
    if options.checkpointing:
        engine.run_key = run_key(engine, data)
        engine.checkpoint_every = options.checkpoint_every
        engine.checkpoint_path = options.checkpoint_file
    if saved is not None:
        restore_checkpoint(engine, *saved, n_steps=n_steps, source=resume_from)
    work = config.batch_size * d * sum(s.n_members * s.max_width for s in stacks)
    with thread_count(options.threads, work=work, small_work=_tuning.SAE_SMALL_WORK,
                      device=stacks[0].device):
        return engine.run(batches, n_steps)


def _check_target_l0(stacks: Sequence[MemberStack], coefs: tuple[float, ...],
                     config: TrainConfig) -> None:
    """ValueError, before any work, when ``config.target_l0`` cannot steer a member."""
    target = config.target_l0
    members = [(s.member(m), s.widths[m]) for s in stacks for m in range(s.n_members)]
    for (sae, width), coef in zip(members, coefs, strict=True):
        if sae.penalty_kind == "none":
            raise ValueError(f"target_l0 steers a sparsity penalty, and {sae.architecture} has "
                             f"none: its L0 is set by its k (pass k={round(target)} to the SAE "
                             "instead), so leave target_l0=None")
        if target > width:
            raise ValueError(f"target_l0 must be <= the width ({width}), got {target}")
        if not config.l0_coef_min <= coef <= config.l0_coef_max:
            raise ValueError(f"sparsity_coefs: with target_l0 each is the controller's start "
                             f"and must lie in [l0_coef_min, l0_coef_max] = "
                             f"[{config.l0_coef_min:g}, {config.l0_coef_max:g}], got {coef}")


class Engine:
    """One run's state and loop; checkpoints read and write it (toysae.sae.train_state)."""

    def __init__(self, stacks: list[MemberStack], coefs: tuple[float, ...],
                 config: TrainConfig, options: RunOptions):
        self.stacks, self.cfg, self.objective = stacks, config, options.objective
        self.record, self.progress = options.record_dictionaries, options.progress
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
        seed = derived_seed(config.seed, _tuning.SEED_KEY_RESAMPLING)
        self.gens = [torch.Generator().manual_seed(seed) for _ in self.where]
        n = len(self.where)
        self.histories = [History() for _ in range(n)]
        self.frames: list[list[np.ndarray]] = [[] for _ in range(n)]
        self.n_resampled = [0] * n
        self.member_coefs = list(coefs)  # the configured ones (the controller's start)
        self.controller = (None if config.target_l0 is None else
                           L0Controller(self.member_coefs, config.target_l0, config.l0_gain,
                                        config.l0_damping, config.l0_coef_min,
                                        config.l0_coef_max))
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
        self.n_steps = 0  # planned, set by run()
        callbacks = ((EvalFnCallback(options.eval_fn),) if options.eval_fn is not None
                     else ()) + options.callbacks
        hooks = [cb.hooks() for cb in callbacks]
        self.on_start, self.on_step, self.on_log = (
            [h[name] for h in hooks if name in h] for name in ("on_start", "on_step", "on_log"))
        # None without callbacks: then the loop does no callback work at all.
        self.state = TrainingState(self) if callbacks else None
        self.stop: tuple[object, StopTraining] | None = None  # (hook, request) that ended it

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

    def dead(self, g: int, window: int | None = None) -> Tensor:
        dead = self.silent[g] >= (self.cfg.dead_window if window is None else window)
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
        cfg = self.cfg
        for k, (g, m) in enumerate(self.where):
            dead = self.dead(g, cfg.resample_after)[m]
            stack = self.stacks[g]
            view = stack.member(m)
            if cfg.resample_duplicates:
                live = ~dead[:view.width]
                dead = dead.clone()
                dead[:view.width] |= duplicate_latents(view.dictionary, live,
                                                       cfg.resample_duplicates)
            if cfg.resample_max is not None:
                # Many latents moved at once (a wide dictionary's spare ones, all dead)
                # each fire on their own residual and can wreck the codes of the rest.
                waiting = dead.nonzero().squeeze(1)[max(1, int(cfg.resample_max * view.width)):]
                if waiting.numel():
                    dead = dead.clone()
                    dead[waiting] = False
            if not bool(dead.any()):
                continue
            idx = reinit_dead_latents_(view, dead[:view.width], pool,
                                       encoder_scale=cfg.resample_encoder_scale,
                                       generator=self.gens[k], pick=cfg.resample_inputs,
                                       direction=cfg.resample_direction)
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
        pool, finite, first, state = self.pool, self.finite, self.n_iter, self.state
        self.n_steps = n_steps
        desc = f"{len(self.where)} SAEs" if len(self.where) > 1 else None
        bar = tqdm(total=n_steps, initial=first, disable=not self.progress, unit="step",
                   leave=False, desc=desc)
        start = time.perf_counter()
        for stack in self.stacks:
            stack.module.train()
        step, parts = first - 1, None
        try:
            for hook in self.on_start:
                hook(state)
            for step, batch in enumerate(batches, start=first):
                batch = batch.to(self.device, non_blocking=True)
                lr = cfg.lr * lr_schedule(step, n_steps, cfg.lr_warmup, cfg.lr_decay)
                if state is not None:
                    lr *= state.lr_scale
                factor = sparsity_schedule(step, n_steps, cfg.sparsity_warmup)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                parts = self.step(batch, factor)
                if self.controller is not None and factor >= 1.0:  # holds during warm-up
                    self._control_l0(parts)
                for g, named in enumerate(parts):
                    finite[g] &= torch.isfinite(named["loss"])
                    if self.reference[g] is None:
                        self.reference[g] = named["loss"].clone()
                self.n_iter, self.n_samples = step + 1, self.n_samples + batch.shape[0]
                pool.append(self.objective.sae_input(batch))
                if (cfg.resample_every and (step + 1) % cfg.resample_every == 0
                        and step < cfg.resample_until * n_steps):
                    self.resample(torch.cat(list(pool)))
                if state is not None:
                    state._observe(batch, lr, factor, parts)
                    self._call(self.on_step)
                if (step + 1) % cfg.log_every == 0 or step + 1 == n_steps:
                    self._check(finite, parts, self.good, step, start)
                    self._log(step, parts, lr, factor, bar)
                    if step + 1 != n_steps:  # the last step's restore point is never read
                        self.good = self._snapshot()
                if (self.checkpoint_every and self.n_iter % self.checkpoint_every == 0
                        and self.n_iter != n_steps):  # the run's end writes its own
                    write_checkpoint(self, n_steps, self._wall(start))
                bar.update(1)
                if state is not None and self.stop is not None:
                    break
            if step >= first and (step + 1) % cfg.log_every and step + 1 != n_steps:
                # data ended, or a callback stopped the run, between logging steps
                self._check(finite, parts, self.good, step, start)
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
        ended = f"trained {self.n_iter} steps ({self.n_samples} samples)"
        if self.n_iter != n_steps:
            ended += (f"; the data ended before the planned {n_steps} steps" if self.stop is None
                      else f"; {self._stopped(n_steps)}")
        if self.checkpoint_every:
            write_checkpoint(self, n_steps, self._wall(start), finished=ended)
        return self._results(True, ended, self._wall(start))

    def _control_l0(self, parts: list[dict[str, Tensor]]) -> None:
        """Move each member's coefficient towards ``target_l0`` by this batch's L0."""
        l0 = torch.cat([torch.count_nonzero(named["_codes"], dim=(1, 2)) / named["_codes"].shape[1]
                        for named in parts])
        self.set_coefs(self.controller.update(l0))

    def set_coefs(self, coefs: Tensor) -> None:
        """Put the members' coefficients ``(n_members,)`` into the stacks' tensors."""
        offset = 0
        for tensor in self.coefs:
            tensor.copy_(coefs[offset:offset + tensor.numel()])
            offset += tensor.numel()

    def current_coef(self, k: int) -> float:
        """Member ``k``'s coefficient now (before the warm-up factor)."""
        g, m = self.where[k]
        return float(self.coefs[g][m]) if self.controller is not None else self.member_coefs[k]

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
            final = self.controller.coefs[k] if self.controller is not None else coef
            short = (self.controller.shortfall(k, self.n_iter)
                     if self.controller is not None and success else None)
            out.append(TrainResult(
                success=success and short is None,
                message=message if short is None else f"{message}; {short}", n_iter=self.n_iter,
                n_samples=self.n_samples, wall_time=wall_time if len(self.where) == 1 else share,
                sparsity_coef=coef, final_sparsity_coef=final, n_resampled=self.n_resampled[k],
                history=self.histories[k],
                sae=self.stacks[g].trained_member(m), config=cfg,
                dictionary_history=self.frames[k]))
        return out

    def _snapshot(self) -> list[dict]:
        return [{k: v.detach().clone() for k, v in s.module.state_dict().items()}
                for s in self.stacks]

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
        rows = [{"step": step + 1, "samples": self.n_samples,
                 **{key: values[k] for key, values in cols.items()},
                 "lr": lr, "sparsity_coef": self.current_coef(k) * factor}
                for k in range(len(self.where))]
        if self.record:
            for k, (g, m) in enumerate(self.where):
                self.frames[k].append(self.stacks[g].member(m).dictionary.numpy())
        if self.on_log:
            engine_rows = [dict(row) for row in rows]
            for hook in self.on_log:
                self._call([hook], rows)
                check_rows(rows, engine_rows, hook)
        for history, row in zip(self.histories, rows, strict=True):
            history.append(row)
        bar.set_postfix(loss=f"{np.mean(cols['loss']):.4g}", l0=f"{np.mean(cols['l0']):.1f}",
                        dead=int(sum(cols["dead"])), refresh=False)

    def _call(self, hooks: list, *args) -> None:
        """Call each hook with the state; the first StopTraining is kept, the rest run."""
        for hook in hooks:
            try:
                hook(self.state, *args)
            except StopTraining as request:
                if self.stop is None:
                    self.stop = (hook, request)

    def _stopped(self, n_steps: int) -> str:
        hook, request = self.stop
        reason = f": {request}" if str(request) else ""
        return (f"stopped by {type(hook.__self__).__name__}.{hook.__name__} before the "
                f"planned {n_steps} steps{reason}")


def train_sae(sae: SparseAutoencoder | str, data, config: TrainConfig | None = None, *,
              width: int | None = None, sae_kwargs: dict | None = None,
              options: RunOptions | None = None, **run_options) -> TrainResult:
    """Train one SAE with the engine and return its :class:`TrainResult`.

    sae : an SAE (trained in place) or a registered architecture name, then
        built as ``make_sae(name, d, width, **sae_kwargs)`` with ``d`` from the data.
        The SAE trains on the device its parameters are on (batches are moved there).
    data : a ground-truth world (``toysae.data.GroundTruthData``: a ``SyntheticData``,
        a ``toysae.interop.SAELensWorld``; fresh samples, seeded by
        ``config.seed``), an (n, d) numpy array / torch tensor (shuffled
        epochs) or an iterable of batches ((B, d) arrays or ``Batch``
        objects; training stops when it ends or after ``n_samples``).
    options, **run_options : a :class:`RunOptions` and/or its fields as keywords
        (``objective``, ``eval_fn``, ``callbacks``, ``record_dictionaries``,
        ``progress``, ``threads``, ``checkpoint_every``, ``checkpoint_path``,
        ``resume_from``), the keywords replacing the object's fields. To resume
        (``resume_from``), pass the same SAE as built for the first session (or
        the same name, width and sae_kwargs), the same data and config: its
        weights are overwritten from the checkpoint, and the run ends
        bit-identical to the run never interrupted (:func:`train_members`).

    A NaN/Inf loss, or one that grows ``config.divergence_factor``-fold, raises
    :class:`TrainingDiverged` at the next logging step, with the SAE restored to
    the state of the last good logging step. Data whose scale
    ``sqrt(mean ||x||^2)`` (first batch) is outside ``DATA_SCALE_RANGE`` warns
    (:class:`DataScaleWarning`) before the first step, and a divergence then
    says it is a data-scale problem.
    """
    options = RunOptions.of(options, **run_options)
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
    return train_members([SingleSAE(sae)], [config.sparsity_coef], data, config, options)[0]
