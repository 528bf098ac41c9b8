"""Test-local helpers for the theory tests (no tests here).

``solve_codes`` is an exact coordinate-descent lasso for tiny problems and
``learn_dictionary`` alternates it with exact block-coordinate atom updates;
they are independent of ``toysae`` so the checkers are tested against
optimisation done another way.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


def unit_rows(A: np.ndarray) -> np.ndarray:
    return A / np.linalg.norm(A, axis=1, keepdims=True)


def objective(X, D, Z, lam, bias=None):
    R = X - Z @ D - (0 if bias is None else bias)
    return 0.5 * float((R * R).sum()) + lam * float(np.abs(Z).sum())


def solve_codes(X, D, lam, *, nonneg=True, Z=None, max_sweeps=20000, tol=1e-14):
    """Exact lasso by cyclic coordinate descent (unit atoms: each update is a soft threshold)."""
    n, k = X.shape[0], D.shape[0]
    Z = np.zeros((n, k)) if Z is None else Z.copy()
    R = X - Z @ D
    for _ in range(max_sweeps):
        change = 0.0
        for j in range(k):
            z = Z[:, j] + R @ D[j]
            new = np.maximum(z - lam, 0.0) if nonneg else np.sign(z) * np.maximum(
                np.abs(z) - lam, 0.0)
            delta = new - Z[:, j]
            if delta.any():
                R -= np.outer(delta, D[j])
                Z[:, j] = new
                change = max(change, float(np.abs(delta).max()))
        if change < tol:
            break
    return Z


def learn_dictionary(X, D0, lam, *, nonneg=True, max_outer=4000, tol=1e-12):
    """Alternate exact codes and exact per-atom updates ``d_k = normalise(R_k + |z_k|^2 d_k)``.

    Returns (D, Z, converged). On the sphere the quadratic term ``|z_k|^2 |d_k|^2``
    is constant, so this per-atom update is the exact minimiser of the loss in d_k.
    """
    D = D0.copy()
    Z = solve_codes(X, D, lam, nonneg=nonneg)
    for _ in range(max_outer):
        D_old = D.copy()
        R = X - Z @ D
        for j in range(D.shape[0]):
            U = Z[:, j] @ R + (Z[:, j] @ Z[:, j]) * D[j]
            norm = np.linalg.norm(U)
            if norm > 0:
                new = U / norm
                R -= np.outer(Z[:, j], new - D[j])
                D[j] = new
        Z = solve_codes(X, D, lam, nonneg=nonneg, Z=Z)
        if np.abs(D - D_old).max() < tol:
            return D, Z, True
    return D, Z, False


def finite(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def problems(draw, *, n=(4, 24), d=(2, 4), k=(1, 5)):
    """(X, D, lam): Gaussian-ish data, a random unit-row dictionary, a penalty."""
    n_s = draw(st.integers(*n))
    dim = draw(st.integers(*d))
    n_atoms = draw(st.integers(*k))
    X = draw(hnp.arrays(np.float64, (n_s, dim), elements=finite(-3, 3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    D = unit_rows(rng.normal(size=(n_atoms, dim)))
    lam = draw(finite(0.05, 1.0))
    return X, D, lam


# -- hand-made problems shared by the theory tests ------------------------------------
#: The lasso coefficient of the hand-made problems.
LAM = 0.1


def dog_labrador(seed=0, n=60):
    """Parent 'dog' always on, child 'labrador' on a third of the dog samples."""
    rng = np.random.default_rng(seed)
    F = np.array([[1.0, 0.0, 0.0], [0.3, 0.95, 0.0]])
    F = unit_rows(F)
    dog = rng.uniform(1.0, 2.0, n)
    lab = (rng.uniform(size=n) < 0.35) * rng.uniform(0.5, 1.5, n)
    X = np.outer(dog, F[0]) + np.outer(lab, F[1])
    return X, F, np.stack([dog, lab], axis=1)


def dog_labrador_solved(n=40):
    """A dog/labrador pair of 40 samples (other draws) with exact lasso codes at LAM."""
    rng = np.random.default_rng(0)
    F = unit_rows(np.array([[1.0, 0.0, 0.0], [0.3, 0.95, 0.0]]))
    dog = rng.uniform(1.0, 2.0, n)
    lab = (rng.uniform(size=n) < 0.35) * rng.uniform(0.5, 1.5, n)
    X = np.outer(dog, F[0]) + np.outer(lab, F[1])
    return X, F, solve_codes(X, F, LAM)


def messy_state(seed: int, *, nonneg: bool = True, n: int = 300, k: int = 24):
    """A state that fails in several ways: codes without shrinkage (not optimal), atoms 0
    and 1 at cosine 0.5 with atom 1 firing only with atom 0 (nested), atoms 5 and 6 at
    cosine -0.4, and an orthogonal pair (2, 3) that never co-fires but whose hull fails:
    wherever atom 2 fires the residual leans toward d_3 by 0.2 to 0.6 lam."""
    rng = np.random.default_rng(seed)
    D = np.linalg.qr(rng.normal(size=(k + 2, k)))[0].T  # orthonormal rows
    D[1] = unit_rows((D[1] + 0.58 * D[0])[None])[0]
    D[5] = unit_rows((D[5] - 0.44 * D[6])[None])[0]
    Z = rng.uniform(0.2, 1.5, (n, k)) * (rng.uniform(size=(n, k)) < 0.15)
    Z[:, 1] *= Z[:, 0] > 0
    Z[:, 3] *= Z[:, 2] == 0
    if not nonneg:
        Z[:, 4:] *= rng.choice([-1.0, 1.0], size=(n, k - 4))
    X = Z @ D + 0.001 * rng.normal(size=(n, k + 2))
    on2 = Z[:, 2] != 0
    X[on2] += LAM * rng.uniform(0.2, 0.6, size=(on2.sum(), 1)) * D[3]
    return X, D, Z


def flagged(rep, mask):
    """Set of pairs (i, j) where ``mask`` holds, from an all-pairs or a list report."""
    if rep.pairs is None:
        return {(int(i), int(j)) for i, j in zip(*np.nonzero(mask), strict=True)}
    return {(int(i), int(j)) for i, j in rep.pairs[mask]}
