"""Dictionary updates for a fixed set of codes, one function per rule.

All work in float64 numpy on the row layout (``D`` is ``(n_atoms, d)``) and
return a dictionary with unit rows; an atom whose update is undefined (never
used) keeps its previous value and is left for dead-atom resampling.

- :func:`bcd_update`: block coordinate descent on the accumulated statistics
  ``A = sum z z^T`` and ``B = sum z^T x`` (Mairal, Bach, Ponce & Sapiro,
  "Online learning for matrix factorization and sparse coding", JMLR 2010,
  Algorithm 2), with the unit-ball projection replaced by the unit sphere.
- :func:`mod_update`: the method of optimal directions (Engan, Aase & Husoy,
  1999): the least-squares ``D = A^-1 B``, then rows renormalised.
- :func:`ksvd_update`: K-SVD (Aharon, Elad & Bruckstein, 2006) with the rank-1
  fit of each atom's restricted residual done by a few power iterations
  started at the current atom (the "approximate K-SVD" of Rubinstein,
  Zibulevsky & Elad, 2008); nonnegative codes keep the rank-1 factor whose
  code part is mostly positive and clip the rest (Aharon et al.'s NN-K-SVD).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg.blas import get_blas_funcs

_EPS = 1e-12


def _normalise_rows(U: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(U, axis=1, keepdims=True)
    ok = norms[:, 0] > _EPS
    out = fallback.copy()
    out[ok] = U[ok] / norms[ok]
    return out


def bcd_update(D: np.ndarray, A: np.ndarray, B: np.ndarray, *, n_sweeps: int = 1) -> np.ndarray:
    """Gauss-Seidel sweeps over atoms minimising ``1/2 tr(D^T A D) - tr(D^T B)`` on the sphere.

    D : (n_atoms, d) current dictionary; A : (n_atoms, n_atoms); B : (n_atoms, d).
    Returns a new array in the arguments' dtype. Atom ``j``'s update is the normalised
    ``D_j + (B_j - A_j D) / A_jj``: one BLAS ``gemv`` reading all of ``D``,
    which is what a sweep costs (float32 arguments halve it).
    """
    D = np.array(D, order="C")
    diag = np.diag(A)
    used = diag > _EPS * max(1.0, diag.max(initial=0.0))
    inv_diag = np.divide(1.0, diag, out=np.zeros_like(diag), where=used)
    gemv, nrm2 = get_blas_funcs(("gemv", "nrm2"), (D,))
    DT = D.T  # a Fortran-ordered view: BLAS reads D in place, updates included
    for _ in range(n_sweeps):
        # D_j + B_j / A_jj, with D_j as it stands before atom j's own turn.
        start = D + inv_diag[:, None] * B
        for j in np.flatnonzero(used):
            u = gemv(-inv_diag[j], DT, A[j], beta=1.0, y=start[j])
            norm = nrm2(u)
            if norm > _EPS:
                D[j] = u / norm
    return D


def mod_update(D: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Least-squares dictionary ``argmin_D 1/2 tr(D^T A D) - tr(D^T B)``, rows renormalised.

    A tiny ridge keeps the solve defined when some atoms are unused; those
    atoms come out (near) zero and keep their old value.
    """
    n_atoms = A.shape[0]
    used = np.diag(A) > _EPS * max(1.0, np.diag(A).max(initial=0.0))
    ridge = 1e-10 * max(np.trace(A) / max(n_atoms, 1), _EPS)
    U = np.linalg.solve(A + ridge * np.eye(n_atoms), B)
    U[~used] = 0.0
    return _normalise_rows(U, D)


def ksvd_update(D: np.ndarray, X: np.ndarray, Z: np.ndarray, *, nonneg: bool,
                n_power: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """One K-SVD sweep: each used atom and its codes become the rank-1 fit of its residual.

    X : (n, d) batch; Z : (n, n_atoms) codes from OMP. Returns ``(D, Z)`` updated.
    """
    D = D.copy()
    Z = Z.copy()
    R = X - Z @ D
    for j in range(D.shape[0]):
        users = np.flatnonzero(Z[:, j])
        if users.size == 0:
            continue
        E = R[users] + np.outer(Z[users, j], D[j])
        v = D[j]
        for _ in range(n_power):
            v = E.T @ (E @ v)
            norm = np.linalg.norm(v)
            if norm <= _EPS:
                break
            v = v / norm
        else:
            u = E @ v
            if nonneg:
                if u.sum() < 0:
                    u, v = -u, -v
                u = np.maximum(u, 0.0)
                # One alternating step of the constrained rank-1 fit after clipping.
                w = E.T @ u
                norm = np.linalg.norm(w)
                if norm > _EPS:
                    v = w / norm
                    u = np.maximum(E @ v, 0.0)
            D[j] = v
            Z[users, j] = u
            R[users] = E - np.outer(u, v)
    return D, Z
