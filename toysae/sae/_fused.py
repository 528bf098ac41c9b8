"""One forward pass with a hand-written backward for the untied SAEs, on a dense or a sparse path.

The ReLU, TopK, BatchTopK, Matryoshka and JumpReLU SAEs all compute, in
Anthropic's pre-bias form::

    pre = (x - b_dec) W_enc + b_enc        f = pre * [selected and pre > 0]
    x_hat = f W_dec + b_dec

and differ only in which entries are selected (:class:`Selection`): ``pre > 0``
(ReLU), the ``k`` largest of each sample (TopK), the ``k * n`` largest of the
batch (BatchTopK and Matryoshka in training), ``pre`` above a threshold
(JumpReLU's learned per-latent thresholds; BatchTopK's running one at
inference). :class:`FusedForward` is that pass as one ``torch.autograd.Function``,
so every objective of the engine gets its backward. With ``g = dL/dx_hat`` and
``h = dL/df``::

    dL/dW_dec = f^T g          dL/dpre = (g W_dec^T + h) * [f > 0]      dL/db_enc = sum_n dL/dpre
    dL/dW_enc = (x - b_dec)^T dL/dpre     dL/db_dec = sum_n g - W_enc dL/db_enc
    dL/dx = dL/dpre W_enc^T

**Two paths.** The *dense* path computes these as five matmuls. The *sparse*
path computes only the encoder's product densely and everything after it from
the active entries of ``f`` (:mod:`toysae.sae._sparse_kernels`): ``dL/dpre`` is nonzero
only where a latent is active, so the decoder's forward, both weight
gradients and the input gradient cost ``nnz * d`` instead of ``n * width * d``.
The path is chosen per batch by the measured density of the codes (the share
of active entries): sparse at or below ``toysae._tuning.SPARSE_STEP_MAX_DENSITY``,
dense above it or when the step is too small to pay the sparse path's fixed
costs (``SPARSE_STEP_MIN_WORK``), so early training, when codes are dense,
still takes the matmuls. :func:`step_path` forces one path (tests compare the
two). Both paths compute the same gradients up to float rounding.

What stays dense on the sparse path: the ``(n, width)`` pre-activations and
codes (the encoder's output, which the objective and the engine's firing counts
read), the selection, and any gradient that reaches the pre-activations from
elsewhere (AuxK's dead-latent loss): then the encoder's gradient is one dense
matmul more.

JumpReLU's thresholds learn through the straight-through pseudo-derivative of
:mod:`toysae.sae.jumprelu`; its sparse path lists the entries within
``bandwidth / 2`` below a threshold too, where that pseudo-derivative reads
``dL/df``. A Matryoshka SAE's nested prefixes (``block_ends``) each get their
own reconstruction as an extra output; on the sparse path each prefix block
decodes from its own entries.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from toysae import _tuning
from toysae._validation import check_choice
from toysae.sae._sparse_kernels import ActiveSet, batch_topk, row_topk

__all__ = ["PATHS", "FusedForward", "FusedOutput", "FusedSAEMixin", "Selection",
           "current_step_path", "fused_forward", "measured_active", "step_path"]

PATHS = ("auto", "dense", "sparse")
_PATH: contextvars.ContextVar[str] = contextvars.ContextVar("toysae_step_path", default="auto")


@contextlib.contextmanager
def step_path(path: str):
    """Run the block's SAE forward passes on ``path``: ``"auto"`` (the default: by the
    measured density of each batch's codes), ``"dense"`` or ``"sparse"``."""
    token = _PATH.set(check_choice(path, "path", PATHS))
    try:
        yield
    finally:
        _PATH.reset(token)


def current_step_path() -> str:
    """The path set by the innermost :func:`step_path` (``"auto"`` outside any)."""
    return _PATH.get()


@dataclass(frozen=True)
class Selection:
    """Which pre-activations become codes.

    kind : ``"relu"`` (pre > 0), ``"topk"`` (the ``k`` largest of each sample),
        ``"batchtopk"`` (the ``k * n`` largest of the batch), ``"threshold"`` (pre
        above the ``threshold`` input, a (width,) tensor or a scalar).
    bandwidth : for ``"threshold"``, the width of JumpReLU's pseudo-derivative
        window (the threshold then gets a gradient); None for a fixed threshold.
    block_ends : nested prefix ends ``m_1 < ... < m_P = width`` (Matryoshka); each
        prefix's reconstruction becomes an output. Empty: one block.
    """

    kind: str
    k: int = 0
    bandwidth: float | None = None
    block_ends: tuple[int, ...] = ()

    @property
    def keeps_pre(self) -> bool:
        """Whether the pre-activations are an output (ReLU's are clamped in place)."""
        return self.kind != "relu"


class FusedForward(torch.autograd.Function):
    """``(x, W_enc, b_enc, W_dec, b_dec, threshold, selection, spare, recycle)`` ->
    ``(x_hat, codes, pre_acts or None, smallest kept code or None, fired or None,
    *prefix x_hats)``.

    x (n, d), W_enc (d, width), b_enc (width,), W_dec (width, d), b_dec (d,);
    threshold None or a tensor (for ``"threshold"``); ``spare``: the module's dict
    of recycled buffers (see :meth:`FusedSAEMixin.recycle_grads_`); ``recycle``:
    whether the pre-activations and codes may reuse earlier outputs' memory
    (:func:`recycled`; a training step).
    Outputs: x_hat (n, d); codes (n, width); the pre-activations (n, width) unless
    the selection is ReLU; for BatchTopK the smallest positive kept code (a 0-d
    tensor, no gradient; -1 when none is positive); on the sparse path the (width,) bool
    mask of the latents active on at least one sample (no gradient; read from the
    listed entries, not the codes); one (n, d) reconstruction per prefix shorter than
    the width. Use :func:`fused_forward`.
    """

    @staticmethod
    def forward(ctx, x, W_enc, b_enc, W_dec, b_dec, threshold, selection, spare, recycle):
        n, width = x.shape[0], W_enc.shape[1]
        xc = x - b_dec
        spare = {} if spare is None else spare
        outputs = spare if recycle else None  # see recycled
        # The bias first, by a (two-threaded) copy, then the product accumulates onto it in
        # place: about 0.5 ms less than mm and then add_ (one pass fewer over the (n, width)
        # output) and 2.3 ms less than addmm(b_enc, ...), whose own copy of the broadcast
        # bias is single-threaded (1024 x 4096)
        pre = recycled(outputs, "pre", (n, width), xc).copy_(b_enc.expand(n, width))
        pre = torch.addmm(pre, xc, W_enc, out=pre)
        codes, active, kept_min = _select(pre, threshold, selection, x.shape[1], outputs)
        ends = selection.block_ends or (width,)
        if active is not None:
            values = active.gather(codes)
            partial = active.decode(values, W_dec).view(active.n_blocks, n, -1)
            x_hats = [partial[0].add_(b_dec)]  # the decode's own fresh buffer
        else:
            starts = (0, *ends[:-1])
            partial = [codes[:, s:e] @ W_dec[s:e] for s, e in zip(starts[1:], ends[1:],
                                                                  strict=True)]
            x_hats = [torch.addmm(b_dec, codes[:, :ends[0]], W_dec[:ends[0]])]
        for block in partial[1:] if active is not None else partial:
            x_hats.append(x_hats[-1] + block)
        ctx.selection, ctx.active, ctx.path = selection, active, _PATH.get()
        ctx.spare = spare
        ctx.set_materialize_grads(False)
        keep_pre = pre if selection.keeps_pre else None
        fired = None
        if active is not None:
            ctx.values = values
            ctx.pre_values = (active.gather(pre) if selection.kind == "threshold" else None)
            ctx.save_for_backward(xc, W_enc, W_dec, threshold)
            # JumpReLU lists a window below its thresholds too: active = a positive code
            cols = active.cols if selection.bandwidth is None else active.cols[values > 0]
            fired = torch.zeros(width, dtype=torch.bool, device=x.device).index_fill_(
                0, cols, True)
        else:
            ctx.save_for_backward(xc, W_enc, W_dec, threshold, codes, keep_pre)
        ctx.mark_non_differentiable(*(t for t in (kept_min, fired) if t is not None))
        return (x_hats[-1], codes, keep_pre, kept_min, fired, *x_hats[:-1])

    @staticmethod
    def backward(ctx, grad_x_hat, grad_codes, grad_pre, _grad_kept, _grad_fired,
                 *grad_prefixes):
        sel, active = ctx.selection, ctx.active
        if active is not None:
            xc, W_enc, W_dec, threshold = ctx.saved_tensors
        else:
            xc, W_enc, W_dec, threshold, codes, pre = ctx.saved_tensors
        outs = [*grad_prefixes, grad_x_hat]
        if all(g is None for g in outs) and grad_codes is None and grad_pre is None:
            return (None,) * 9
        # G_q = dL/d(block q's decode) = the gradient of every prefix that contains block q
        outs = [torch.zeros_like(xc) if g is None else g for g in outs]
        blocks = [outs[-1]]
        for g in reversed(outs[:-1]):
            blocks.append(blocks[-1] + g)
        blocks.reverse()
        needs = ctx.needs_input_grad
        if active is not None:
            gf, grad_W_dec = _sparse_decoder_backward(ctx, active, blocks, grad_codes, W_dec)
        else:
            gf, grad_W_dec = _dense_decoder_backward(ctx, codes, blocks, grad_codes, W_dec)
        grad_threshold = None
        if sel.kind == "threshold" and sel.bandwidth is not None and needs[5]:
            grad_threshold = _threshold_grad(ctx, active, gf, threshold, pre if active is None
                                             else None)
        if active is not None:
            if sel.kind == "threshold":
                gf = gf * (ctx.pre_values > _entry_thresholds(threshold, active))
            grad_W_enc, grad_b_enc, grad_x = _sparse_encoder_backward(
                ctx, active, gf, grad_pre, xc, W_enc, needs[0])
        else:
            gpre = torch.ops.aten.threshold_backward.grad_input(gf, codes, 0.0, grad_input=gf)
            if grad_pre is not None:
                gpre.add_(grad_pre)
            grad_W_enc = torch.mm(xc.T, gpre, out=spare_grad(ctx.spare, "W_enc", W_enc))
            grad_b_enc = gpre.sum(dim=0)
            grad_x = gpre @ W_enc.T if needs[0] else None
        grad_b_dec = None
        if needs[4]:
            grad_b_dec = sum(g.sum(dim=0) for g in outs).sub_(W_enc @ grad_b_enc)
        return (grad_x, grad_W_enc, grad_b_enc, grad_W_dec, grad_b_dec, grad_threshold, None,
                None, None)


class FusedOutput(NamedTuple):
    """What :func:`fused_forward` computes (see :class:`FusedForward`).

    x_hat (n, d); codes (n, width); pre (n, width) or None (ReLU); kept_min: BatchTopK's
    smallest kept positive code (0-d) or None; fired: (width,) bool, the latents active on
    at least one sample, on the sparse path (None on the dense one); prefixes: the
    shorter prefixes' (n, d) reconstructions, shortest first.
    """

    x_hat: Tensor
    codes: Tensor
    pre: Tensor | None
    kept_min: Tensor | None
    fired: Tensor | None
    prefixes: list[Tensor]


def fused_forward(x: Tensor, W_enc: Tensor, b_enc: Tensor, W_dec: Tensor, b_dec: Tensor,
                  selection: Selection, *, threshold: Tensor | None = None,
                  spare: dict | None = None) -> FusedOutput:
    """:class:`FusedForward` applied."""
    # outputs recycle memory in training steps only (grad mode on, a weight to train)
    recycle = spare is not None and torch.is_grad_enabled() and (W_enc.requires_grad
                                                                 or W_dec.requires_grad)
    x_hat, codes, pre, kept_min, fired, *prefixes = FusedForward.apply(
        x, W_enc, b_enc, W_dec, b_dec, threshold, selection, spare, recycle)
    return FusedOutput(x_hat, codes, pre, kept_min, fired, prefixes)


# -- selection and the path -------------------------------------------------------
def _select(pre: Tensor, threshold: Tensor | None, sel: Selection, d: int,
            outputs: dict | None):
    """(codes (n, width), ActiveSet or None for the dense path, smallest kept code or None);
    ``outputs``: where the codes' memory may be recycled from (:func:`recycled`)."""
    n, width = pre.shape
    path = _PATH.get()
    ends = sel.block_ends
    if sel.kind == "relu":
        codes = pre.clamp_min_(0.0)
        return codes, measured_active(codes, d, path, ends), None
    if sel.kind == "threshold":
        t = threshold.clamp_min(0.0) if threshold.ndim == 0 else threshold
        codes = pre * (pre > t)
        if sel.bandwidth is None:
            return codes, measured_active(codes, d, path, ends), None
        # the entries JumpReLU's threshold gradient reads: pre above threshold - bandwidth/2
        listed = pre > (threshold - sel.bandwidth / 2)
        return codes, measured_active(listed, d, path, ends), None
    sparse = path == "sparse" or (path == "auto" and _worth_listing(n, d, width)
                                  and sel.k <= _tuning.SPARSE_STEP_MAX_DENSITY * width)
    if sel.kind == "topk":
        values, idx = row_topk(pre, sel.k, by_column=True)
        values = values.clamp_min_(0.0)
        codes = recycled(outputs, "codes", pre.shape, pre).zero_().scatter_(1, idx, values)
        active = None
        if sparse:
            flat = idx + torch.arange(0, n * width, width, device=pre.device)[:, None]
            flat = flat.reshape(-1)[values.reshape(-1) > 0]
            active = ActiveSet(flat, n, width, ends)
        return codes, active, None
    if sel.kind == "batchtopk":
        flat = batch_topk(pre, sel.k * n)
        kept = pre.reshape(-1).index_select(0, flat)
        codes = recycled(outputs, "codes", pre.shape, pre).zero_()
        codes.view(-1).index_put_((flat,), kept)
        kept_min = kept.min() if kept.numel() else pre.new_full((), -1.0)
        return codes, (ActiveSet(flat, n, width, ends) if sparse else None), kept_min
    raise ValueError(f"selection kind must be relu, topk, batchtopk or threshold, "
                     f"got {sel.kind!r}")


def _worth_listing(n: int, d: int, width: int) -> bool:
    """Whether a step is large enough for the sparse path to pay its fixed costs."""
    return n * d * width >= _tuning.SPARSE_STEP_MIN_WORK


def measured_active(listed: Tensor, d: int, path: str, ends=()) -> ActiveSet | None:
    """The entries of ``listed`` (n, width) (nonzero = listed) when the step takes the
    sparse path, else None; ``d`` is the input width, ``path`` the :func:`step_path`.

    On ``"auto"`` a step below ``SPARSE_STEP_MIN_WORK`` (n * d * width) is dense; the
    density is then measured on the leading rows first, and when they are already
    ``SPARSE_PROBE_MARGIN`` times above ``SPARSE_STEP_MAX_DENSITY`` the step goes
    dense without listing anything; otherwise the entries are listed and their exact
    share decides.
    """
    if path == "dense":
        return None
    n, width = listed.shape
    limit = _tuning.SPARSE_STEP_MAX_DENSITY * width
    if path == "auto":
        if not _worth_listing(n, d, width):
            return None
        rows = max(1, n // _tuning.SPARSE_PROBE_SHARE)
        if int(torch.count_nonzero(listed[:rows])) > _tuning.SPARSE_PROBE_MARGIN * limit * rows:
            return None
    active = ActiveSet.from_codes(listed, ends)
    if path == "auto" and active.nnz > limit * n:
        return None
    return active


def _entry_thresholds(threshold: Tensor, active: ActiveSet) -> Tensor:
    t = threshold.clamp_min(0.0) if threshold.ndim == 0 else threshold
    return t if t.ndim == 0 else t.index_select(0, active.cols)


# -- backward pieces ----------------------------------------------------------------
def _sparse_decoder_backward(ctx, active: ActiveSet, blocks, grad_codes, W_dec):
    """(dL/df at the entries (nnz,), dL/dW_dec (width, d)) from the active entries.

    Also keeps, for :meth:`FusedSAEMixin.remove_parallel_grad_`, each decoder row's
    radial component ``dL/dW_dec[j] . W_dec[j] = sum_e f_e (G[bag_e] . W_dec[j])``: a sum
    over the entries of the sampled products already formed for ``dL/df``, where a dot
    per row would read the whole (width, d) gradient and decoder once more.
    """
    G = blocks[0] if len(blocks) == 1 else torch.cat(blocks)
    ctx.spare.pop(RADIAL, None)
    if not ctx.needs_input_grad[3]:
        return entry_code_grads(active, G, W_dec, grad_codes), None
    sampled = active.sampled_products(G, W_dec)
    add = entry_code_grad_offsets(active, grad_codes)
    gf = sampled if add is None else sampled + add
    grad_W_dec = active.latent_products(ctx.values, G, spare_grad(ctx.spare, "W_dec", W_dec))
    ctx.spare[RADIAL] = (grad_W_dec.data_ptr(), grad_W_dec._version,
                         active.latent_sums(ctx.values * sampled))
    return gf, grad_W_dec


# spare's key for the decoder gradient's radial components (see _sparse_decoder_backward)
RADIAL = "W_dec.radial"


def entry_code_grads(active: ActiveSet, G: Tensor, W_dec: Tensor,
                     grad_codes: Tensor | None) -> Tensor:
    """(nnz,) ``dL/df = G W_dec^T + grad_codes`` at the active entries (G (n_bags, d))."""
    return active.sampled_products(G, W_dec, entry_code_grad_offsets(active, grad_codes))


def entry_code_grad_offsets(active: ActiveSet, grad_codes: Tensor | None) -> Tensor | None:
    """(nnz,) ``grad_codes`` at the active entries, or None."""
    if grad_codes is None:
        return None
    if grad_codes.stride() == (0, 0):  # an expanded constant (the L1 penalty's) is read once
        return grad_codes[0, 0].expand(active.nnz).contiguous()
    return active.gather(grad_codes)


def _dense_decoder_backward(ctx, codes, blocks, grad_codes, W_dec):
    """(dL/df (n, width), dL/dW_dec (width, d)) as matmuls, block by block."""
    ctx.spare.pop(RADIAL, None)
    width = codes.shape[1]
    ends = ctx.selection.block_ends or (width,)
    grad_W_dec = spare_grad(ctx.spare, "W_dec", W_dec) if ctx.needs_input_grad[3] else None
    # The penalty's gradient rides in as addmm's input (a broadcast constant for L1 costs
    # no extra pass); the (n, width) scratch stays with the module (a fresh multi-MB CPU
    # buffer page-faults on every step).
    gf = scratch(ctx.spare, "grad_f", codes)
    for (s, e), G in zip(zip((0, *ends[:-1]), ends, strict=True), blocks, strict=True):
        if grad_W_dec is not None:
            torch.mm(codes[:, s:e].T, G, out=grad_W_dec[s:e])
        if grad_codes is None:
            torch.mm(G, W_dec[s:e].T, out=gf[:, s:e])
        else:
            torch.addmm(grad_codes[:, s:e], G, W_dec[s:e].T, out=gf[:, s:e])
    return gf, grad_W_dec


def _threshold_grad(ctx, active, gf, threshold, pre):
    """JumpReLU's ``dL/dtheta = -(theta / bandwidth) sum_n dL/df * [|pre - theta| < bw/2]``."""
    bw = ctx.selection.bandwidth
    if active is None:
        window = ((pre - threshold).abs() < bw / 2).to(gf.dtype)
        return -(threshold / bw) * (gf * window).sum(0)
    near = ((ctx.pre_values - threshold.index_select(0, active.cols)).abs() < bw / 2)
    return -(threshold / bw) * active.latent_sums(gf * near.to(gf.dtype))


def _sparse_encoder_backward(ctx, active: ActiveSet, gpre, grad_pre, xc, W_enc, needs_x):
    """(dL/dW_enc, dL/db_enc, dL/dx) from dL/dpre at the entries, plus ``grad_pre``, a
    gradient that reached the pre-activations from elsewhere (AuxK's): merged into the
    entries when it is sparse too, else the encoder's gradient is one dense product."""
    if grad_pre is not None:
        extra = measured_active(grad_pre.contiguous(), xc.shape[1], ctx.path)
        if extra is not None:
            active, gpre = active.merged(gpre, extra, extra.gather(grad_pre))
            grad_pre = None
    if grad_pre is not None:
        dense = grad_pre.clone(memory_format=torch.contiguous_format)
        active.scatter(gpre, dense)
        grad_W_enc = torch.mm(xc.T, dense, out=spare_grad(ctx.spare, "W_enc", W_enc))
        return grad_W_enc, dense.sum(dim=0), (dense @ W_enc.T if needs_x else None)
    grad_W_enc = spare_grad(ctx.spare, "W_enc", W_enc) if ctx.needs_input_grad[1] else None
    return sparse_encoder_grads(active, gpre, xc, W_enc, grad_W_enc,
                                scratch(ctx.spare, "latent_major", W_enc.T), needs_x)


def sparse_encoder_grads(active: ActiveSet, gpre: Tensor, xc: Tensor, W_enc: Tensor,
                         grad_W_enc: Tensor | None, latent_major: Tensor, needs_x: bool):
    """(dL/dW_enc written into ``grad_W_enc`` (d, width), dL/db_enc, dL/dx or None) from
    ``gpre`` = dL/dpre at the entries, for the encoder ``pre = xc W_enc + b_enc``.

    The product is formed latent-major in ``latent_major`` (width, d) scratch (a CSR
    product with the transposed pattern) and copied into the (d, width) layout.
    """
    if grad_W_enc is not None:
        active.latent_products(gpre, xc, latent_major, by_bag=False)
        transposed_copy_(grad_W_enc, latent_major)
    grad_x = active.sample_products(gpre, W_enc.T) if needs_x else None
    return grad_W_enc, active.latent_sums(gpre), grad_x


def transposed_copy_(out: Tensor, src: Tensor, rows: int | None = None) -> Tensor:
    """``out.copy_(src.T)`` for a contiguous (a, b) ``src`` and (b, a) ``out``, in blocks of
    ``rows`` (default ``TRANSPOSE_BLOCK``) rows of ``src``: each block is read once while in
    cache, and each row of ``out`` gets a contiguous run per block (one whole transposing
    copy of a 4096 x 768 gradient strides through memory: 5-6 ms against 2 ms blocked)."""
    rows = rows or _tuning.TRANSPOSE_BLOCK
    for start in range(0, src.shape[0], rows):
        out[:, start:start + rows].copy_(src[start:start + rows].T)
    return out


# -- recycled buffers -----------------------------------------------------------------
def recycled(spare: dict | None, name: str, shape, like: Tensor) -> Tensor:
    """Memory for a forward output of ``shape`` (``like``'s dtype and device): the memory of
    the module's previous output ``name`` (kept in ``spare``) once nothing else holds it,
    else fresh memory (uninitialised either way). ``spare`` None (not a training step):
    always fresh.

    A fresh multi-MB CPU buffer page-faults as it is first written: 4-6 ms of a 65 ms
    TopK step at 1024 x 4096. The returned tensor is a new object over the kept storage;
    the storage is reused only when its reference count says that no tensor (a view, a
    detached copy, a tensor autograd saved) but the kept one still uses it, so nothing a
    caller holds is ever overwritten. Inference (no input wants a gradient) always gets
    fresh memory: concurrent inference on one module must not share a buffer.
    """
    if spare is None or like.device.type != "cpu" or _use_count is None:
        return like.new_empty(shape)
    # Two slots: the engine still holds step t's codes (its log reads them) while step
    # t + 1 runs, so step t + 1 takes step t - 1's memory.
    slots = [kept for kept in spare.get(f"out.{name}", ())
             if tuple(kept.shape) == tuple(shape) and kept.dtype == like.dtype]
    free = next((kept for kept in slots if _use_count(kept) == 1), None)
    if free is None:
        free = like.new_empty(shape)
        slots = [*slots[-(OUTPUT_SLOTS - 1):], free]
    spare[f"out.{name}"] = slots
    return like.new_empty(0).set_(free.untyped_storage(), 0, free.shape, free.stride())


OUTPUT_SLOTS = 2


def _storage_users(t: Tensor) -> int:
    """Tensors holding ``t``'s storage (torch's reference count, less this call's own)."""
    storage = t.untyped_storage()
    return torch._C._storage_Use_Count(storage._cdata) - 1


# torch's storage reference count is a private function: without it, no reuse.
_use_count = _storage_users if hasattr(torch._C, "_storage_Use_Count") else None


def scratch(spare: dict, name: str, like: Tensor) -> Tensor:
    """A contiguous scratch buffer shaped like ``like`` that stays with the module across
    steps (used and finished within one backward pass, so reusing it is safe)."""
    buf = spare.get(name)
    if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
        buf = spare[name] = torch.empty_like(like, memory_format=torch.contiguous_format)
    return buf


def spare_grad(spare: dict, name: str, like: Tensor) -> Tensor:
    """A recycled gradient buffer for ``name`` (see :meth:`FusedSAEMixin.recycle_grads_`), or
    a fresh one. Popped, so the returned gradient is referenced by autograd alone and
    becomes the parameter's ``.grad`` without a copy."""
    buf = spare.pop(name, None)
    if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
        return torch.empty_like(like, memory_format=torch.contiguous_format)
    return buf


class FusedSAEMixin:
    """For SAEs whose forward is :class:`FusedForward`: the engine's ``recycle_grads_``
    keeps the weight gradients' memory for the next backward pass, and after a sparse
    pass ``remove_parallel_grad_`` reads the decoder gradient's radial parts off the
    active entries."""

    def _init_buffers(self) -> None:
        self._backward_buffers: dict[str, Tensor] = {}

    @torch.no_grad()
    def remove_parallel_grad_(self) -> None:
        """As the base class does; after a sparse backward pass whose decoder gradient is
        still as it wrote it (the same buffer, no in-place change since: its version
        counter says so), with the radial components that pass formed from its entries."""
        radial = self._backward_buffers.pop(RADIAL, None)
        g = self.decoder_weight.grad
        if radial is None or g is None or (g.data_ptr(), g._version) != radial[:2]:
            return super().remove_parallel_grad_()
        g.addcmul_(radial[2][:, None], self.decoder_weight, value=-1.0)

    def recycle_grads_(self) -> None:
        """Keep the weight gradients' memory for the next backward pass, then drop ``.grad``.

        The training engine calls this in place of ``zero_grad(set_to_none=True)``:
        the next backward writes into the same buffers (a fresh multi-MB CPU buffer
        page-faults on every step here) and autograd adopts them as ``.grad`` again.
        """
        for name in ("W_enc", "W_dec"):
            grad = getattr(self, name).grad
            if grad is not None:
                self._backward_buffers[name] = grad
        for p in self.parameters():
            p.grad = None
