"""``toysae.theory.wide_limit``: the wide limit is the per-sample minimum and is attained,
no dictionary beats it (hypothesis), and its results read like solver results."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from theory_helpers import LAM, dog_labrador_solved, problems, solve_codes, unit_rows

from toysae.dictionary_objective import dictionary_objective
from toysae.theory import Tolerances, check_optimality, wide_limit, wide_limit_gap

# --- wide limit ---------------------------------------------------------------------------

def test_wide_limit_is_the_per_sample_minimum_and_is_attained():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(12, 3)) * rng.uniform(0.05, 2, size=(12, 1))
    lam = 0.5
    res = wide_limit(X, lam)
    for n in range(len(X)):
        brute = minimize(lambda y, x=X[n]: 0.5 * ((x - y) ** 2).sum() + lam * np.linalg.norm(y),
                         x0=X[n] * 0.5, method="Nelder-Mead",
                         options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
        assert res.loss[n] == pytest.approx(brute.fun, rel=1e-6, abs=1e-9)
    assert 0 < res.active.sum() < len(X)  # some samples fall below lam: no atom
    # the dictionary of data directions attains the bound: gap 0
    D = unit_rows(X)
    Z = np.diag(np.maximum(np.linalg.norm(X, axis=1) - lam, 0))
    assert wide_limit_gap(X, D, Z, lam).gap == pytest.approx(0, abs=1e-12)
    # a small dictionary has a positive gap
    D2 = unit_rows(rng.normal(size=(2, 3)))
    assert wide_limit_gap(X, D2, solve_codes(X, D2, lam), lam).gap > 0.1


def test_one_dimensional_data_gives_the_antipodal_pair():
    x = np.linspace(-2, 2, 41)[:, None]
    D = np.array([[1.0], [-1.0]])
    Z = np.stack([np.maximum(x[:, 0] - LAM, 0), np.maximum(-x[:, 0] - LAM, 0)], axis=1)
    assert wide_limit_gap(x, D, Z, LAM).gap == pytest.approx(0, abs=1e-12)
    rep = check_optimality(x, D, Z, LAM, tolerances=Tolerances(code=1e-9, atom=1e-9,
                                                               pair=1e-9))
    assert rep.passed, rep.message
    # the pair sits on the boundary of its hull: c = -1 = min s_nj
    assert rep.pairs.cos[0, 1] == -1 and rep.pairs.hull_low[0, 1] == pytest.approx(-1)


FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(problems(n=(1, 20), d=(1, 4), k=(1, 12)), st.booleans(), st.integers(0, 2**32 - 1),
       st.booleans())
def test_no_dictionary_beats_the_wide_limit(problem, nonneg, seed, with_bias):
    X, D, lam = problem
    rng = np.random.default_rng(seed)
    bound = wide_limit(X, lam, bias=with_bias)
    assert bound.success
    bias = rng.normal(size=X.shape[1]) if with_bias else None
    Z_rand = rng.exponential(size=(len(X), len(D))) * (rng.uniform(size=(len(X), len(D))) < .4)
    if not nonneg:
        Z_rand *= rng.choice([-1, 1], size=Z_rand.shape)
    target = X if bias is None else X - bias
    for Z in (Z_rand, solve_codes(target, D, lam, nonneg=nonneg)):
        assert dictionary_objective(X, D, Z, lam, bias=bias) >= bound.bound - 1e-9
    gap = wide_limit_gap(X, D, Z, lam, bias=bias)
    assert gap.gap >= -1e-9 and gap.bound == pytest.approx(bound.bound)


def test_wide_limit_results_are_solver_like():
    X, F, Z = dog_labrador_solved()
    res = wide_limit(X, LAM)
    assert res.success and res.message.endswith("get an atom (closed form)")
    with_bias = wide_limit(X, LAM, bias=True)
    assert with_bias.success and "(optimal bias by L-BFGS: " in with_bias.message
    gap = wide_limit_gap(X, F, Z, LAM)
    assert gap.success and f"{gap.gap:.4g} above the wide-limit bound" in gap.message


def test_wide_limit_refuses_what_has_no_finite_bound_and_scales_without_overflow():
    with pytest.raises(ValueError, match="X has no samples"):
        wide_limit(np.zeros((0, 4)), 0.1, bias=True)
    assert wide_limit(np.zeros((0, 4)), 0.1).bound == 0.0  # no samples, no loss
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 4))
    with pytest.raises(ValueError, match="X and lam: the wide-limit bound can overflow"):
        wide_limit(X * 1e200, 1e200)
    # Rows of 1e200 at a small lam: the closed form is exact where squaring would overflow.
    big = wide_limit(X * 1e200, 0.5)
    exact = 0.5 * np.linalg.norm(X, axis=1) * 1e200 - 0.125
    np.testing.assert_allclose(big.loss, exact, rtol=1e-12)
    assert np.isfinite(big.reconstruction).all()
