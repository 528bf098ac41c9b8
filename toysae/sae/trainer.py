"""Training: ``TrainConfig`` and ``train_sae``.

One step: forward, loss, backward (hand-written for the ReLU SAE, autograd for
the rest), drop the decoder gradient's component parallel to each unit row,
Adam, renormalise the decoder rows. Around it: linear LR warm-up and a linear
decay to 0 at the end, a linear warm-up of the sparsity coefficient,
Anthropic's dead-latent resampling, ghost grads or AuxK for dead latents, a
tqdm bar, and a divergence guard.

The loss is ``mean_n 1/2 ||x_n - x_hat_n||^2 + l1 * mean_n ||f_n||_1``: the
dictionary-learning objective of DESIGN.md divided by the number of samples,
so ``l1`` is its ``lam``. Unlike the seed's replication code it is not divided
by the dictionary size: a width-normalised coefficient would weaken the
penalty per latent as the dictionary grows, so sweeps over width at one
"l1" would compare different trade-offs.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from toysae._config import JsonMixin
from toysae._threads import single_thread_if_small
from toysae._validation import check_float, check_int, to_numpy
from toysae.sae.base import SparseAutoencoder, make_sae
from toysae.sae.relu import ReLUSAE

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "train_sae"]


class TrainingDiverged(RuntimeError, ValueError):
    """The loss turned NaN or Inf. ``.result`` holds the SAE restored to its last good state."""

    def __init__(self, message: str, result: TrainResult):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class TrainConfig(JsonMixin):
    """Hyperparameters of :func:`train_sae`. Defaults: the reference toy at width 1024.

    The defaults were tuned for the ReLU SAE at width 1024 on the uncorrelated
    reference toy with 1M samples (a grid over lr x l1 x batch size x
    resampling, 2-4 data seeds each; benchmarks/bench_sae_recovery.py
    measures the result). Batch 256 beats 1024 at a fixed sample budget
    because 4x the steps matter more than the less noisy gradient; lr above
    ~1e-2 at this batch starts to lose rare features or collapse.

    n_samples : training samples in total; steps = ceil(n_samples / batch_size).
    batch_size : samples per step.
    lr : peak Adam learning rate; ``beta1``, ``beta2``, ``eps`` are Adam's.
    lr_warmup, lr_decay : fractions of the steps spent warming the LR up
        linearly from 0, and decaying it linearly to 0 at the end.
    l1 : sparsity coefficient (L1 for relu/tied/gated, L0 for jumprelu,
        unused by topk/batchtopk): the ``lam`` of DESIGN.md per sample.
    l1_warmup : fraction of the steps over which it ramps up linearly from 0.
    dead_window : a latent that has not fired for this many steps is dead
        (for the logged count, ghost grads, AuxK and resampling).
    resample_every : resample dead latents every this many steps (0: never),
        while ``step < resample_until * n_steps``.
    resample_pool : how many recent training inputs are scored for resampling.
    resample_encoder_scale : new encoder vectors get this times the mean alive
        encoder norm (Anthropic used 0.2).
    ghost_grads : add the ghost-grad loss for dead latents (ghost architectures).
    aux_k_coef : weight of the AuxK loss for dead latents (TopK variants; 0 off).
    log_every : steps between history rows (and divergence checks).
    seed : seeds the data order/stream and resampling.
    """

    n_samples: int = 1_000_000
    batch_size: int = 256
    lr: float = 7e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    lr_warmup: float = 0.02
    lr_decay: float = 0.3
    l1: float = 0.04
    l1_warmup: float = 0.05
    dead_window: int = 200
    resample_every: int = 250
    resample_until: float = 0.6
    resample_pool: int = 8192
    resample_encoder_scale: float = 0.2
    ghost_grads: bool = False
    aux_k_coef: float = 1 / 32
    log_every: int = 50
    seed: int = 0

    def __post_init__(self):
        check_int(self.n_samples, "n_samples", minimum=1)
        check_int(self.batch_size, "batch_size", minimum=1)
        check_float(self.lr, "lr", minimum=0.0, min_inclusive=False)
        check_float(self.beta1, "beta1", minimum=0.0, maximum=1.0, max_inclusive=False)
        check_float(self.beta2, "beta2", minimum=0.0, maximum=1.0, max_inclusive=False)
        check_float(self.eps, "eps", minimum=0.0, min_inclusive=False)
        for name in ("lr_warmup", "lr_decay", "l1_warmup", "resample_until"):
            check_float(getattr(self, name), name, minimum=0.0, maximum=1.0)
        if self.lr_warmup + self.lr_decay > 1:
            raise ValueError(f"lr_warmup + lr_decay must be <= 1, got {self.lr_warmup} + "
                             f"{self.lr_decay}")
        check_float(self.l1, "l1", minimum=0.0)
        check_int(self.dead_window, "dead_window", minimum=1)
        check_int(self.resample_every, "resample_every", minimum=0)
        check_int(self.resample_pool, "resample_pool", minimum=1)
        check_float(self.resample_encoder_scale, "resample_encoder_scale", minimum=0.0)
        if not isinstance(self.ghost_grads, bool):
            raise TypeError(f"ghost_grads must be a bool, got {self.ghost_grads!r}")
        check_float(self.aux_k_coef, "aux_k_coef", minimum=0.0)
        check_int(self.log_every, "log_every", minimum=1)
        check_int(self.seed, "seed", minimum=0)

    @property
    def n_steps(self) -> int:
        return math.ceil(self.n_samples / self.batch_size)


@dataclass
class TrainResult:
    """What :func:`train_sae` returns.

    sae : the trained SAE (the same object that was passed in, trained in place).
    history : column per metric, one entry per logging step: ``step``,
        ``samples``, ``loss``, ``reconstruction``, ``sparsity``, ``auxiliary``,
        ``l0`` (on the logged batch), ``dead`` (latents silent for
        ``dead_window`` steps), ``lr``, ``l1``, plus whatever ``eval_fn`` returns.
    wall_time : seconds spent in training (eval_fn included).
    n_steps, n_samples : steps and samples actually trained on.
    n_resampled : latents resampled in total.
    """

    sae: SparseAutoencoder
    config: TrainConfig
    history: dict[str, list[float]] = field(default_factory=dict)
    wall_time: float = 0.0
    n_steps: int = 0
    n_samples: int = 0
    n_resampled: int = 0

    def to_dict(self) -> dict:
        return {"architecture": self.sae.architecture, "sae_config": self.sae.config(),
                "config": self.config.to_dict(), "history": self.history,
                "wall_time": self.wall_time, "n_steps": self.n_steps,
                "n_samples": self.n_samples, "n_resampled": self.n_resampled}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **{"indent": 2, **kwargs})

    def __repr__(self) -> str:
        last = {k: v[-1] for k, v in self.history.items() if v}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if k not in ("step", "samples"))
        return (f"TrainResult({self.sae.architecture} d={self.sae.d} width={self.sae.width}, "
                f"{self.n_steps} steps / {self.n_samples} samples in {self.wall_time:.1f}s, "
                f"resampled {self.n_resampled}; last: {shown})")


# -- data -------------------------------------------------------------------
def derived_seed(seed: int, *key: int) -> int:
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1)[0])


def training_batches(data, d: int, config: TrainConfig) -> tuple[Iterator[torch.Tensor], int]:
    """(iterator of float32 (B, d) tensors, planned number of steps)."""
    from toysae.data import SyntheticData  # data is the layer below; imported lazily

    B, n_steps = config.batch_size, config.n_steps
    if isinstance(data, SyntheticData):
        if data.config.d != d:
            raise ValueError(f"data has d={data.config.d} but the SAE has d={d}")
        return _synthetic_batches(data, B, n_steps, config.seed), n_steps
    if isinstance(data, (np.ndarray, torch.Tensor)):
        X = to_numpy(data, "data", dtype=np.float32, ndim=2)
        if X.shape[1] != d:
            raise ValueError(f"data has {X.shape[1]} columns but the SAE has d={d}")
        if X.shape[0] == 0:
            raise ValueError("data has no rows")
        return _array_batches(torch.from_numpy(X), B, n_steps, config.seed), n_steps
    if isinstance(data, (Iterable, Iterator)) and not isinstance(data, (str, bytes, dict)):
        return _checked_batches(iter(data), d, config.n_samples), n_steps
    raise TypeError(f"data must be a SyntheticData, an (n, d) array or an iterable of batches, "
                    f"got {type(data).__name__}")


def _synthetic_batches(data, B: int, n_steps: int, seed: int) -> Iterator[torch.Tensor]:
    per_chunk = max(1, 65536 // B)
    for chunk, start in enumerate(range(0, n_steps, per_chunk)):
        count = min(per_chunk, n_steps - start)
        X = torch.from_numpy(data.sample(count * B, seed=derived_seed(seed, 1, chunk)).x)
        yield from X.split(B)


def _array_batches(X: torch.Tensor, B: int, n_steps: int, seed: int) -> Iterator[torch.Tensor]:
    gen = torch.Generator().manual_seed(derived_seed(seed, 2))
    n, step = X.shape[0], 0
    while True:
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, B):
            if step == n_steps:
                return
            yield X.index_select(0, order[start:start + B])
            step += 1


def _checked_batches(it: Iterator, d: int, n_samples: int) -> Iterator[torch.Tensor]:
    seen = 0
    for k, item in enumerate(it):
        if seen >= n_samples:
            return
        x = getattr(item, "x", item)  # a toysae.data.Batch or a bare array
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"data batch {k} must be an array or Batch, got {type(item).__name__}")
        if x.ndim != 2 or x.shape[1] != d or x.shape[0] == 0:
            raise ValueError(f"data batch {k} must have shape (n, {d}), got {tuple(x.shape)}")
        x = x.float()
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"data batch {k} contains NaN or Inf values")
        seen += x.shape[0]
        yield x


# -- schedules and dead latents ---------------------------------------------
def lr_schedule(step: int, n_steps: int, warmup: float, decay: float) -> float:
    factor = 1.0
    warm = round(warmup * n_steps)
    if warm and step < warm:
        factor = (step + 1) / warm
    decay_steps = round(decay * n_steps)
    if decay_steps and step >= n_steps - decay_steps:
        factor = min(factor, (n_steps - step) / decay_steps)
    return factor


def l1_schedule(step: int, n_steps: int, warmup: float) -> float:
    warm = round(warmup * n_steps)
    return min(1.0, (step + 1) / warm) if warm else 1.0


@torch.no_grad()
def resample_dead_latents_(sae: SparseAutoencoder, optimizer: torch.optim.Optimizer,
                           dead: torch.Tensor, inputs: torch.Tensor, *,
                           encoder_scale: float = 0.2,
                           generator: torch.Generator | None = None) -> int:
    """Anthropic's resampling ("Towards Monosemanticity", 2023); returns how many latents moved.

    Each dead latent gets an input drawn with probability proportional to the
    square of its reconstruction loss: the unit input becomes the decoder row,
    the input scaled to ``encoder_scale`` x the mean alive encoder norm the
    encoder vector, the encoder bias 0; Adam's moments of those slices are
    reset so stale statistics do not throw the new latent off at once.
    """
    idx = dead.nonzero().squeeze(1)
    if idx.numel() == 0:
        return 0
    x_hat = torch.cat([sae(chunk).x_hat for chunk in inputs.split(4096)])
    weights = (x_hat - inputs).pow(2).sum(1).pow(2)
    # An all-zero input (no feature active) has no direction: it would make a zero atom.
    has_direction = inputs.norm(dim=1) > 1e-6
    if not bool(has_direction.any()):
        return 0
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
    for param, axis in sae.latent_parameters():
        state = optimizer.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key].index_fill_(axis, idx, 0.0)
    return idx.numel()


# -- the loop -----------------------------------------------------------------
def train_sae(sae: SparseAutoencoder | str, data, config: TrainConfig | None = None, *,
              width: int | None = None, sae_kwargs: dict | None = None,
              eval_fn: Callable[[SparseAutoencoder], dict[str, float]] | None = None,
              progress: bool = True) -> TrainResult:
    """Train an SAE and return a :class:`TrainResult`.

    sae : an SAE (trained in place) or a registered architecture name, then
        built as ``make_sae(name, d, width, **sae_kwargs)`` with ``d`` from the data.
    The SAE trains on the device its parameters are on (batches are moved there).

    data : a ``toysae.data.SyntheticData`` (fresh samples, seeded by
        ``config.seed``), an (n, d) numpy array / torch tensor (shuffled
        epochs) or an iterable of batches ((B, d) arrays or ``Batch``
        objects; training stops when it ends or after ``n_samples``).
    eval_fn : called at each logging step as ``eval_fn(sae)`` (eval mode, no
        grad); its ``{name: float}`` is appended to the history. This is how
        callers add ground-truth metrics (MMCS, ...) without this layer
        importing ``toysae.metrics``.

    A NaN/Inf loss raises :class:`TrainingDiverged` at the next logging step,
    with the SAE restored to the state of the last logging step whose losses
    were all finite.
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if eval_fn is not None and not callable(eval_fn):
        raise TypeError(f"eval_fn must be callable, got {type(eval_fn).__name__}")
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, got {progress!r}")
    if isinstance(sae, str):
        if width is None:
            raise ValueError("width is required when sae is an architecture name")
        d = data_dim(data)
        sae = make_sae(sae, d, width, **(sae_kwargs or {}))
    elif not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder or an architecture name, "
                        f"got {type(sae).__name__}")
    elif width is not None or sae_kwargs:
        raise ValueError("width and sae_kwargs only apply when sae is an architecture name")
    batches, n_steps = training_batches(data, sae.d, config)
    with single_thread_if_small(2 * config.batch_size * sae.d * sae.width, 10_000_000):
        return _Trainer(sae, config, eval_fn, progress).run(batches, n_steps)


def data_dim(data) -> int:
    from toysae.data import SyntheticData

    if isinstance(data, SyntheticData):
        return data.config.d
    if isinstance(data, (np.ndarray, torch.Tensor)) and data.ndim == 2:
        return int(data.shape[1])
    raise ValueError("pass an SAE (not a name) when data is an iterable of batches, or an "
                     f"(n, d) array / SyntheticData; got {type(data).__name__}")


class _Trainer:
    def __init__(self, sae, config: TrainConfig, eval_fn, progress: bool):
        self.sae, self.cfg, self.eval_fn, self.progress = sae, config, eval_fn, progress
        self.optimizer = torch.optim.Adam(sae.parameters(), lr=config.lr,
                                          betas=(config.beta1, config.beta2), eps=config.eps,
                                          **fused_adam_options())
        uses_auxk = sae.dead_latent_loss == "auxk"
        self.dead_loss = config.aux_k_coef > 0 if uses_auxk else config.ghost_grads
        self.aux_coef = config.aux_k_coef if uses_auxk else 1.0
        # The hand-written backward covers exactly ReLUSAE's loss, not a subclass's.
        self.fast = type(sae) is ReLUSAE and not self.dead_loss
        self.device = sae.decoder_weight.device
        self.silent = torch.zeros(sae.width, dtype=torch.int64, device=self.device)
        self.gen = torch.Generator().manual_seed(derived_seed(config.seed, 3))
        self.history: dict[str, list[float]] = {}
        self.result = TrainResult(sae, config, self.history)

    def step(self, x: torch.Tensor, coef: float):
        sae = self.sae
        if self.fast:
            total, recon, sparsity, codes = sae.loss_and_grad_(x, coef)
            aux = recon.new_zeros(())
        else:
            dead = self.silent >= self.cfg.dead_window if self.dead_loss else None
            self.optimizer.zero_grad(set_to_none=True)
            out = sae(x)
            total, recon, sparsity, aux = sae.loss_from_output(x, out, coef, dead=dead,
                                                               aux_coef=self.aux_coef)
            total.backward()
            codes = out.codes.detach()
        # Codes are >= 0 for every architecture, so a latent fired iff its column max is > 0.
        self.silent.add_(1).masked_fill_(codes.amax(0) > 0, 0)
        sae.remove_parallel_grad_()
        self.optimizer.step()
        sae.normalize_decoder_()
        return total.detach(), recon.detach(), sparsity.detach(), aux.detach(), codes

    def run(self, batches: Iterator[torch.Tensor], n_steps: int) -> TrainResult:
        cfg, sae, res = self.cfg, self.sae, self.result
        pool: deque[torch.Tensor] = deque(maxlen=math.ceil(cfg.resample_pool / cfg.batch_size))
        good = _snapshot(sae)
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        bar = tqdm(total=n_steps, disable=not self.progress, unit="step", leave=False)
        start = time.perf_counter()
        sae.train()
        step = -1
        try:
            for step, x in enumerate(batches):
                x = x.to(self.device, non_blocking=True)
                lr = cfg.lr * lr_schedule(step, n_steps, cfg.lr_warmup, cfg.lr_decay)
                coef = cfg.l1 * l1_schedule(step, n_steps, cfg.l1_warmup)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                parts = self.step(x, coef)
                finite &= torch.isfinite(parts[0])
                res.n_steps, res.n_samples = step + 1, res.n_samples + x.shape[0]
                pool.append(x)
                if (cfg.resample_every and (step + 1) % cfg.resample_every == 0
                        and step < cfg.resample_until * n_steps):
                    dead = self.silent >= cfg.dead_window
                    moved = resample_dead_latents_(
                        sae, self.optimizer, dead, torch.cat(list(pool)),
                        encoder_scale=cfg.resample_encoder_scale, generator=self.gen)
                    self.silent.masked_fill_(dead, 0)
                    res.n_resampled += moved
                if (step + 1) % cfg.log_every == 0 or step + 1 == n_steps:
                    if not bool(finite):
                        self._diverged(good, step)
                    self._log(step, parts, lr, coef, bar)
                    good = _snapshot(sae)
                bar.update(1)
            if step >= 0 and (step + 1) % cfg.log_every and step + 1 != n_steps:
                if not bool(finite):  # the data ran out between logging steps
                    self._diverged(good, step)
                self._log(step, parts, lr, coef, bar)
        finally:
            bar.close()
            sae.eval()
            res.wall_time = time.perf_counter() - start
        if step < 0:
            raise ValueError("data yielded no batches")
        return res

    def _diverged(self, good: dict, step: int):
        self.sae.load_state_dict(good)
        last = self.history.get("step", [None])[-1]
        raise TrainingDiverged(
            f"training diverged: the loss became NaN or Inf between step "
            f"{0 if last is None else int(last) + 1} and step {step + 1} (lr={self.cfg.lr}, "
            f"l1={self.cfg.l1}); the SAE was restored to its state at step "
            f"{0 if last is None else int(last) + 1}. Lower lr.", self.result)

    def _log(self, step: int, parts, lr: float, coef: float, bar) -> None:
        total, recon, sparsity, aux, codes = parts
        row = {"step": step + 1, "samples": self.result.n_samples, "loss": float(total),
               "reconstruction": float(recon), "sparsity": float(sparsity),
               "auxiliary": float(aux), "l0": float((codes > 0).sum()) / codes.shape[0],
               "dead": int((self.silent >= self.cfg.dead_window).sum()), "lr": lr, "l1": coef}
        if self.eval_fn is not None:
            self.sae.eval()
            with torch.no_grad():
                extra = self.eval_fn(self.sae)
            self.sae.train()
            if not isinstance(extra, dict):
                raise TypeError(f"eval_fn must return a dict, got {type(extra).__name__}")
            for key, value in extra.items():
                if key in row:
                    raise ValueError(f"eval_fn returned {key!r}, a name the trainer already logs")
                row[key] = float(value)
        for key, value in row.items():
            self.history.setdefault(key, []).append(value)
        bar.set_postfix(loss=f"{row['loss']:.4g}", l0=f"{row['l0']:.1f}", dead=row["dead"],
                        refresh=False)


def _snapshot(sae: SparseAutoencoder) -> dict:
    return {k: v.detach().clone() for k, v in sae.state_dict().items()}


def fused_adam_options() -> dict:
    """Fused Adam (one kernel for all parameters) where this torch build has it on the CPU."""
    try:
        torch.optim.Adam([torch.zeros(1, requires_grad=True)], fused=True)
    except (RuntimeError, TypeError, ValueError):
        return {"foreach": True}
    return {"fused": True}
