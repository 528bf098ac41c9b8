"""Exact reference sparse coding with cvxpy: one DPP problem, re-solved per sample.

The problem is built once with the data vector as a ``cp.Parameter``; cvxpy
canonicalises a DPP-compliant problem a single time and every later solve only
substitutes the new parameter value, so the per-sample cost is the solver's.
"""

from __future__ import annotations

from typing import NamedTuple

import cvxpy as cp
import numpy as np

OPTIMAL = (cp.OPTIMAL,)


class CvxpyOutput(NamedTuple):
    codes: np.ndarray  # (n, n_atoms)
    statuses: list[str]
    n_iter: int  # largest solver iteration count over samples


class CvxpyLasso:
    """``min_z 1/2||x - z D||^2 + lam ||z||_1`` (``z >= 0`` if nonneg) for one x at a time."""

    def __init__(self, D: np.ndarray, lam: float, *, nonneg: bool):
        n_atoms, d = D.shape
        self.z = cp.Variable(n_atoms, nonneg=nonneg)
        self.x = cp.Parameter(d)
        penalty = cp.sum(self.z) if nonneg else cp.norm1(self.z)
        objective = 0.5 * cp.sum_squares(self.x - D.T @ self.z) + lam * penalty
        self.problem = cp.Problem(cp.Minimize(objective))
        if not self.problem.is_dpp():  # pragma: no cover - the construction above is DPP
            raise RuntimeError("the sparse-coding problem is not DPP")

    def solve(self, x: np.ndarray, solver: str, solver_options: dict,
              init: np.ndarray | None = None) -> tuple[np.ndarray, str, int]:
        self.x.value = x
        if init is not None:
            self.z.value = init
        try:
            self.problem.solve(solver=solver, warm_start=init is not None, **solver_options)
        except cp.error.SolverError as err:
            return np.full(self.z.shape, np.nan), f"solver_error: {err}", 0
        status = self.problem.status
        iters = self.problem.solver_stats.num_iters or 0
        if self.z.value is None:
            return np.full(self.z.shape, np.nan), status, iters
        return np.asarray(self.z.value, dtype=np.float64), status, int(iters)


def cvxpy_code(X: np.ndarray, D: np.ndarray, lam: float, *, nonneg: bool, solver: str,
               solver_options: dict, init: np.ndarray | None, zero_tol: float) -> CvxpyOutput:
    """Solve every row of ``X`` with one reused problem.

    Interior-point solvers never return exact zeros, so entries with
    ``|z| <= zero_tol * max(1, max|z|)`` are set to zero (which is what the
    support and KKT comparisons need); ``zero_tol=0`` keeps the raw solution.
    """
    lasso = CvxpyLasso(D, lam, nonneg=nonneg)
    codes = np.zeros((X.shape[0], D.shape[0]))
    statuses, max_iter = [], 0
    for i, x in enumerate(X):
        z, status, iters = lasso.solve(x, solver, solver_options,
                                       None if init is None else init[i])
        if nonneg:
            z = np.maximum(z, 0.0)
        codes[i] = z
        statuses.append(status)
        max_iter = max(max_iter, iters)
    if zero_tol > 0 and codes.size:
        finite = np.isfinite(codes)
        big = np.abs(codes[finite]).max() if finite.any() else 0.0
        codes[np.abs(codes) <= zero_tol * max(1.0, big)] = 0.0
    return CvxpyOutput(codes, statuses, max_iter)
