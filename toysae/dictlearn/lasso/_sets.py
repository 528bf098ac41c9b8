"""Codes on per-sample index sets: the algebra the working-set solver and the float64 polish
share.

A batch of codes on sets is a pair ``(S, values)`` of (n, m) tensors: sample ``i`` has
code ``values[i, j]`` on atom ``S[i, j]``; padding repeats an atom with an exact zero code,
so sums over a row need no mask. ``c`` (n, m) holds each sample's correlations ``x . d_j``
on its set and ``G`` (n, m, m) the Gram blocks of its atoms (:func:`gram_blocks`).

- products: :func:`set_times` (``z @ M``) and :func:`minus_gram_times` (``base - z G``);
- exact refits: :func:`refit_on_support` (one batched Cholesky solve on a given support and
  signs) and :func:`refit_if_better` (that refit, kept where it lowers the objective);
- checks: :func:`set_objective` and :func:`set_kkt`; :func:`row_counts` of a mask.
"""

from __future__ import annotations

import torch

from toysae._tuning import GRAM_CACHED_BYTES, GRAM_VIA_DICTIONARY
from toysae.dictionary_objective import objective_from_parts
from toysae.dictlearn.lasso._fista import gram_times


def row_counts(mask: torch.Tensor) -> torch.Tensor:
    """Row counts of a boolean (n, n_atoms) mask (summing bools would first copy to int64)."""
    return mask.view(torch.uint8).sum(dim=1, dtype=torch.int32).long()


def gram_blocks(G: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """(r, m, m) blocks ``G[S_i, S_i]`` of the Gram matrix, one gathered read."""
    n_atoms, m = G.shape[0], S.shape[1]
    flat = (S[:, :, None] * n_atoms + S[:, None, :]).reshape(-1)
    return G.reshape(-1).index_select(0, flat).view(-1, m, m)


def set_times(S: torch.Tensor, values: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """``z @ M`` for codes on index sets.

    The codes are ``z[i, S[i, j]] = values[i, j]``; padding entries must carry
    exact zeros. The product is a weighted ``embedding_bag`` (each output row is
    the weighted sum of the ``m`` rows of ``M`` its sample uses), several times
    faster on the CPU than a CSR product and never materialising ``z``.
    """
    return torch.nn.functional.embedding_bag(S, M, per_sample_weights=values, mode="sum")


def minus_gram_times(base: torch.Tensor, S: torch.Tensor, values: torch.Tensor,
                     G: torch.Tensor, D: torch.Tensor | None, *,
                     out: torch.Tensor) -> torch.Tensor:
    """``out = base - z G`` for codes on index sets (``base`` may be ``out``: in place).

    With the dictionary ``D`` (n_atoms, d) at hand, ``z G = (z D) D^T``: one dense
    product of ``d * n_atoms`` per row instead of gathering ``m`` rows of ``G`` (
    ``m * n_atoms`` memory reads), taken when ``m * GRAM_VIA_DICTIONARY > d`` and ``G``
    is too large for the cache (``GRAM_CACHED_BYTES``; ``toysae._tuning``). The two agree
    to rounding.
    """
    if (D is not None and S.shape[1] * GRAM_VIA_DICTIONARY > D.shape[1]
            and G.numel() * G.element_size() > GRAM_CACHED_BYTES):
        return torch.addmm(base, set_times(S, values, D), D.T, alpha=-1.0, out=out)
    return torch.sub(base, set_times(S, values, G), out=out)


def set_objective(c: torch.Tensor, G: torch.Tensor, z: torch.Tensor, lam: float) -> torch.Tensor:
    """Per-sample objective minus ``1/2 |x|^2`` on (n, m) sets: ``|x - zD|^2 - |x|^2 =
    z G z^T - 2 c . z`` is the squared residual up to that constant."""
    squared = gram_times(z, G).sub_(c, alpha=2.0).mul_(z).sum(dim=1)
    return objective_from_parts(squared, z.abs().sum(dim=1), lam)


def set_kkt(z_set: torch.Tensor, gS: torch.Tensor, top: torch.Tensor, lam: float,
            nonneg: bool) -> torch.Tensor:
    """Per-sample KKT violation of codes ``z_set`` (n, m) on sets that hold their whole
    support, from the responses on the set ``gS`` (n, m) and each sample's largest
    response over all atoms ``top`` (n,) (largest ``|g|`` if signed). Not divided by lam."""
    off = torch.clamp(top - lam, min=0.0)
    target = lam if nonneg else lam * torch.sign(z_set)
    on = torch.where(z_set != 0, (gS - target).abs(), torch.zeros_like(gS))
    return torch.maximum(off, on.amax(dim=1) if on.shape[1] else off)


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


def refit_if_better(c: torch.Tensor, G: torch.Tensor, z: torch.Tensor, lam: float,
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
