"""``toysae.theory.conditions``: the code KKT conditions and the bias condition on hand-made
cases (each passes where it must and flags where it must), and as theorems of
docs/theory.md on random small problems (hypothesis): exact codes and converged
``sparse_code`` solutions satisfy the code KKT conditions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from theory_helpers import LAM, dog_labrador, objective, problems, solve_codes, unit_rows

from toysae._threads import torch_threads
from toysae.dictlearn import sparse_code
from toysae.theory import atom_stationarity, bias_condition, check_optimality, code_kkt

# --- code KKT -----------------------------------------------------------------------------

def test_code_kkt_holds_for_exact_codes_and_flags_wrong_ones():
    rng = np.random.default_rng(0)
    X, D = rng.normal(size=(30, 4)), unit_rows(rng.normal(size=(6, 4)))
    for nonneg in (True, False):
        Z = solve_codes(X, D, LAM, nonneg=nonneg)
        assert code_kkt(X, D, Z, LAM, nonneg=nonneg, tol=1e-9).passed
        # doubled codes: on-support violation; zero codes: off-support violation
        bad = code_kkt(X, D, 2 * Z, LAM, nonneg=nonneg)
        assert not bad.passed and bad.on_support_max > 1
        off = code_kkt(X, D, np.zeros_like(Z), LAM, nonneg=nonneg)
        assert not off.passed and off.on_support_max == 0 and off.off_support_max > 1
        # the matrix agrees with the definition entry by entry
        S = (X - Z @ D) @ D.T / LAM
        expect = np.where(Z != 0, np.abs(S - np.sign(Z) if not nonneg else S - 1),
                          np.maximum((np.abs(S) if not nonneg else S) - 1, 0))
        rep = code_kkt(X, D, Z * 1.1, LAM, nonneg=nonneg)
        S = (X - 1.1 * Z @ D) @ D.T / LAM
        expect = np.where(Z != 0, np.abs(S - (np.sign(Z) if not nonneg else 1)),
                          np.maximum((np.abs(S) if not nonneg else S) - 1, 0))
        assert np.allclose(rep.violation, expect)
        n, k = rep.worst[0][:2]
        assert rep.worst[0][2] == pytest.approx(expect.max()) == expect[n, k]


# --- atom stationarity: the dog leaves the labrador in its residuals ---------------------

def test_dog_atom_leaving_labrador_in_residuals_is_flagged():
    X, F, _ = dog_labrador()
    # dictionary has a labrador atom, but the codes never use it
    Z = np.zeros((len(X), 2))
    Z[:, 0] = solve_codes(X, F[:1], LAM)[:, 0]
    rep = atom_stationarity(X, F, Z, LAM)
    assert not rep.passed
    assert rep.violation[0] > 0.1 and rep.violation[1] == 0 and not rep.alive[1]
    assert rep.nearest_atom[0] == 1 and rep.nearest_cos[0] > 0.9
    # the direction is the tangential part of R_0 = sum_n z_n0 r_n
    R0 = Z[:, 0] @ (X - Z @ F)
    T = R0 - (R0 @ F[0]) * F[0]
    assert np.allclose(rep.direction[0], T / np.linalg.norm(T))
    assert rep.violation[0] == pytest.approx(np.linalg.norm(T) / (LAM * Z[:, 0].sum()))


# --- decoder bias -------------------------------------------------------------------------

def test_bias_condition_flags_a_wrong_bias_and_passes_the_optimal_one():
    rng = np.random.default_rng(4)
    x = rng.normal(0.7, 1.0, size=(80, 1))
    D = np.array([[1.0], [-1.0]])

    def loss(b):
        return objective(x, D, solve_codes(x - b, D, LAM), LAM, bias=b)

    b = minimize(lambda v: loss(v), x0=[0.5], method="Nelder-Mead",
                 options={"xatol": 1e-12, "fatol": 1e-14}).x
    Z = solve_codes(x - b, D, LAM)
    good = bias_condition(x, D, Z, LAM, b)
    assert good.passed and good.violation < 1e-5
    bad = bias_condition(x, D, solve_codes(x, D, LAM), LAM, np.zeros(1) + 0.3)
    assert not bad.passed
    rep = check_optimality(x, D, Z, LAM, decoder_bias=True, bias=b)
    assert rep.bias is not None and rep.bias.passed
    with pytest.raises(ValueError, match="decoder_bias=True needs the bias"):
        check_optimality(x, D, Z, LAM, decoder_bias=True)


FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(problems(), st.booleans())
def test_exact_codes_satisfy_code_kkt(problem, nonneg):
    X, D, lam = problem
    Z = solve_codes(X, D, lam, nonneg=nonneg)
    rep = code_kkt(X, D, Z, lam, nonneg=nonneg, tol=1e-9)
    assert rep.passed, rep.worst


def test_sparse_code_solutions_satisfy_code_kkt():
    rng = np.random.default_rng(0)
    X, D = rng.normal(size=(20, 4)), unit_rows(rng.normal(size=(5, 4)))
    for nonneg in (True, False):
        with torch_threads(1):
            sol = sparse_code(X, D, 0.2, method="fista", nonneg=nonneg, dtype=torch.float64,
                              tol=1e-10, max_iter=20000)
        assert sol.success
        assert code_kkt(X, D, sol.codes, 0.2, nonneg=nonneg, tol=1e-8).passed
        # the same codes, perturbed, are flagged
        assert not code_kkt(X, D, sol.codes * 0.9, 0.2, nonneg=nonneg).passed
