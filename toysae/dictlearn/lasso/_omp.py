"""Batched orthogonal matching pursuit (signed and nonnegative) on the Gram form.

Every sample of the batch picks its own atoms; the least-squares refit on the
support is one batched ``(n, s, s)`` solve per greedy step. Samples whose
support is already complete (or whose residual is zero) carry padding entries
with an identity Gram block and a zero right-hand side, which solve to zero.
Nonnegative OMP refits with nonnegative least squares (projected gradient on
the support) whenever the plain refit has a negative coefficient.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from toysae.dictlearn.lasso._fista import prox_grad


class OmpOutput(NamedTuple):
    codes: torch.Tensor  # (n, n_atoms)
    n_steps: torch.Tensor  # (n,) atoms selected per sample
    success: bool  # every nonnegative least-squares refit met its tolerance


def omp(C: torch.Tensor, G: torch.Tensor, x_norms: torch.Tensor, n_nonzero: int, *,
        nonneg: bool, rel_tol: float) -> OmpOutput:
    """Greedy coding with at most ``n_nonzero`` atoms per sample.

    C : (n, n_atoms) correlations ``X D^T``; G : (n_atoms, n_atoms) Gram ``D D^T``;
    x_norms : (n,) data norms (a sample stops once its best correlation is
    below ``rel_tol * ||x||``).
    """
    n, n_atoms = C.shape
    dev, dt = C.device, C.dtype
    support = torch.zeros(n, n_nonzero, dtype=torch.long, device=dev)
    valid = torch.zeros(n, n_nonzero, dtype=torch.bool, device=dev)
    z = torch.zeros_like(C)
    chosen = torch.zeros(n, n_atoms, dtype=torch.bool, device=dev)
    rows = torch.arange(n, device=dev)
    nnls_ok = True
    eye = torch.eye(n_nonzero, dtype=dt, device=dev)
    for step in range(n_nonzero):
        response = C - z @ G
        score = response if nonneg else response.abs()
        score = score.masked_fill(chosen, -torch.inf)
        best, atom = score.max(dim=1)
        alive = best > rel_tol * x_norms
        if step > 0:
            alive &= valid[:, step - 1]
        if not bool(alive.any()):
            break
        support[:, step] = torch.where(alive, atom, support[:, step])
        valid[:, step] = alive
        chosen[rows[alive], atom[alive]] = True
        s = step + 1
        S = support[:, :s]
        V = valid[:, :s].to(dt)
        pair = V[:, :, None] * V[:, None, :]
        Gs = G[S[:, :, None], S[:, None, :]] * pair + eye[:s, :s] * (1.0 - pair)
        cs = C.gather(1, S) * V
        coef = torch.linalg.solve(Gs, cs.unsqueeze(-1)).squeeze(-1) * V
        if nonneg and bool((coef < 0).any()):
            bad = (coef < 0).any(dim=1)
            mask = torch.zeros(int(bad.sum()), n_atoms, dtype=dt, device=dev)
            mask.scatter_add_(1, S[bad], V[bad])
            init = torch.zeros_like(mask).scatter_add_(1, S[bad], coef[bad].clamp(min=0.0))
            tol = 1e-12 if dt == torch.float64 else 1e-6
            fit = prox_grad(C[bad], G, 0.0, nonneg=True, accelerate=True, max_iter=5000,
                            tol=tol, init=init, scale=1.0, mask=mask)
            nnls_ok &= bool(fit.success.all())
            coef[bad] = fit.codes.gather(1, S[bad]) * V[bad]
        # scatter_add: padding entries point at atom 0 but carry exact zeros.
        z = torch.zeros_like(C).scatter_add_(1, S, coef)
        # A support atom refitted to exactly zero stays in the support (and out of the
        # candidates) so a sample cannot pick the same atom twice.
    n_steps = valid.sum(dim=1)
    return OmpOutput(z, n_steps, nnls_ok)
