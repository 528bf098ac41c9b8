"""Batched proximal-gradient sparse coding in torch (FISTA with adaptive restart, ISTA).

Everything works on the Gram form of the objective: with ``C = X D^T`` and
``G = D D^T`` the smooth part of ``1/2||x - zD||^2`` has gradient ``zG - c``, so
one iteration costs one ``(n, k) @ (k, k)`` product and never touches ``d``.

Momentum is kept per sample: each sample has its own ``t`` and restarts on its
own (the gradient restart test of O'Donoghue & Candes, "Adaptive restart for
accelerated gradient schemes", 2015), and a sample leaves the active batch as
soon as its KKT gap is below ``tol``.

For large dictionaries :func:`working_set_prox_grad` wraps this in an active-set
method: each sample works on a few atoms at a time, and an exact Cholesky refit
on the support (:func:`refit_on_support`) replaces FISTA's slow last digits.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from toysae._buffers import host_empty, host_zeros

# Rows per block where an (n, k) result is built piecewise, so that torch's own
# temporaries stay small (see toysae._buffers).
ROW_BLOCK = 1024


class ProxGradOutput(NamedTuple):
    codes: torch.Tensor  # (n, k)
    kkt: torch.Tensor  # (n,) scaled KKT gap of each sample
    n_iter: torch.Tensor  # (n,) iterations each sample ran
    converged: torch.Tensor  # (n,) bool
    # The codes as padded index sets, (n, m) atoms and (n, m) values with zeros as
    # padding, when the solver works on sets (a cheap sparse form for z @ M).
    sets: tuple[torch.Tensor, torch.Tensor] | None = None


def kkt_violation(codes: torch.Tensor, response: torch.Tensor, lam: float, nonneg: bool,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample max violation of the code KKT conditions (DESIGN.md, Optimality 1).

    ``response`` is ``g = c - zG`` (``d_k . r_n``). Nonnegative codes need
    ``g = lam`` on the support and ``g <= lam`` off it; signed codes need
    ``g = lam sign(z)`` and ``|g| <= lam``. Entries outside ``mask`` (OMP's
    fixed support) are ignored. Not divided by lam here.
    """
    if nonneg:
        off = torch.clamp(response - lam, min=0.0)
        on = (response - lam).abs()
    else:
        off = torch.clamp(response.abs() - lam, min=0.0)
        on = (response - lam * torch.sign(codes)).abs()
    viol = torch.where(codes != 0, on, off)
    if mask is not None:
        viol = viol * mask
    return viol.amax(dim=1) if viol.shape[1] else viol.new_zeros(viol.shape[0])


def lipschitz(gram: torch.Tensor) -> float:
    """Top eigenvalue of the Gram matrix (in float64), the step size is 1/L."""
    top = torch.linalg.eigvalsh(gram.detach().to("cpu", torch.float64))[-1].item()
    # A hair above the true value keeps 1/L a valid step despite rounding in G.
    return max(top, 1e-300) * (1.0 + 1e-6)


def _prox(v: torch.Tensor, thresh: float, nonneg: bool) -> torch.Tensor:
    if nonneg:
        return torch.clamp(v - thresh, min=0.0)
    return torch.sign(v) * torch.clamp(v.abs() - thresh, min=0.0)


def sparse_times(z: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """``z @ M`` for codes ``z`` that are mostly exact zeros (a sparse product when they are)."""
    if z.device.type == "cpu" and z.numel() > 4096:
        zs = z.to_sparse()
        if zs._nnz() < 0.05 * z.numel():
            return torch.sparse.mm(zs, M)
    return z @ M


def _times(z: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """``z G`` for one shared (k, k) Gram or a per-sample (n, k, k) batch of them."""
    if G.ndim == 2:
        return z @ G
    if G.shape[1] <= 32:  # tiny blocks: broadcasting beats batched GEMM calls
        return (z.unsqueeze(2) * G).sum(dim=1)
    return torch.matmul(z.unsqueeze(1), G).squeeze(1)


def prox_grad(C: torch.Tensor, G: torch.Tensor, lam: float, *, nonneg: bool,
              accelerate: bool, max_iter: int, tol: float, init: torch.Tensor | None,
              scale: float, check_every: int = 5, L: float | torch.Tensor | None = None,
              mask: torch.Tensor | None = None) -> ProxGradOutput:
    """Minimise ``1/2 z G z^T - c z^T + lam ||z||_1`` (+ ``z >= 0``) row by row.

    Parameters
    ----------
    C : (n, k) correlations ``X D^T``.
    G : (k, k) Gram matrix ``D D^T``, or (n, k, k), one per sample.
    lam : penalty. tol : stop a sample once ``kkt / scale <= tol``.
    init : (n, k) warm start or None (zeros).
    L : Lipschitz constant (float), or (n, 1) per sample; default top eigenvalue of G.
    mask : optional (n, k) 0/1 support restriction (entries outside it stay zero).
    """
    n, k = C.shape
    batched = G.ndim == 3
    if L is None:
        L = lipschitz(G) if not batched else torch.linalg.eigvalsh(G)[:, -1:] * (1 + 1e-6)
    step = 1.0 / L
    z_all = torch.zeros_like(C) if init is None else init.clone()
    if nonneg:
        z_all.clamp_(min=0.0)
    if mask is not None:
        z_all = z_all * mask
    kkt_all = torch.full((n,), math.inf, dtype=C.dtype, device=C.device)
    iters_all = torch.zeros(n, dtype=torch.long, device=C.device)
    done_all = torch.zeros(n, dtype=torch.bool, device=C.device)

    # Per-sample state; rows leave it (compaction) as their samples finish.
    active = torch.arange(n, device=C.device)
    c, msk, Gb, st = C, mask, G, step
    z = z_all
    zG = _times(z, Gb)
    kkt_now = kkt_violation(z, c - zG, lam, nonneg, msk) / scale
    z_prev, zG_prev = z, zG
    t = torch.ones(n, 1, dtype=C.dtype, device=C.device)
    it = 0
    # A perfect warm start finishes here with zero iterations.
    finished = kkt_now <= tol
    while True:
        if bool(finished.any()) or it == max_iter:
            stop = finished if it < max_iter else torch.ones_like(finished)
            idx = active[stop]
            z_all[idx] = z[stop]
            kkt_all[idx] = kkt_now[stop]
            iters_all[idx] = it
            done_all[idx] = finished[stop]
            keep = ~stop
            if not bool(keep.any()):
                break
            active, c, z, zG, z_prev, zG_prev, t = (
                a[keep] for a in (active, c, z, zG, z_prev, zG_prev, t))
            if msk is not None:
                msk = msk[keep]
            if batched:
                Gb = Gb[keep]
            if isinstance(st, torch.Tensor):
                st = st[keep]
        thresh = lam * st
        for _ in range(check_every):
            if accelerate:
                t_next = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * t * t))
                beta = (t - 1.0) / t_next
                y = z + beta * (z - z_prev)
                yG = zG + beta * (zG - zG_prev)
            else:
                y, yG = z, zG
            z_new = _prox(y - st * (yG - c), thresh, nonneg)
            if msk is not None:
                z_new = z_new * msk
            zG_new = _times(z_new, Gb)
            if accelerate:
                restart = ((y - z_new) * (z_new - z)).sum(dim=1, keepdim=True) > 0
                t = torch.where(restart, torch.ones_like(t), t_next)
            z_prev, zG_prev, z, zG = z, zG, z_new, zG_new
            it += 1
            if it == max_iter:
                break
        kkt_now = kkt_violation(z, c - zG, lam, nonneg, msk) / scale
        finished = kkt_now <= tol
    return ProxGradOutput(z_all, kkt_all, iters_all, done_all)


def set_objective(c: torch.Tensor, G: torch.Tensor, z: torch.Tensor, lam: float) -> torch.Tensor:
    """Per-sample ``1/2 z G z^T - c . z + lam |z|_1`` on (n, m) sets (objective - 1/2 |x|^2)."""
    zG = _times(z, G)
    return (0.5 * zG - c).mul_(z).sum(dim=1) + lam * z.abs().sum(dim=1)


def refit_on_support(c: torch.Tensor, G: torch.Tensor, support: torch.Tensor,
                     sign: torch.Tensor, lam: float, max_drops: int = 2
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Minimiser over codes with a given support and signs: one batched Cholesky solve.

    On a support ``P`` with signs ``s`` the objective is a quadratic whose
    minimiser solves ``G_PP z_P = c_P - lam s_P``. Once the support and signs
    are the optimal ones, that solve *is* the answer, exactly, where an
    iterative method would spend many slow iterations on the last digits. An
    atom whose solution comes out with the wrong sign (or zero) leaves the
    support and the solve is repeated, at most ``max_drops`` times.

    c : (n, m) correlations on each sample's atom set; G : (n, m, m) their Gram
    blocks; support : (n, m) bool; sign : (n, m) the signs to keep (+1 for
    nonnegative codes). Returns ``(codes, consistent, dropped)``: the codes
    (zero off the final support) and, per sample, whether the factorisation
    succeeded and every sign held, and whether any atom was dropped. Whether
    the codes are optimal is the caller's KKT check.
    """
    n, m = c.shape
    eye = torch.eye(m, dtype=c.dtype, device=c.device)
    rhs = c - lam * sign
    z = torch.zeros_like(c)
    consistent = torch.zeros(n, dtype=torch.bool, device=c.device)
    dropped = torch.zeros_like(consistent)
    rows = None  # all rows on the first solve, then those that dropped an atom
    on = support
    for attempt in range(max_drops + 1):
        G_r, rhs_r, sign_r = (G, rhs, sign) if rows is None else (G[rows], rhs[rows], sign[rows])
        # Identity off the support keeps the system definite and those codes zero.
        A = torch.where(on[:, :, None] & on[:, None, :], G_r, eye)
        factor, info = torch.linalg.cholesky_ex(A)
        z_r = torch.cholesky_solve((rhs_r * on).unsqueeze(2), factor).squeeze(2) * on
        wrong = on & ~(z_r * sign_r > 0)  # also catches NaN from a failed factorisation
        redo = wrong.any(dim=1)
        if rows is None:
            z, consistent = z_r, (info == 0) & ~redo
        else:
            z[rows], consistent[rows] = z_r, (info == 0) & ~redo
        if attempt == max_drops or not bool(redo.any()):
            break
        rows = torch.nonzero(redo).squeeze(1) if rows is None else rows[redo]
        dropped[rows] = True
        on = (on & ~wrong)[redo]
    return z, consistent, dropped


def _refit_if_better(c: torch.Tensor, G: torch.Tensor, z: torch.Tensor, lam: float,
                     nonneg: bool, support: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`refit_on_support` on the support of ``z``, kept where it lowers the objective.

    With no atom dropped the refit minimises over a set that contains ``z``,
    so it cannot be worse; after drops it is compared with ``z`` on the set
    objective. ``support`` overrides the support of ``z`` (a first guess from
    zero codes, whose signs are then those of ``c``).
    """
    if support is None:
        support = z != 0
        sign = torch.ones_like(z) if nonneg else torch.sign(z)
    else:
        sign = torch.ones_like(z) if nonneg else torch.sign(c)
    refit, keep, dropped = refit_on_support(c, G, support, sign, lam)
    check = torch.nonzero(keep & dropped).squeeze(1)
    if check.numel():
        c_d, G_d = c[check], G[check]
        keep[check] = set_objective(c_d, G_d, refit[check], lam) <= set_objective(
            c_d, G_d, z[check], lam)
    return torch.where(keep[:, None], refit, z)


def set_times(S: torch.Tensor, values: torch.Tensor, M: torch.Tensor,
              subtract_from: torch.Tensor | None = None) -> torch.Tensor:
    """``z @ M``, or ``subtract_from - z @ M`` in place, for codes on index sets.

    The codes are ``z[i, S[i, j]] = values[i, j]``; padding entries must carry
    exact zeros. The product is a weighted ``embedding_bag`` (each output row is
    the weighted sum of the ``m`` rows of ``M`` its sample uses), several times
    faster on the CPU than a CSR product and never materialising ``z``.
    """
    product = torch.nn.functional.embedding_bag(S, M, per_sample_weights=values, mode="sum")
    if subtract_from is None:
        return product
    return subtract_from.sub_(product)


def _move_to_sets(S_old: torch.Tensor, values: torch.Tensor, S_new: torch.Tensor,
                  valid: torch.Tensor) -> torch.Tensor:
    """Codes given on sets ``S_old`` re-expressed on sets ``S_new`` (atoms not in it drop)."""
    same = (S_new[:, :, None] == S_old[:, None, :]) & (valid[:, :, None] != 0)
    return (same * values[:, None, :]).sum(dim=2)


def _full_kkt(z_set: torch.Tensor, g: torch.Tensor, S: torch.Tensor, lam: float,
              nonneg: bool) -> torch.Tensor:
    """Per-sample KKT violation when the whole support lies in the set ``S``.

    Off the support the violation is ``(g - lam)_+`` (``(|g| - lam)_+``), whose max
    over all atoms is one reduction; on the support it is read on the set only.
    """
    top = g.amax(dim=1) if nonneg else g.abs().amax(dim=1)
    off = torch.clamp(top - lam, min=0.0)
    gS = g.gather(1, S)
    target = lam if nonneg else lam * torch.sign(z_set)
    on = torch.where(z_set != 0, (gS - target).abs(), torch.zeros_like(gS))
    return torch.maximum(off, on.amax(dim=1) if on.shape[1] else off)


def _count(mask: torch.Tensor) -> torch.Tensor:
    """Row counts of a boolean (n, k) mask (summing bools would first copy them to int64)."""
    return mask.view(torch.uint8).sum(dim=1, dtype=torch.int32).long()


def _index_sets(member: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, k) membership -> (n, m) atom indices, ascending, padded with atom 0, and a 0/1 mask."""
    n = member.shape[0]
    count = _count(member)
    m = max(int(count.max()), 1) if n else 1
    rows, cols = torch.nonzero(member, as_tuple=True)
    starts = torch.cumsum(count, 0) - count
    pos = torch.arange(rows.numel(), device=member.device) - starts[rows]
    S = torch.zeros(n, m, dtype=torch.long, device=member.device)
    S[rows, pos] = cols
    valid = torch.zeros(n, m, dtype=dtype, device=member.device)
    valid[rows, pos] = 1.0
    return S, valid


def _next_sets(S: torch.Tensor, z_set: torch.Tensor, g: torch.Tensor, lam: float,
               nonneg: bool, cap: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's support plus its KKT violators (largest responses first, up to ``cap``)."""
    on = z_set != 0
    member = g > lam if nonneg else g.abs() > lam
    # Support atoms are members whatever their response (padding adds nothing).
    member.view(torch.uint8).scatter_reduce_(1, S, on.to(torch.uint8), reduce="amax")
    over = _count(member) > cap
    if bool(over.any()):
        rows = torch.nonzero(over).squeeze(1)
        response = g.index_select(0, rows)
        if not nonneg:
            response.abs_()
        # The support ranks first (+inf), then the largest violations.
        flag = torch.where(on[rows], torch.inf, -torch.inf).to(g.dtype)
        response.scatter_reduce_(1, S[rows], flag, reduce="amax")
        top = response.topk(cap, dim=1).indices
        member[rows] = torch.zeros_like(member[rows]).scatter_(1, top, True)
    return _index_sets(member, g.dtype)


def working_set_prox_grad(C: torch.Tensor, G: torch.Tensor, lam: float, *, nonneg: bool,
                          accelerate: bool, max_iter: int, tol: float,
                          init: torch.Tensor | None, scale: float, max_set: int = 16,
                          first_set: int = 8, max_rounds: int = 100) -> ProxGradOutput:
    """An active-set lasso solver: per-sample working sets, exact refits, FISTA.

    Every round, each unfinished sample gets a working set of atoms, its codes
    on that set are solved for, and the *full* KKT gap (``g = c - zG`` on all
    ``k`` atoms, one gathered product) decides whether the sample is done. The
    answer is therefore as exact as the dense solver's; only the work is small
    (``m**2`` per sample instead of ``k**2``). The rounds:

    - first (from zero codes): the ``first_set`` atoms with the largest
      responses ``c_j > lam``, solved by :func:`refit_on_support` alone (one
      Cholesky solve, atoms that come out negative dropped and the solve
      repeated). On the reference toy this finishes about 2/3 of the samples:
      those whose optimal support lies among their 8 largest responses.
    - later: the support plus the atoms that violate KKT (``g_j > lam``),
      largest first, at most ``max_set``; :func:`prox_grad` solves the set
      problem (Gershgorin bound of the Gram block as ``L``, tolerance ``0.1``
      tightening tenfold each round down to ``tol``), which guarantees
      progress, and a refit then makes the codes exact once the support and
      signs are right (kept only where it does not raise the objective).

    Samples whose support fills ``max_set`` atoms go, warm-started, to a
    working set four times as large (while that is at most ``k/4`` atoms),
    otherwise to the plain solver. The result carries the codes as index sets
    too (``ProxGradOutput.sets``).
    """
    n, k = C.shape
    dev, dt = C.device, C.dtype
    kkt_all = torch.full((n,), math.inf, dtype=dt, device=dev)
    iters_all = torch.zeros(n, dtype=torch.long, device=dev)
    done_all = torch.zeros(n, dtype=torch.bool, device=dev)
    finished_sets = []  # (sample indices, their atom sets, their codes on them)

    active = torch.arange(n, device=dev)
    if init is None:
        S = torch.zeros(n, 1, dtype=torch.long, device=dev)
        z_set = torch.zeros(n, 1, dtype=dt, device=dev)
        g = None  # c itself, never modified
    else:
        z0 = init.clamp(min=0.0) if nonneg else init
        S, valid = _index_sets(z0 != 0, dt)
        z_set = z0.gather(1, S) * valid
        g = set_times(S, z_set, G, subtract_from=C.clone())
    used = torch.zeros(n, dtype=torch.long, device=dev)
    # From zero codes no sample is checked before round 0 (one whose responses are
    # all <= lam gets an empty set and finishes there): it saves compacting (n, k).
    kkt = (torch.full_like(kkt_all, math.inf) if init is None else
           _full_kkt(z_set, g, S, lam, nonneg) / scale)
    big_rows = []
    for round_ in range(max_rounds + 1):
        finished = kkt <= tol
        stop = finished | (used >= max_iter) | (round_ == max_rounds)
        # A support that fills the set cap leaves no room for new atoms.
        big = ~stop & ((z_set != 0).sum(dim=1) >= max_set)
        if bool(big.any()):
            rows = torch.nonzero(big).squeeze(1)
            z_big = torch.zeros(rows.numel(), k, dtype=dt, device=dev)
            big_rows.append((active[rows], z_big.scatter_add_(1, S[rows], z_set[rows]),
                             used[rows]))
            stop = stop | big
        if bool(stop.any()):
            rows = torch.nonzero(stop & ~big).squeeze(1)
            idx = active[rows]
            finished_sets.append((idx, S[rows], z_set[rows]))
            kkt_all[idx] = kkt[rows]
            iters_all[idx] = used[rows]
            done_all[idx] = finished[rows]
            keep = torch.nonzero(~stop).squeeze(1)
            if keep.numel() == 0:
                break
            active, S, z_set, used = (a.index_select(0, keep) for a in (active, S, z_set, used))
            if g is not None:
                g = torch.index_select(g, 0, keep,
                                       out=host_empty((keep.numel(), k), dt, dev))
        if g is None:
            # From zero codes nearly every atom with c_j > lam violates KKT: start
            # from the largest responses only.
            top = (C if nonneg else C.abs()).topk(min(first_set, k), dim=1)
            S, valid = top.indices, (top.values > lam).to(dt)
            z_start = torch.zeros_like(valid)
        else:
            S_new, valid = _next_sets(S, z_set, g, lam, nonneg, min(max_set, k))
            z_start = _move_to_sets(S, z_set, S_new, valid)  # every support atom stays
            S = S_new
        m = S.shape[1]
        flat = (S[:, :, None] * k + S[:, None, :]).reshape(-1)
        Gs = G.reshape(-1).index_select(0, flat).view(-1, m, m)
        if g is None:
            # The first guess needs no iterations: refit on the atoms with c_j > lam,
            # dropping those that come out negative.
            c_set = C.gather(1, S) * valid
            z_set = _refit_if_better(c_set, Gs, z_start, lam, nonneg, support=valid != 0)
        else:
            c_set = C[active[:, None], S] * valid
            Gs = Gs * (valid[:, :, None] * valid[:, None, :])
            L = Gs.abs().sum(dim=2).amax(dim=1, keepdim=True)
            out = prox_grad(c_set, Gs, lam, nonneg=nonneg, accelerate=accelerate,
                            max_iter=max_iter - int(used.max()),
                            tol=max(tol, 0.1 ** max(round_, 1)),
                            init=z_start, scale=scale, L=L, mask=valid)
            used = used + out.n_iter
            z_set = _refit_if_better(c_set, Gs, out.codes, lam, nonneg)
        # g = c - z G, from c on the first round, then updated in place by the change.
        if g is None:
            g = host_empty(C.shape, dt, dev)
            for i in range(0, n, ROW_BLOCK):  # blocks: torch's temporaries stay small
                rows = slice(i, i + ROW_BLOCK)
                torch.sub(C[rows], set_times(S[rows], z_set[rows], G), out=g[rows])
        else:
            g = set_times(S, z_set - z_start, G, subtract_from=g)
        kkt = _full_kkt(z_set, g, S, lam, nonneg) / scale
    for idx, z0, used0 in big_rows:
        budget = max(max_iter - int(used0.max()), 1)
        if 16 * max_set <= k:  # a bigger cap before the (eigen-solve + k**2) plain solver
            out = working_set_prox_grad(C[idx], G, lam, nonneg=nonneg, accelerate=accelerate,
                                        max_iter=budget, tol=tol, init=z0, scale=scale,
                                        max_set=4 * max_set, first_set=4 * max_set,
                                        max_rounds=max_rounds)
        else:
            out = prox_grad(C[idx], G, lam, nonneg=nonneg, accelerate=accelerate,
                            max_iter=budget, tol=tol, init=z0, scale=scale)
        if out.sets is not None:
            finished_sets.append((idx, *out.sets))
        else:
            S_big, valid = _index_sets(out.codes != 0, dt)
            finished_sets.append((idx, S_big, out.codes.gather(1, S_big) * valid))
        kkt_all[idx] = out.kkt
        iters_all[idx] = used0 + out.n_iter
        done_all[idx] = out.converged
    m = max(S.shape[1] for _, S, _ in finished_sets)
    S_all = torch.zeros(n, m, dtype=torch.long, device=dev)
    z_sets = torch.zeros(n, m, dtype=dt, device=dev)
    for idx, S, z_set in finished_sets:
        S_all[idx, :S.shape[1]] = S
        z_sets[idx, :S.shape[1]] = z_set
    # Padding repeats atom 0 with zero codes: accumulating adds those zeros harmlessly.
    rows = torch.arange(n, device=dev)[:, None]
    z_all = host_zeros((n, k), dt, dev).index_put_((rows, S_all), z_sets, accumulate=True)
    return ProxGradOutput(z_all, kkt_all, iters_all, done_all, (S_all, z_sets))


def solve_lasso(C: torch.Tensor, G: torch.Tensor, lam: float, *, nonneg: bool,
                accelerate: bool, max_iter: int, tol: float, init: torch.Tensor | None,
                scale: float, working_set_above: int = 96) -> ProxGradOutput:
    """Dense prox-gradient for small dictionaries, working sets for large ones."""
    if G.shape[0] > working_set_above and lam > 0:
        return working_set_prox_grad(C, G, lam, nonneg=nonneg, accelerate=accelerate,
                                     max_iter=max_iter, tol=tol, init=init, scale=scale)
    return prox_grad(C, G, lam, nonneg=nonneg, accelerate=accelerate, max_iter=max_iter,
                     tol=tol, init=init, scale=scale)
