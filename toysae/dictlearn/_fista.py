"""Batched proximal-gradient sparse coding in torch (FISTA with adaptive restart, ISTA).

Everything works on the Gram form of the objective: with ``C = X D^T`` and
``G = D D^T`` the smooth part of ``1/2||x - zD||^2`` has gradient ``zG - c``, so
one iteration costs one ``(n, k) @ (k, k)`` product and never touches ``d``.

Momentum is kept per sample: each sample has its own ``t`` and restarts on its
own (the gradient restart test of O'Donoghue & Candes, "Adaptive restart for
accelerated gradient schemes", 2015), and a sample leaves the active batch as
soon as its KKT gap is below ``tol``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class ProxGradOutput(NamedTuple):
    codes: torch.Tensor  # (n, k)
    kkt: torch.Tensor  # (n,) scaled KKT gap of each sample
    n_iter: torch.Tensor  # (n,) iterations each sample ran
    converged: torch.Tensor  # (n,) bool


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


def prox_grad(C: torch.Tensor, G: torch.Tensor, lam: float, *, nonneg: bool,
              accelerate: bool, max_iter: int, tol: float, init: torch.Tensor | None,
              scale: float, check_every: int = 5, L: float | None = None,
              mask: torch.Tensor | None = None) -> ProxGradOutput:
    """Minimise ``1/2 z G z^T - c z^T + lam ||z||_1`` (+ ``z >= 0``) row by row.

    Parameters
    ----------
    C : (n, k) correlations ``X D^T``.
    G : (k, k) Gram matrix ``D D^T``.
    lam : penalty. tol : stop a sample once ``kkt / scale <= tol``.
    init : (n, k) warm start or None (zeros). mask : optional (n, k) 0/1
        support restriction (entries outside it stay zero).
    """
    n, k = C.shape
    if L is None:
        L = lipschitz(G)
    step = 1.0 / L
    thresh = lam * step
    z_all = torch.zeros_like(C) if init is None else init.clone()
    if nonneg:
        z_all.clamp_(min=0.0)
    if mask is not None:
        z_all = z_all * mask
    kkt_all = torch.full((n,), math.inf, dtype=C.dtype, device=C.device)
    iters_all = torch.zeros(n, dtype=torch.long, device=C.device)
    done_all = torch.zeros(n, dtype=torch.bool, device=C.device)

    active = torch.arange(n, device=C.device)
    c, msk = C, mask
    z = z_all
    zG = z @ G
    # Converged-at-start samples (e.g. a perfect warm start) do no iterations.
    kkt_now = kkt_violation(z, c - zG, lam, nonneg, msk) / scale
    z_prev, zG_prev = z, zG
    t = torch.ones(n, 1, dtype=C.dtype, device=C.device)
    it = 0
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
        for _ in range(check_every):
            if accelerate:
                t_next = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * t * t))
                beta = (t - 1.0) / t_next
                y = z + beta * (z - z_prev)
                yG = zG + beta * (zG - zG_prev)
            else:
                y, yG = z, zG
            z_new = _prox(y - step * (yG - c), thresh, nonneg)
            if msk is not None:
                z_new = z_new * msk
            zG_new = z_new @ G
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
