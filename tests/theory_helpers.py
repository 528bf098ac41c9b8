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


def test_scratch_rows_reuses_one_buffer_and_hands_out_its_leading_rows():
    from toysae.theory.problem import scratch_rows

    store: dict = {}
    a = scratch_rows(store, "s", 8, 5)
    b = scratch_rows(store, "s", 3, 5)  # a smaller chunk: the leading rows, same memory
    assert a.shape == (8, 5) and b.shape == (3, 5) and b.flags.c_contiguous
    assert np.shares_memory(a, b) and b.__array_interface__["data"] == a.__array_interface__["data"]
    c = scratch_rows(store, "s", 9, 5)  # more rows than kept: a new, larger buffer
    assert c.shape == (9, 5) and not np.shares_memory(a, c)
    assert scratch_rows(store, "s", 2, 4).shape == (2, 4)  # another width: new
    assert scratch_rows(store, "m", 2, 4, dtype=bool).dtype == bool
