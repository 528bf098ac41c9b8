"""A batched ensemble of ReLU+L1 SAEs: many SAEs, one set of stacked tensors.

Every member has the pre-bias form of :class:`toysae.sae.relu.ReLUSAE`
(``f = ReLU((x - b_dec) W_enc + b_enc)``, ``x_hat = f W_dec + b_dec``); the
ensemble stacks the members' parameters along a leading model axis so that
one batched matmul (``torch.bmm``/``baddbmm``) per layer computes all of them:

    W_enc (n_models, d, max_width)     b_enc (n_models, max_width)
    W_dec (n_models, max_width, d)     b_dec (n_models, d)

(For large members, past ``toysae._tuning.BMM_LOOP_WORK`` multiply-adds per
matrix, the batched matmul is a loop of threaded 2-D matmuls into the same
stacked tensors: torch's CPU bmm parallelises over the model axis, which
wastes cores when there are few members. Everything else stays batched: one
batch, one Adam step, one normalisation for all members.) The forward pass is
one ``torch.autograd.Function`` (:class:`StackedReLUForward`), the batched twin
of the ReLU SAE's :class:`toysae.sae._fused.FusedForward`, so the ensemble trains
under any objective of the engine; a member whose codes are sparse takes the
sparse path (its products after the encoder's from its active entries alone).

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
the batched matmuls). The ensemble is a :class:`toysae.sae.stacks.MemberStack`:
the one training engine trains it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from toysae import _tuning
from toysae._validation import check_int, check_seed, check_tuple
from toysae.sae._fused import (
    current_step_path,
    entry_code_grads,
    measured_active,
    scratch,
    spare_grad,
    sparse_encoder_grads,
)
from toysae.sae.base import SAEOutput
from toysae.sae.config import TrainConfig
from toysae.sae.engine import RunOptions, TrainResult, train_members
from toysae.sae.relu import ReLUSAE
from toysae.sae.stacks import MemberStack

__all__ = ["ReLUSAEEnsemble", "StackedReLUForward", "train_ensembles"]


class StackedReLUForward(torch.autograd.Function):
    """``(x (n, d), W_enc (M, d, W), b_enc (M, W), W_dec (M, W, d), b_dec (M, d), mask)``
    -> ``(x_hat (M, n, d), codes (M, n, W))``, with the backward of
    :class:`toysae.sae._fused.FusedForward` member by member. ``mask`` (M, W) zeroes padded
    latents (None: no padding).

    Each member takes the dense or the sparse path by the measured density of its own
    codes (:func:`toysae.sae._fused.measured_active`); while every member is dense the
    products stay batched, otherwise members step one at a time (the sparse path pays
    only where members are large, and large members already step one at a time).
    """

    @staticmethod
    def forward(ctx, x, W_enc, b_enc, W_dec, b_dec, mask, spare_grads=None):
        xc = x[None] - b_dec[:, None, :]
        codes = _baddbmm(b_enc[:, None, :], xc, W_enc).clamp_min_(0.0)
        if mask is not None:  # padded latents: exactly 0, hence zero gradient
            codes.mul_(mask[:, None, :])
        path = current_step_path()
        actives = [measured_active(member, x.shape[1], path) for member in codes]
        if all(a is None for a in actives):
            x_hat, actives = _baddbmm(b_dec[:, None, :], codes, W_dec), None
        else:
            x_hat = codes.new_empty(codes.shape[0], x.shape[0], x.shape[1])
            for m, active in enumerate(actives):
                if active is None:
                    torch.addmm(b_dec[m], codes[m], W_dec[m], out=x_hat[m])
                else:
                    torch.add(active.decode(active.gather(codes[m]), W_dec[m]), b_dec[m],
                              out=x_hat[m])
        ctx.save_for_backward(xc, codes, W_enc, W_dec)
        ctx.set_materialize_grads(False)
        ctx.actives = actives
        ctx.spare = {} if spare_grads is None else spare_grads
        return x_hat, codes

    @staticmethod
    def backward(ctx, grad_x_hat, grad_codes):
        xc, codes, W_enc, W_dec = ctx.saved_tensors
        if grad_x_hat is None:
            grad_x_hat = torch.zeros_like(xc)
        if ctx.actives is not None:
            return _member_by_member_backward(ctx, grad_x_hat, grad_codes)
        grad_W_dec = _bmm(codes.transpose(1, 2), grad_x_hat,
                          out=spare_grad(ctx.spare, "W_dec", W_dec))
        grad_f = scratch(ctx.spare, "grad_f", codes)
        if grad_codes is None:
            _bmm(grad_x_hat, W_dec.transpose(1, 2), out=grad_f)
        else:
            _baddbmm(grad_codes, grad_x_hat, W_dec.transpose(1, 2), out=grad_f)
        grad_pre = torch.ops.aten.threshold_backward.grad_input(grad_f, codes, 0.0,
                                                                grad_input=grad_f)
        grad_W_enc = _bmm(xc.transpose(1, 2), grad_pre, out=spare_grad(ctx.spare, "W_enc", W_enc))
        grad_b_enc = grad_pre.sum(dim=1)
        grad_b_dec = grad_x_hat.sum(dim=1).sub_(torch.bmm(W_enc, grad_b_enc[:, :, None])
                                               .squeeze(2))
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = _bmm(grad_pre, W_enc.transpose(1, 2)).sum(dim=0)
        return grad_x, grad_W_enc, grad_b_enc, grad_W_dec, grad_b_dec, None, None


def _member_by_member_backward(ctx, grad_x_hat: Tensor, grad_codes: Tensor | None):
    """:class:`StackedReLUForward`'s backward when some member took the sparse path."""
    xc, codes, W_enc, W_dec = ctx.saved_tensors
    needs_x = ctx.needs_input_grad[0]
    grad_W_dec = spare_grad(ctx.spare, "W_dec", W_dec)
    grad_W_enc = spare_grad(ctx.spare, "W_enc", W_enc)
    grad_b_enc = codes.new_empty(codes.shape[0], codes.shape[2])
    grad_x = torch.zeros_like(xc[0]) if needs_x else None
    for m, active in enumerate(ctx.actives):
        g, gc = grad_x_hat[m], None if grad_codes is None else grad_codes[m]
        if active is None:
            torch.mm(codes[m].T, g, out=grad_W_dec[m])
            gf = scratch(ctx.spare, "grad_f_member", codes[m])
            if gc is None:
                torch.mm(g, W_dec[m].T, out=gf)
            else:
                torch.addmm(gc, g, W_dec[m].T, out=gf)
            gpre = torch.ops.aten.threshold_backward.grad_input(gf, codes[m], 0.0,
                                                                grad_input=gf)
            torch.mm(xc[m].T, gpre, out=grad_W_enc[m])
            torch.sum(gpre, dim=0, out=grad_b_enc[m])
            if needs_x:
                grad_x.addmm_(gpre, W_enc[m].T)
        else:
            gpre = entry_code_grads(active, g, W_dec[m], gc)
            active.latent_products(active.gather(codes[m]), g, grad_W_dec[m])
            _, grad_b_enc[m], dx = sparse_encoder_grads(
                active, gpre, xc[m], W_enc[m], grad_W_enc[m],
                scratch(ctx.spare, "latent_major", W_dec[m]), needs_x)
            if needs_x:
                grad_x.add_(dx)
    grad_b_dec = grad_x_hat.sum(dim=1).sub_(torch.bmm(W_enc, grad_b_enc[:, :, None]).squeeze(2))
    return grad_x, grad_W_enc, grad_b_enc, grad_W_dec, grad_b_dec, None, None


class ReLUSAEEnsemble(nn.Module, MemberStack):
    """``n_members`` ReLU+L1 SAEs on the same ``d``, trained as one batched model.

    Build it from trained or fresh :class:`ReLUSAE` members with
    :meth:`from_saes` (their parameters are copied into the stack), train it
    with :func:`train_ensembles` (the engine), and get members back with
    :meth:`trained_member` (a copy) or :meth:`member` (an SAE whose parameters
    alias the stack).

    Attributes: ``d``, ``widths`` (tuple), ``max_width``, ``seeds`` (each
    member's init seed), ``mask`` (n_members, max_width) bool buffer of real latents.
    """

    supports_dead_latent_loss = False  # ghost grads need per-member dead sets: train_sae

    def __init__(self, d: int, widths: Sequence[int], *, seeds: Sequence[int] | None = None):
        super().__init__()
        self.d = check_int(d, "d", minimum=1)
        widths = check_tuple(widths, "widths", check_int, minimum=1)
        if seeds is None:
            seeds = tuple(range(len(widths)))
        else:
            seeds = check_tuple(seeds, "seeds", check_seed)
        if len(seeds) != len(widths):
            raise ValueError(f"seeds must have one entry per member ({len(widths)}), "
                             f"got {len(seeds)}")
        self.widths, self.seeds = widths, seeds
        self.n_members = len(widths)
        self.max_width = max(widths)
        self.padded = min(widths) < self.max_width  # else the mask is all ones: skip it
        M, W = len(widths), self.max_width
        self.register_buffer("mask", torch.arange(W)[None, :] < torch.tensor(widths)[:, None])
        self.W_enc = nn.Parameter(torch.zeros(M, d, W))
        self.b_enc = nn.Parameter(torch.zeros(M, W))
        self.W_dec = nn.Parameter(torch.zeros(M, W, d))
        self.b_dec = nn.Parameter(torch.zeros(M, d))
        self._views: dict[int, ReLUSAE] = {}
        self._backward_buffers: dict[str, Tensor] = {}
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
            if not sae.decoder_bias:
                raise ValueError(f"saes[{k}] has decoder_bias=False; the ensemble stacks "
                                 "trained decoder biases (train it with train_sae)")
            if sae.d != saes[0].d:
                raise ValueError(f"saes[{k}] has d={sae.d} but saes[0] has d={saes[0].d}")
        ens = cls(saes[0].d, [s.width for s in saes], seeds=[s.seed for s in saes])
        with torch.no_grad():
            for m, sae in enumerate(saes):
                ens._load_member_(m, sae)
        return ens

    @property
    def module(self) -> nn.Module:
        return self

    def _load_member_(self, m: int, sae: ReLUSAE) -> None:
        w = self.widths[m]
        self.W_enc[m, :, :w] = sae.W_enc.detach()
        self.b_enc[m, :w] = sae.b_enc.detach()
        self.W_dec[m, :w] = sae.W_dec.detach()
        self.b_dec[m] = sae.b_dec.detach()

    # -- members --------------------------------------------------------------
    def member(self, m: int) -> ReLUSAE:
        """Member ``m`` as a :class:`ReLUSAE` whose parameters ALIAS the stack.

        Writing into its parameters (resampling, for one) writes into the
        ensemble; it has no gradients of its own. Only the real latents are in
        it, so code that uses it never sees padding. Built once per member.
        """
        m = check_int(m, "m", minimum=0, maximum=self.n_members - 1)
        if m not in self._views:
            w = self.widths[m]
            view = ReLUSAE(self.d, w, seed=self.seeds[m])
            for name, part in (("W_enc", self.W_enc.data[m, :, :w]),
                               ("b_enc", self.b_enc.data[m, :w]),
                               ("W_dec", self.W_dec.data[m, :w]), ("b_dec", self.b_dec.data[m])):
                setattr(view, name, nn.Parameter(part, requires_grad=False))
            self._views[m] = view
        return self._views[m].train(self.training)

    def trained_member(self, m: int) -> ReLUSAE:
        """Member ``m`` as an independent :class:`ReLUSAE` (a copy; eval mode)."""
        view = self.member(m)
        sae = ReLUSAE(self.d, view.width, seed=view.seed)
        sae.load_state_dict({k: v.detach().clone() for k, v in view.state_dict().items()})
        return sae.eval()

    def dictionaries(self) -> list[Tensor]:
        """Each member's decoder atoms as unit rows, (width_m, d), detached copies."""
        return [self.member(m).dictionary for m in range(self.n_members)]

    def latent_slots(self, m: int, idx: Tensor):
        return [(self.W_enc, (m, slice(None), idx)), (self.b_enc, (m, idx)),
                (self.W_dec, (m, idx))]

    def real_latents(self) -> Tensor | None:
        return self.mask if self.padded else None

    recycle_grads_ = ReLUSAE.recycle_grads_  # the stacked weights' gradients, as ReLUSAE

    # -- the model --------------------------------------------------------------
    def check_input(self, x) -> Tensor:
        """``x`` as a float32 (n, d) tensor, shared by every member."""
        return ReLUSAE.check_input(self, x)  # the single SAE's checks; they only read self.d

    def forward(self, x) -> tuple[SAEOutput, SAEOutput]:
        """(n, d) -> the stacked output (x_hat (n_members, n, d), codes (n_members, n,
        max_width), pre_acts None), twice: for the objective and for the penalties."""
        x = self.check_input(x)
        x_hat, codes = StackedReLUForward.apply(x, self.W_enc, self.b_enc, self.W_dec,
                                                self.b_dec, self.mask if self.padded else None,
                                                self._backward_buffers)
        out = SAEOutput(x_hat, codes, None)
        return out, out

    def penalties(self, native: SAEOutput) -> Tensor:
        return native.codes.sum(dim=(1, 2)) / native.codes.shape[1]

    def auxiliary(self, x, native, dead, coef) -> None:
        return None  # no dead-latent loss in the batched ensemble (supports_dead_latent_loss)

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
            g.addcmul_(torch.linalg.vecdot(g, W)[..., None], W, value=-1.0)

    def extra_repr(self) -> str:
        return f"d={self.d}, widths={self.widths}"


def _bmm(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """``torch.bmm(a, b)``, as one call for small matrices and a loop of ``mm`` for large."""
    if a.shape[1] * a.shape[2] * b.shape[2] < _tuning.BMM_LOOP_WORK:
        return torch.bmm(a, b, out=out)
    if out is None:
        out = a.new_empty(a.shape[0], a.shape[1], b.shape[2])
    for m in range(a.shape[0]):
        torch.mm(a[m], b[m], out=out[m])
    return out


def _baddbmm(bias: Tensor, a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """``torch.baddbmm(bias, a, b)`` with the dispatch of :func:`_bmm`."""
    if a.shape[1] * a.shape[2] * b.shape[2] < _tuning.BMM_LOOP_WORK:
        return torch.baddbmm(bias, a, b, out=out)
    if out is None:
        out = a.new_empty(a.shape[0], a.shape[1], b.shape[2])
    bias = bias.expand(a.shape[0], -1, -1) if bias.shape[0] == 1 else bias
    for m in range(a.shape[0]):
        torch.addmm(bias[m], a[m], b[m], out=out[m])
    return out


def train_ensembles(ensembles: ReLUSAEEnsemble | Sequence[ReLUSAEEnsemble],
                    sparsity_coefs: Sequence[float], data, config: TrainConfig, *,
                    options: RunOptions | None = None, **run_options) -> list[TrainResult]:
    """Train every member of ``ensembles`` at once with the engine; one TrainResult each.

    Members are numbered across the ensembles in order; member ``k`` uses
    ``sparsity_coefs[k]`` in place of ``config.sparsity_coef`` and ends where
    ``train_sae`` would take the same SAE on the same data (same batches, same
    resampling draws), up to float rounding of the batched matmuls. Its
    ``TrainResult.sae`` is an independent copy. A dead-latent loss is not
    supported (``config.dead_latent_coef`` must be unset or 0).
    ``options, **run_options``: a :class:`toysae.sae.RunOptions` and/or its fields
    as keywords (objective, eval_fn, callbacks, record_dictionaries, progress,
    threads, checkpointing), as for :func:`toysae.sae.train_sae`.
    """
    options = RunOptions.of(options, **run_options)
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
    return train_members(list(ensembles), sparsity_coefs, data, config, options)
