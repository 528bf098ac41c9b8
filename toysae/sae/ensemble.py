"""A batched ensemble of ReLU+L1 SAEs: many SAEs, one set of stacked tensors.

Every member has the pre-bias form of :class:`toysae.sae.relu.ReLUSAE`
(``f = ReLU((x - b_dec) W_enc + b_enc)``, ``x_hat = f W_dec + b_dec``); the
ensemble stacks the members' parameters along a leading model axis so that
one batched matmul (``torch.bmm``/``baddbmm``) per layer computes all of them:

    W_enc (n_models, d, max_width)     b_enc (n_models, max_width)
    W_dec (n_models, max_width, d)     b_dec (n_models, d)

(For large members, past ``_LOOP_WORK`` multiply-adds per matrix, the batched
matmul is a loop of threaded 2-D matmuls into the same stacked tensors: torch's
CPU bmm parallelises over the model axis, which wastes cores when there are
few members. Everything else stays batched: one batch, one Adam step, one
normalisation for all members.)

Members may have different widths. The stack is padded to the largest width
and a fixed mask ``(n_models, max_width)`` marks each member's real latents.
Padding cannot leak into results, because

* the codes are ``ReLU(pre) * mask``: a padded latent is exactly 0 on every
  input, so it contributes nothing to ``x_hat`` or to the L1 term;
* the gradient through the mask is 0, so padded encoder columns, encoder
  biases and decoder rows get exactly zero gradient (and Adam, whose moments
  then stay 0, moves them by exactly 0), and the decoder normalisation maps
  a zero row to a zero row, so padded slices stay exactly 0 for good;
* every per-member statistic (loss, dead counts, L0, resampling, the
  exported SAE) uses the member's own latents only.

Padding spends ``max_width - width`` wasted columns per member; when widths
differ a lot, :func:`toysae.sae.grid.train_grid` instead builds one ensemble
per distinct width (no padding at all) and steps them together.

Members do not interact: the summed loss has a block-diagonal gradient, Adam
is element-wise, and the decoder projection and resampling act per member, so
a member trains exactly as the same SAE would alone (up to float rounding of
the batched matmuls).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from toysae._threads import single_thread_if_small
from toysae._validation import check_float, check_int, check_tuple
from toysae.sae.base import parameter_grads
from toysae.sae.relu import ReLUSAE
from toysae.sae.trainer import (
    TrainConfig,
    TrainingDiverged,
    TrainResult,
    derived_seed,
    fused_adam_options,
    l1_schedule,
    lr_schedule,
    resample_dead_latents_,
    training_batches,
)

__all__ = ["EnsembleLoss", "EnsembleTrainResult", "ReLUSAEEnsemble", "train_ensembles"]


class EnsembleLoss(NamedTuple):
    """Per-member loss parts on one batch, each an (n_models,) tensor.

    total = reconstruction + sparsity, the loss of :meth:`ReLUSAE.loss` for each member.
    codes : (n_models, n, max_width) codes, exactly 0 on padded latents.
    """

    total: Tensor
    reconstruction: Tensor
    sparsity: Tensor
    codes: Tensor


class ReLUSAEEnsemble(nn.Module):
    """``n_models`` ReLU+L1 SAEs on the same ``d``, trained as one batched model.

    Build it from trained or fresh :class:`ReLUSAE` members with
    :meth:`from_saes` (their parameters are copied into the stack), step it with
    :meth:`loss_and_grad_`, and get members back with :meth:`member` (a copy)
    or :meth:`member_view` (an SAE whose parameters alias the stack).

    Attributes: ``d``, ``widths`` (tuple), ``max_width``, ``seeds`` (each
    member's init seed), ``mask`` (n_models, max_width) bool buffer of real latents.
    """

    def __init__(self, d: int, widths: Sequence[int], *, seeds: Sequence[int] | None = None):
        super().__init__()
        self.d = check_int(d, "d", minimum=1)
        widths = check_tuple(widths, "widths", check_int, minimum=1)
        if seeds is None:
            seeds = tuple(range(len(widths)))
        else:
            seeds = check_tuple(seeds, "seeds", check_int, minimum=0)
        if len(seeds) != len(widths):
            raise ValueError(f"seeds must have one entry per member ({len(widths)}), "
                             f"got {len(seeds)}")
        self.widths, self.seeds = widths, seeds
        self.max_width = max(widths)
        self.padded = min(widths) < self.max_width  # else the mask is all ones: skip it
        M, W = len(widths), self.max_width
        self.register_buffer("mask", torch.arange(W)[None, :] < torch.tensor(widths)[:, None])
        self.W_enc = nn.Parameter(torch.zeros(M, d, W))
        self.b_enc = nn.Parameter(torch.zeros(M, W))
        self.W_dec = nn.Parameter(torch.zeros(M, W, d))
        self.b_dec = nn.Parameter(torch.zeros(M, d))
        with torch.no_grad():
            for m, (width, seed) in enumerate(zip(widths, seeds, strict=True)):
                self._load_member_(m, ReLUSAE(d, width, seed=seed))

    @classmethod
    def from_saes(cls, saes: Sequence[ReLUSAE]) -> ReLUSAEEnsemble:
        """Stack ``saes`` (same ``d``, any widths); parameters are copied, not shared."""
        if isinstance(saes, ReLUSAE) or not isinstance(saes, Sequence) or not saes:
            raise ValueError(f"saes must be a non-empty sequence of ReLUSAE, got {saes!r}")
        for k, sae in enumerate(saes):
            if type(sae) is not ReLUSAE:
                raise TypeError(f"saes[{k}] must be a ReLUSAE, got {type(sae).__name__}")
            if sae.d != saes[0].d:
                raise ValueError(f"saes[{k}] has d={sae.d} but saes[0] has d={saes[0].d}")
        ens = cls(saes[0].d, [s.width for s in saes], seeds=[s.seed for s in saes])
        with torch.no_grad():
            for m, sae in enumerate(saes):
                ens._load_member_(m, sae)
        return ens

    @property
    def n_models(self) -> int:
        return len(self.widths)

    def _load_member_(self, m: int, sae: ReLUSAE) -> None:
        w = self.widths[m]
        self.W_enc[m, :, :w] = sae.W_enc.detach()
        self.b_enc[m, :w] = sae.b_enc.detach()
        self.W_dec[m, :w] = sae.W_dec.detach()
        self.b_dec[m] = sae.b_dec.detach()

    # -- members --------------------------------------------------------------
    def member_view(self, m: int) -> ReLUSAE:
        """Member ``m`` as a :class:`ReLUSAE` whose parameters ALIAS the stack.

        Writing into its parameters (resampling, for one) writes into the
        ensemble; it has no gradients of its own. Only the real latents are in
        it, so code that uses it never sees padding.
        """
        m = check_int(m, "m", minimum=0, maximum=self.n_models - 1)
        w = self.widths[m]
        view = ReLUSAE(self.d, w, seed=self.seeds[m])
        for name, part in (("W_enc", self.W_enc.data[m, :, :w]), ("b_enc", self.b_enc.data[m, :w]),
                           ("W_dec", self.W_dec.data[m, :w]), ("b_dec", self.b_dec.data[m])):
            setattr(view, name, nn.Parameter(part, requires_grad=False))
        return view.train(self.training)

    def member(self, m: int) -> ReLUSAE:
        """Member ``m`` as an independent :class:`ReLUSAE` (a copy; eval mode)."""
        view = self.member_view(m)
        sae = ReLUSAE(self.d, view.width, seed=view.seed)
        sae.load_state_dict({k: v.detach().clone() for k, v in view.state_dict().items()})
        return sae.eval()

    def dictionaries(self) -> list[Tensor]:
        """Each member's decoder atoms as unit rows, (width_m, d), detached copies."""
        return [self.member_view(m).dictionary for m in range(self.n_models)]

    # -- the model --------------------------------------------------------------
    def check_input(self, x) -> Tensor:
        """``x`` as a float32 (n, d) tensor, shared by every member."""
        return ReLUSAE.check_input(self, x)  # the single SAE's checks; they only read self.d

    def forward(self, x) -> tuple[Tensor, Tensor]:
        """(n, d) -> (x_hat (n_models, n, d), codes (n_models, n, max_width))."""
        x = self.check_input(x)
        codes = torch.baddbmm(self.b_enc[:, None, :], x[None] - self.b_dec[:, None, :],
                              self.W_enc).relu() * self.mask[:, None, :]
        return torch.baddbmm(self.b_dec[:, None, :], codes, self.W_dec), codes

    @torch.no_grad()
    def loss_and_grad_(self, x: Tensor, coefs: Tensor) -> EnsembleLoss:
        """Per-member loss parts and hand-written gradients, written into each ``.grad``.

        The batched twin of :meth:`ReLUSAE.loss_and_grad_`: member ``m`` gets
        ``mean 1/2 ||x - x_hat_m||^2 + coefs[m] * mean ||f_m||_1`` and exactly
        the gradients that method would give it alone. ``x`` is a checked
        (n, d) float32 tensor, ``coefs`` an (n_models,) float32 tensor.
        """
        n, M = x.shape[0], self.n_models
        grads = parameter_grads(self)
        codes = x.new_empty(M, n, self.max_width)
        recon, sparsity = x.new_empty(M), x.new_empty(M)
        # Large members go one at a time: each then has a single SAE's working set
        # (its (n, width) temporaries stay in cache) and threaded 2-D matmuls.
        block = 1 if n * self.d * self.max_width >= _LOOP_WORK else M
        for start in range(0, M, block):
            m = slice(start, start + block)
            self._block_loss_and_grad_(x, coefs[m], m, grads, codes[m], recon[m], sparsity[m])
        return EnsembleLoss(recon + sparsity, recon, sparsity, codes)

    def _block_loss_and_grad_(self, x: Tensor, coefs: Tensor, m: slice, grads: dict,
                              codes: Tensor, recon: Tensor, sparsity: Tensor) -> None:
        """:meth:`loss_and_grad_` for members ``m``, writing into the given output slices."""
        n = x.shape[0]
        W_enc, b_enc, W_dec, b_dec = self.W_enc[m], self.b_enc[m], self.W_dec[m], self.b_dec[m]
        xc = x[None] - b_dec[:, None, :]
        _baddbmm(b_enc[:, None, :], xc, W_enc, out=codes).clamp_min_(0.0)
        if self.padded:  # padded latents: exactly 0, hence zero gradient
            codes.mul_(self.mask[m, None, :])
        residual = _baddbmm(b_dec[:, None, :], codes, W_dec).sub_(x)
        torch.sum(residual.pow(2), dim=(1, 2), out=recon).mul_(0.5 / n)
        torch.sum(codes, dim=(1, 2), out=sparsity).mul_(coefs / n)
        residual.div_(n)  # from here on: dL/dx_hat
        _bmm(codes.transpose(1, 2), residual, out=grads["W_dec"][m])
        # The L1 gradient rides in as the broadcast input of the product (no extra pass),
        # and ReLU's fused backward keeps the gradient where codes > 0 (as in ReLUSAE).
        l1_grad = (coefs / n)[:, None, None].expand(-1, 1, codes.shape[2])
        grad_codes = _baddbmm(l1_grad, residual, W_dec.transpose(1, 2))
        grad_codes = torch.ops.aten.threshold_backward(grad_codes, codes, 0.0)
        _bmm(xc.transpose(1, 2), grad_codes, out=grads["W_enc"][m])
        torch.sum(grad_codes, dim=1, out=grads["b_enc"][m])
        torch.sum(residual, dim=1, out=grads["b_dec"][m])
        grads["b_dec"][m].sub_(torch.bmm(W_enc, grads["b_enc"][m][:, :, None]).squeeze(2))

    # -- decoder geometry ---------------------------------------------------------
    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Scale every real decoder row to unit norm; padded rows are 0 and stay 0."""
        self.W_dec.div_(self.W_dec.norm(dim=2, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def remove_parallel_grad_(self) -> None:
        """Drop the decoder gradient's component along each row (see ``ReLUSAE``)."""
        W, g = self.W_dec, self.W_dec.grad
        if g is not None:
            g.sub_((g * W).sum(dim=2, keepdim=True) * W)

    def extra_repr(self) -> str:
        return f"d={self.d}, widths={self.widths}"


# torch's CPU bmm splits its threads over the model axis: with 3 members on 2 cores one
# core does two matrices while the other idles, and each matrix runs single-threaded.
# Past this many multiply-adds per member a loop of 2-D (threaded BLAS) matmuls into
# the stacked output is faster; below it, one bmm call saves the per-call overhead.
_LOOP_WORK = 2 ** 22


def _bmm(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """``torch.bmm(a, b)``, as one call for small matrices and a loop of ``mm`` for large."""
    if a.shape[1] * a.shape[2] * b.shape[2] < _LOOP_WORK:
        return torch.bmm(a, b, out=out)
    if out is None:
        out = a.new_empty(a.shape[0], a.shape[1], b.shape[2])
    for m in range(a.shape[0]):
        torch.mm(a[m], b[m], out=out[m])
    return out


def _baddbmm(bias: Tensor, a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """``torch.baddbmm(bias, a, b)`` with the dispatch of :func:`_bmm`."""
    if a.shape[1] * a.shape[2] * b.shape[2] < _LOOP_WORK:
        return torch.baddbmm(bias, a, b, out=out)
    if out is None:
        out = a.new_empty(a.shape[0], a.shape[1], b.shape[2])
    for m in range(a.shape[0]):
        torch.addmm(bias[m], a[m], b[m], out=out[m])
    return out


# -- training -------------------------------------------------------------------
@dataclass
class EnsembleTrainResult:
    """What :func:`train_ensembles` returns; members are numbered across the ensembles in order.

    ensembles : the trained ensembles (trained in place).
    l1_values : (n_members,) each member's sparsity coefficient.
    histories : per member, the columns :func:`train_sae` logs (``step``,
        ``samples``, ``loss``, ``reconstruction``, ``sparsity``, ``auxiliary``,
        ``l0``, ``dead``, ``lr``, ``l1``) plus ``eval_fn``'s.
    dictionary_history : per member, its unit-row dictionary (width, d) at each
        logging step (empty lists unless ``record_dictionaries``).
    n_resampled : per member, latents resampled in total.
    wall_time : seconds for the whole ensemble (eval_fn included).
    """

    ensembles: list[ReLUSAEEnsemble]
    config: TrainConfig
    l1_values: tuple[float, ...]
    histories: list[dict[str, list[float]]]
    dictionary_history: list[list[np.ndarray]]
    n_resampled: list[int]
    wall_time: float = 0.0
    n_steps: int = 0
    n_samples: int = 0
    _where: list[tuple[int, int]] = field(default_factory=list, repr=False)

    def member(self, k: int) -> ReLUSAE:
        """Member ``k`` as an independent ``ReLUSAE`` copy."""
        g, m = self._where[check_int(k, "k", minimum=0, maximum=len(self._where) - 1)]
        return self.ensembles[g].member(m)

    def train_result(self, k: int) -> TrainResult:
        """Member ``k``'s result in :func:`train_sae`'s form; ``wall_time`` is the
        ensemble's wall time divided by the number of members (amortised)."""
        cfg = _replace_l1(self.config, self.l1_values[k])
        return TrainResult(self.member(k), cfg, self.histories[k],
                           self.wall_time / len(self._where), self.n_steps, self.n_samples,
                           self.n_resampled[k])


def _replace_l1(config: TrainConfig, l1: float) -> TrainConfig:
    return TrainConfig.from_dict({**config.to_dict(), "l1": float(l1)})


def train_ensembles(ensembles: ReLUSAEEnsemble | Sequence[ReLUSAEEnsemble],
                    l1_values: Sequence[float], data, config: TrainConfig, *,
                    eval_fn: Callable[[ReLUSAE], dict[str, float]] | None = None,
                    record_dictionaries: bool = False,
                    progress: bool = True) -> EnsembleTrainResult:
    """Train every member of ``ensembles`` at once, with :func:`train_sae`'s recipe.

    All members see the same batches, drawn from ``data`` exactly as
    ``train_sae(sae, data, config)`` draws them; member ``k`` (numbered across
    the ensembles in order) uses sparsity coefficient ``l1_values[k]`` in place
    of ``config.l1``. Each step: batched loss and gradients, parallel decoder
    gradient removed, one (fused) Adam step over the stacked parameters,
    decoder rows renormalised; LR warm-up/decay and L1 warm-up as in
    ``train_sae``; dead latents resampled per member with
    ``resample_dead_latents_`` on a view of the member, each member drawing
    from its own generator seeded as ``train_sae`` seeds its one. So member
    ``k`` ends where ``train_sae`` would take the same SAE, up to float
    rounding of the batched matmuls. Ghost grads are not supported
    (``config.ghost_grads`` must be False).

    eval_fn : called as ``eval_fn(sae)`` for each member at each logging step,
        with a view of the member (eval mode, no grad) that is valid during the call.
    A NaN/Inf loss in any member raises ``TrainingDiverged`` naming the
    members, with every ensemble restored to the last good logging step.
    """
    if isinstance(ensembles, ReLUSAEEnsemble):
        ensembles = [ensembles]
    if isinstance(ensembles, (str, bytes)) or not isinstance(ensembles, Sequence) \
            or not ensembles:
        raise ValueError(f"ensembles must be a ReLUSAEEnsemble or a non-empty sequence of them, "
                         f"got {ensembles!r}")
    for k, ens in enumerate(ensembles):
        if not isinstance(ens, ReLUSAEEnsemble):
            raise TypeError(f"ensembles[{k}] must be a ReLUSAEEnsemble, got {type(ens).__name__}")
        if ens.d != ensembles[0].d:
            raise ValueError(f"ensembles[{k}] has d={ens.d} but ensembles[0] has "
                             f"d={ensembles[0].d}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if config.ghost_grads:
        raise ValueError("config.ghost_grads=True is not supported by the batched ensemble; "
                         "train those SAEs with train_sae")
    n_members = sum(e.n_models for e in ensembles)
    l1_values = check_tuple(l1_values, "l1_values", check_float, minimum=0.0)
    if len(l1_values) != n_members:
        raise ValueError(f"l1_values must have one entry per member ({n_members}), "
                         f"got {len(l1_values)}")
    if eval_fn is not None and not callable(eval_fn):
        raise TypeError(f"eval_fn must be callable, got {type(eval_fn).__name__}")
    for name, flag in (("record_dictionaries", record_dictionaries), ("progress", progress)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {flag!r}")
    batches, n_steps = training_batches(data, ensembles[0].d, config)
    trainer = _EnsembleTrainer(list(ensembles), l1_values, config, eval_fn,
                               record_dictionaries, progress)
    work = max(e.n_models * e.d * e.max_width for e in ensembles) * config.batch_size
    with single_thread_if_small(work, _SINGLE_THREAD_WORK):
        return trainer.run(batches, n_steps)


class _MemberOptimizerView:
    """The slice of the ensemble's Adam state that belongs to one member, keyed by the
    member view's parameters, so ``resample_dead_latents_`` can reset it in place."""

    def __init__(self, optimizer, ens: ReLUSAEEnsemble, view: ReLUSAE, m: int):
        w = view.width
        slices = {"W_enc": (m, slice(None), slice(0, w)), "b_enc": (m, slice(0, w)),
                  "W_dec": (m, slice(0, w)), "b_dec": (m,)}
        self.state = {}
        for name, index in slices.items():
            full = optimizer.state.get(getattr(ens, name), {})
            self.state[getattr(view, name)] = {k: v[index] for k, v in full.items()
                                                if k in ("exp_avg", "exp_avg_sq")}


# Below this many multiply-adds per batched matmul, intra-op threads cost more in
# synchronisation than they save (tiny bmm calls parallelise over the model axis; on a
# busy 2-core machine one step took 40x longer with 2 threads than with 1), so such
# ensembles train single-threaded.
_SINGLE_THREAD_WORK = 2 ** 22


class _EnsembleTrainer:
    def __init__(self, ensembles, l1_values, config, eval_fn, record, progress):
        self.groups, self.cfg, self.eval_fn = ensembles, config, eval_fn
        self.record, self.progress = record, progress
        self.where = [(g, m) for g, e in enumerate(ensembles) for m in range(e.n_models)]
        n = len(self.where)
        offsets = np.cumsum([0] + [e.n_models for e in ensembles])
        self.l1 = [torch.tensor(l1_values[a:b], dtype=torch.float32)
                   for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        params = [p for e in ensembles for p in e.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=config.lr,
                                          betas=(config.beta1, config.beta2), eps=config.eps,
                                          **fused_adam_options())
        self.silent = [torch.zeros(e.n_models, e.max_width, dtype=torch.int64) for e in ensembles]
        # One generator per member, seeded like train_sae's, so resampling draws the same inputs.
        self.gens = [torch.Generator().manual_seed(derived_seed(config.seed, 3)) for _ in range(n)]
        self.result = EnsembleTrainResult(ensembles, config, tuple(l1_values),
                                          [{} for _ in range(n)], [[] for _ in range(n)],
                                          [0] * n, _where=self.where)

    def step(self, x: Tensor, l1_factor: float) -> list[EnsembleLoss]:
        parts = []
        for ens, l1, silent in zip(self.groups, self.l1, self.silent, strict=True):
            out = ens.loss_and_grad_(x, l1 * l1_factor)
            silent.add_(1).masked_fill_(out.codes.amax(1) > 0, 0)
            ens.remove_parallel_grad_()
            parts.append(out)
        self.optimizer.step()
        for ens in self.groups:
            ens.normalize_decoder_()
        return parts

    def dead(self, g: int) -> Tensor:
        return (self.silent[g] >= self.cfg.dead_window) & self.groups[g].mask

    def resample(self, pool: Tensor) -> None:
        for k, (g, m) in enumerate(self.where):
            dead = self.dead(g)[m]
            if not bool(dead.any()):
                continue
            ens = self.groups[g]
            view = ens.member_view(m)
            moved = resample_dead_latents_(
                view, _MemberOptimizerView(self.optimizer, ens, view, m), dead[:view.width],
                pool, encoder_scale=self.cfg.resample_encoder_scale, generator=self.gens[k])
            self.silent[g][m].masked_fill_(dead, 0)
            self.result.n_resampled[k] += moved

    def run(self, batches, n_steps: int) -> EnsembleTrainResult:
        cfg, res = self.cfg, self.result
        pool: deque[Tensor] = deque(maxlen=math.ceil(cfg.resample_pool / cfg.batch_size))
        good = self._snapshot()
        finite = [torch.ones(e.n_models, dtype=torch.bool) for e in self.groups]
        bar = tqdm(total=n_steps, disable=not self.progress, unit="step", leave=False,
                   desc=f"{len(self.where)} SAEs")
        start = time.perf_counter()
        step = -1
        try:
            for step, x in enumerate(batches):
                lr = cfg.lr * lr_schedule(step, n_steps, cfg.lr_warmup, cfg.lr_decay)
                l1_factor = l1_schedule(step, n_steps, cfg.l1_warmup)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                parts = self.step(x, l1_factor)
                for ok, out in zip(finite, parts, strict=True):
                    ok &= torch.isfinite(out.total)
                res.n_steps, res.n_samples = step + 1, res.n_samples + x.shape[0]
                pool.append(x)
                if (cfg.resample_every and (step + 1) % cfg.resample_every == 0
                        and step < cfg.resample_until * n_steps):
                    self.resample(torch.cat(list(pool)))
                last = step + 1 == n_steps
                if (step + 1) % cfg.log_every == 0 or last:
                    self._check(finite, good, step)
                    self._log(step, parts, lr, l1_factor, bar)
                    good = self._snapshot()
                bar.update(1)
            if step >= 0 and (step + 1) % cfg.log_every and step + 1 != n_steps:
                self._check(finite, good, step)  # the data ran out between logging steps
                self._log(step, parts, lr, l1_factor, bar)
        finally:
            bar.close()
            res.wall_time = time.perf_counter() - start
        if step < 0:
            raise ValueError("data yielded no batches")
        return res

    def _snapshot(self) -> list[dict]:
        return [{k: v.detach().clone() for k, v in e.state_dict().items()} for e in self.groups]

    def _check(self, finite: list[Tensor], good: list[dict], step: int) -> None:
        bad = [k for k, (g, m) in enumerate(self.where) if not bool(finite[g][m])]
        if not bad:
            return
        for ens, state in zip(self.groups, good, strict=True):
            ens.load_state_dict(state)
        steps = self.result.histories[0].get("step", [0])
        names = ", ".join(f"member {k} (l1={self.result.l1_values[k]:g}, "
                          f"width={self.groups[self.where[k][0]].widths[self.where[k][1]]})"
                          for k in bad)
        raise TrainingDiverged(
            f"training diverged: the loss became NaN or Inf between step {int(steps[-1]) + 1} "
            f"and step {step + 1} for {names} (lr={self.cfg.lr}); every member was restored "
            f"to its state at step {int(steps[-1])}. Lower lr.", self.result)

    def _log(self, step: int, parts: list[EnsembleLoss], lr: float, l1_factor: float,
             bar) -> None:
        res = self.result
        cols = {"loss": [], "reconstruction": [], "sparsity": [], "l0": [], "dead": []}
        for g, out in enumerate(parts):
            cols["loss"] += out.total.tolist()
            cols["reconstruction"] += out.reconstruction.tolist()
            cols["sparsity"] += out.sparsity.tolist()
            cols["l0"] += ((out.codes > 0).sum((1, 2)) / out.codes.shape[1]).tolist()
            cols["dead"] += self.dead(g).sum(1).tolist()
        for k, (g, m) in enumerate(self.where):
            row = {"step": step + 1, "samples": res.n_samples, "loss": cols["loss"][k],
                   "reconstruction": cols["reconstruction"][k],
                   "sparsity": cols["sparsity"][k], "auxiliary": 0.0, "l0": cols["l0"][k],
                   "dead": int(cols["dead"][k]), "lr": lr,
                   "l1": res.l1_values[k] * l1_factor}
            if self.eval_fn is not None or self.record:
                view = self.groups[g].member_view(m).eval()
                if self.record:
                    res.dictionary_history[k].append(view.dictionary.numpy())
                if self.eval_fn is not None:
                    row.update(_evaluate(self.eval_fn, view, row))
            for key, value in row.items():
                res.histories[k].setdefault(key, []).append(value)
        bar.set_postfix(loss=f"{np.mean(cols['loss']):.4g}", l0=f"{np.mean(cols['l0']):.1f}",
                        dead=int(sum(cols["dead"])), refresh=False)


def _evaluate(eval_fn, sae: ReLUSAE, row: dict) -> dict[str, float]:
    with torch.no_grad():
        extra = eval_fn(sae)
    if not isinstance(extra, dict):
        raise TypeError(f"eval_fn must return a dict, got {type(extra).__name__}")
    clash = set(extra) & set(row)
    if clash:
        raise ValueError(f"eval_fn returned {sorted(clash)!r}, name(s) the trainer already logs")
    return {key: float(value) for key, value in extra.items()}
