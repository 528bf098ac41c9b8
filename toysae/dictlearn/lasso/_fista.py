"""Batched proximal-gradient sparse coding in torch (FISTA with adaptive restart, ISTA).

Everything works on the Gram form of the objective: with ``C = X D^T`` and
``G = D D^T`` the smooth part of ``1/2||x - zD||^2`` has gradient ``zG - c``, so
one iteration costs one ``(n, n_atoms) @ (n_atoms, n_atoms)`` product and never
touches ``d``.

Momentum is kept per sample: each sample has its own ``t`` and restarts on its
own (the gradient restart test of O'Donoghue & Candes, "Adaptive restart for
accelerated gradient schemes", 2015), and a sample leaves the active batch as
soon as its KKT gap is below ``tol``.

This is the dense solver. For large dictionaries
:mod:`toysae.dictlearn.lasso._working_set` wraps it in an active-set method (each
sample works on a few atoms at a time, exact Cholesky refits on the support).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse
import torch

from toysae import _tuning


class LassoOutput:
    """What a lasso solver returns; per-sample tensors of the batch.

    kkt : (n,) scaled KKT gap of each sample. n_iter : (n,) iterations each
    sample ran. success : (n,) bool, the sample met the stopping rule.
    sets : the codes as padded index sets, (n, m) atoms and (n, m) values with
    zeros as padding, when the solver works on sets (a cheap sparse form for
    ``z @ M``; see ``set_times``); else None.
    codes : the dense (n, n_atoms) codes; built from ``sets`` on first access
    when the solver did not build them (a caller that reads only the sets never
    pays for the dense array).
    """

    def __init__(self, kkt: torch.Tensor, n_iter: torch.Tensor, success: torch.Tensor, *,
                 codes: torch.Tensor | None = None,
                 sets: tuple[torch.Tensor, torch.Tensor] | None = None,
                 n_atoms: int | None = None):
        if codes is None and (sets is None or n_atoms is None):
            raise ValueError("a LassoOutput needs dense codes or index sets and n_atoms")
        self.kkt, self.n_iter, self.success = kkt, n_iter, success
        self.sets = sets
        self.n_atoms = n_atoms if codes is None else codes.shape[1]
        self._codes = codes

    @property
    def codes(self) -> torch.Tensor:
        if self._codes is None:
            S, values = self.sets
            rows = torch.arange(S.shape[0], device=S.device)[:, None]
            # Padding repeats atom 0 with zero codes: accumulating adds those zeros harmlessly.
            self._codes = torch.zeros((S.shape[0], self.n_atoms), dtype=values.dtype,
                                      device=values.device).index_put_(
                (rows, S), values, accumulate=True)
        return self._codes

    def csr(self) -> scipy.sparse.csr_matrix:
        """The codes as a float64 scipy CSR matrix with sorted indices and no stored zeros,
        straight from the index sets when there are some (no dense scan)."""
        if self.sets is None:
            Z = scipy.sparse.csr_matrix(self.codes.cpu().double().numpy())
        else:
            S, values = (t.cpu().numpy() for t in self.sets)
            nonzero = values != 0
            indptr = np.zeros(S.shape[0] + 1, dtype=np.int64)
            np.cumsum(nonzero.sum(axis=1), out=indptr[1:])
            Z = scipy.sparse.csr_matrix(
                (values[nonzero].astype(np.float64), S[nonzero], indptr),
                shape=(S.shape[0], self.n_atoms))
        Z.eliminate_zeros()
        Z.sort_indices()
        return Z


def kkt_violation(codes: torch.Tensor, response: torch.Tensor, lam: float, nonneg: bool,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample max violation of the code KKT conditions (docs/theory.md, section 1).

    ``response`` is ``g = c - zG`` (``d_j . r_n``). Nonnegative codes need
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


def prox(v: torch.Tensor, thresh, nonneg: bool) -> torch.Tensor:
    """The proximal map of ``thresh * ||.||_1`` (plus ``z >= 0`` when nonneg): soft threshold."""
    if nonneg:
        return torch.clamp(v - thresh, min=0.0)
    return torch.sign(v) * torch.clamp(v.abs() - thresh, min=0.0)


def sparse_times(z: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """``z @ M`` for codes ``z`` that are mostly exact zeros (a sparse product when they are)."""
    if z.device.type == "cpu" and z.numel() > _tuning.SPARSE_MIN_ENTRIES:
        zs = z.to_sparse()
        if zs._nnz() < _tuning.SPARSE_MAX_DENSITY * z.numel():
            return torch.sparse.mm(zs, M)
    return z @ M


def gram_times(z: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """``z G`` for one shared (n_atoms, n_atoms) Gram or a per-sample (n, m, m) batch of them."""
    if G.ndim == 2:
        return z @ G
    if G.shape[1] <= _tuning.BROADCAST_GRAM_MAX:  # tiny blocks: broadcasting beats GEMM calls
        return (z.unsqueeze(2) * G).sum(dim=1)
    return torch.matmul(z.unsqueeze(1), G).squeeze(1)


def prox_grad(C: torch.Tensor, G: torch.Tensor, lam: float, *, nonneg: bool,
              accelerate: bool, max_iter: int, tol: float, init: torch.Tensor | None,
              scale: float, check_every: int = 5, L: float | torch.Tensor | None = None,
              mask: torch.Tensor | None = None) -> LassoOutput:
    """Minimise ``1/2 z G z^T - c z^T + lam ||z||_1`` (+ ``z >= 0``) row by row.

    Parameters
    ----------
    C : (n, n_atoms) correlations ``X D^T``.
    G : (n_atoms, n_atoms) Gram matrix ``D D^T``, or (n, n_atoms, n_atoms), one per sample.
    lam : penalty. tol : stop a sample once ``kkt / scale <= tol``.
    init : (n, n_atoms) warm start or None (zeros).
    L : Lipschitz constant (float), or (n, 1) per sample; default top eigenvalue of G.
    mask : optional (n, n_atoms) 0/1 support restriction (entries outside it stay zero).
    """
    n = C.shape[0]
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
    zG = gram_times(z, Gb)
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
            z_new = prox(y - st * (yG - c), thresh, nonneg)
            if msk is not None:
                z_new = z_new * msk
            zG_new = gram_times(z_new, Gb)
            if accelerate:
                restart = ((y - z_new) * (z_new - z)).sum(dim=1, keepdim=True) > 0
                t = torch.where(restart, torch.ones_like(t), t_next)
            z_prev, zG_prev, z, zG = z, zG, z_new, zG_new
            it += 1
            if it == max_iter:
                break
        kkt_now = kkt_violation(z, c - zG, lam, nonneg, msk) / scale
        finished = kkt_now <= tol
    return LassoOutput(kkt_all, iters_all, done_all, codes=z_all)
