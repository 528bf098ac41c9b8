"""``toysae.dictlearn.lasso._cvxpy_solver``: the exact reference. Two cvxpy backends agree;
one DPP problem re-solved per sample gives each sample's own solution; interior-point
dust is zeroed only below ``zero_tol``; a solver error is a status and NaN codes, never
codes that look solved."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch
from problems import dense_reference, random_problem

from toysae.dictlearn import sparse_code
from toysae.dictlearn.lasso._cvxpy_solver import OPTIMAL, CvxpyLasso, cvxpy_code

TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}


def test_cvxpy_other_solver_agrees():
    X, D, _ = random_problem(13, n=4)
    a = sparse_code(X, D, 0.1, method="cvxpy", dtype=torch.float64)
    b = sparse_code(X, D, 0.1, method="cvxpy", solver="SCS", dtype=torch.float64,
                    solver_options={"eps": 1e-9})
    assert abs(a.objective - b.objective) <= 1e-5 * a.objective


@pytest.mark.parametrize("nonneg", [True, False])
def test_each_sample_gets_its_own_optimum_from_the_one_problem(nonneg):
    X, D, _ = random_problem(30, n=6, signed=not nonneg)
    out = cvxpy_code(X, D, 0.1, nonneg=nonneg, solver="CLARABEL", solver_options=TIGHT,
                     init=None, zero_tol=1e-9)
    assert out.statuses == [cp.OPTIMAL] * 6 and set(out.statuses) <= set(OPTIMAL)
    assert out.codes.shape == (6, 32) and out.n_iter > 0
    ref = dense_reference(torch.tensor(X), torch.tensor(D), torch.tensor(D @ D.T), 0.1, nonneg)
    np.testing.assert_allclose(out.codes, ref.codes.numpy(), atol=1e-7)
    # the rows in reverse order: the reused problem carries nothing from one sample to the next
    back = cvxpy_code(X[::-1], D, 0.1, nonneg=nonneg, solver="CLARABEL", solver_options=TIGHT,
                      init=None, zero_tol=1e-9)
    np.testing.assert_allclose(back.codes[::-1], out.codes, atol=1e-9)
    if nonneg:
        assert (out.codes >= 0).all()


def test_only_entries_below_zero_tol_are_zeroed():
    X, D, _ = random_problem(31, n=4)
    raw = cvxpy_code(X, D, 0.1, nonneg=False, solver="CLARABEL", solver_options=TIGHT,
                     init=None, zero_tol=0.0)
    dust = np.abs(raw.codes[(raw.codes != 0) & (np.abs(raw.codes) < 1e-8)])
    assert dust.size > 4, "the interior-point solution has no dust to zero: nothing is tested"
    big = max(1.0, np.abs(raw.codes).max())
    zero_tol = float(np.median(dust)) / big  # a cut through the dust: some each side
    cut = cvxpy_code(X, D, 0.1, nonneg=False, solver="CLARABEL", solver_options=TIGHT,
                     init=None, zero_tol=zero_tol)
    small = np.abs(raw.codes) <= zero_tol * big
    assert (raw.codes[small] != 0).any() and (np.abs(raw.codes[~small]) < 1e-8).any()
    assert (cut.codes[small] == 0).all()
    np.testing.assert_array_equal(cut.codes[~small], raw.codes[~small])


def test_a_solver_error_is_a_status_and_nan_codes(monkeypatch):
    X, D, _ = random_problem(32, n=3)

    def fail(self, *args, **kwargs):
        raise cp.error.SolverError("the backend gave up")

    monkeypatch.setattr(cp.Problem, "solve", fail)
    out = cvxpy_code(X, D, 0.1, nonneg=True, solver="CLARABEL", solver_options={}, init=None,
                     zero_tol=1e-9)
    assert out.statuses == ["solver_error: the backend gave up"] * 3
    assert np.isnan(out.codes).all() and out.n_iter == 0


def test_the_problem_is_dpp_with_the_data_as_its_parameter():
    _, D, _ = random_problem(33)
    lasso = CvxpyLasso(D, 0.1, nonneg=True)
    assert lasso.problem.is_dpp() and isinstance(lasso.x, cp.Parameter)
    assert lasso.x.shape == (16,) and lasso.z.shape == (32,) and lasso.z.is_nonneg()
    assert not CvxpyLasso(D, 0.1, nonneg=False).z.is_nonneg()
