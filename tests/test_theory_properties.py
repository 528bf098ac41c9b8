"""Property-based tests of the optimality theory (hypothesis).

Each property is a theorem of docs/theory.md checked on random small problems:
exact codes satisfy the code KKT conditions, converged dictionaries are
stationary, every nested pair has a certified descent step, exclusive
features are never flagged, nothing beats the wide-limit bound, and the
reported violations bound every first-order decrease (tightly).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from theory_helpers import (
    finite,
    learn_dictionary,
    objective,
    problems,
    solve_codes,
    unit_rows,
)

from toysae._threads import torch_threads
from toysae.dictionary_objective import dictionary_objective
from toysae.dictlearn import sparse_code
from toysae.theory import (
    Tolerances,
    check_optimality,
    code_kkt,
    hierarchy_certificate,
    wide_limit,
    wide_limit_gap,
)

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TIGHT = Tolerances(code=1e-8, atom=1e-7, pair=1e-7, bias=1e-7)


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


@st.composite
def coactive_problems(draw):
    """(X, D0, lam, nonneg) whose converged dictionaries have atoms that fire together: two
    or three planted unit atoms in 2 or 3 dimensions, each sample a mix of a random subset
    of them (signed for signed codes) plus noise, and a start D0 near the planted atoms.
    Generic random problems mostly converge to one live atom (12 of the 15 drawn examples
    did), where the pair and hierarchy checks have no pair to look at."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    d, k, n = draw(st.integers(2, 3)), draw(st.integers(2, 3)), draw(st.integers(6, 20))
    nonneg = draw(st.booleans())
    F = unit_rows(rng.normal(size=(k, d)))
    Z = rng.uniform(0.5, 2.0, (n, k)) * (rng.uniform(size=(n, k)) < 0.7)
    if not nonneg:
        Z *= rng.choice([-1.0, 1.0], size=Z.shape)
    X = Z @ F + draw(finite(0, 0.3)) * rng.normal(size=(n, d))
    D0 = unit_rows(F + 0.3 * rng.normal(size=F.shape))
    return X, D0, draw(finite(0.05, 0.5)), nonneg


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(coactive_problems())
def test_converged_dictionaries_pass_every_check(problem):
    X, D0, lam, nonneg = problem
    assume(np.linalg.norm(X, axis=1).max() > 2 * lam)  # something to represent
    D, Z, converged = learn_dictionary(X, D0, lam, nonneg=nonneg, max_outer=1500)
    assume(converged)
    # not a vacuous state: two live atoms fire together on some sample, so the pair and
    # hierarchy checks had a co-active pair to judge (nested or not)
    on = (Z != 0).astype(float)
    together = on.T @ on
    np.fill_diagonal(together, 0)
    assume(together.any())
    rep = check_optimality(X, D, Z, lam, nonneg=nonneg, tolerances=TIGHT)
    assert (rep.pairs.coactive_mass > 0).any() and rep.pairs.alive.sum() >= 2
    # at a stationary point no nested pair can exist either (its step is a
    # feasible direction of first-order decrease lam * mass_i * (1 - c_ij))
    assert rep.atoms.passed and rep.code.passed and rep.pairs.passed and rep.hierarchy.passed, (
        rep.message)


@st.composite
def hierarchies(draw):
    """Data, dictionary and nonnegative codes in which atom 1 only fires where atom 0 fires."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    d = draw(st.integers(2, 4))
    n = draw(st.integers(3, 25))
    k = draw(st.integers(2, 5))
    D = unit_rows(rng.normal(size=(k, d)))
    assume(D[0] @ D[1] < 0.999)
    Z = rng.uniform(0, 1, size=(n, k)) * (rng.uniform(size=(n, k)) < 0.5)
    Z[:, 0] = rng.uniform(0.1, 2, size=n) * (rng.uniform(size=n) < 0.8)
    Z[:, 0][0] = 1.0
    Z[:, 1] = rng.uniform(0.05, 2, size=n) * (Z[:, 0] > 0) * (rng.uniform(size=n) < 0.6)
    Z[0, 1] = 0.5
    noise = draw(finite(0, 1))
    X = Z @ D + noise * rng.normal(size=(n, d))
    lam = draw(finite(0.01, 1))
    return X, D, Z, lam


@FAST
@given(hierarchies())
def test_every_constructed_hierarchy_has_a_strict_certified_descent_step(case):
    X, D, Z, lam = case
    rep = hierarchy_certificate(X, D, Z, lam)
    (step,) = [s for s in rep.steps if (s.child, s.parent) == (1, 0)]
    before = dictionary_objective(X, D, Z, lam)
    D2, Z2 = step.apply(D, Z)
    after = dictionary_objective(X, D2, Z2, lam)
    assert after < before
    assert before - after == pytest.approx(step.verified_drop, rel=1e-7, abs=1e-12)
    assert step.verified_drop == pytest.approx(step.predicted_drop, rel=1e-7, abs=1e-12)
    assert Z2.min() >= 0 and np.abs(Z2 @ D2 - Z @ D).max() < 1e-9
    assert np.linalg.norm(D2, axis=1) == pytest.approx(np.ones(len(D)))
    assert (Z2[step.absorbed_samples, 0] == 0).all() and len(step.absorbed_samples) > 0
    # the same nesting is flagged by the pair conditions as a hull failure
    assert not check_optimality(X, D, Z, lam).passed


@st.composite
def exclusive(draw):
    """One feature per sample, magnitudes above lam: features exactly at an optimum."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    d = draw(st.integers(2, 5))
    k = draw(st.integers(2, 6))
    F = unit_rows(rng.normal(size=(k, d)))
    C = F @ F.T - 2 * np.eye(k)
    assume(C.max() < 0.98)
    n = draw(st.integers(k, 30))
    lam = draw(finite(0.05, 0.5))
    which = np.concatenate([np.arange(k), rng.integers(0, k, size=n - k)])
    mags = lam + rng.uniform(0.01, 2, size=n)
    Z = np.zeros((n, k))
    Z[np.arange(n), which] = mags - lam
    X = mags[:, None] * F[which]
    return X, F, Z, lam


@FAST
@given(exclusive())
def test_mutually_exclusive_features_are_never_flagged(case):
    X, F, Z, lam = case
    rep = check_optimality(X, F, Z, lam, tolerances=TIGHT)
    assert rep.passed, rep.message
    assert rep.hierarchy.n_nested == 0 and not rep.pairs.nested.any()


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


def _loss_along(X, D, Z, b, lam, E, V, beta, t):
    D_t = D + t * V
    D_t /= np.linalg.norm(D_t, axis=1, keepdims=True)
    return objective(X, D_t, Z + t * E, lam, bias=None if b is None else b + t * beta)


@FAST
@given(problems(n=(3, 15), d=(2, 4), k=(1, 4)), st.integers(0, 2**32 - 1), st.booleans(),
       st.booleans())
def test_first_order_decrease_is_bounded_by_the_reported_violations(problem, seed, nonneg,
                                                                    with_bias):
    X, D, lam = problem
    rng = np.random.default_rng(seed)
    n, k = len(X), len(D)
    # any state, converged or not: the bound is a statement about every point
    Z = solve_codes(X, D, lam, nonneg=nonneg, max_sweeps=rng.integers(1, 50))
    Z[:, 0] *= rng.uniform(0.5, 1.5)
    b = rng.normal(size=X.shape[1]) * 0.3 if with_bias else None
    rep = check_optimality(X, D, Z, lam, nonneg=nonneg, decoder_bias=with_bias, bias=b)
    Vc = code_kkt(X, D, Z, lam, nonneg=nonneg, bias=b, keep_matrix=True).violation
    gnorm = rep.atoms.gradient_norm
    bias_rate = n * lam * rep.bias.violation if with_bias else 0.0

    def rate(E, V, beta):
        # one-sided derivative (the L1 term is not differentiable), with a
        # Richardson step removing the O(t) curvature term
        base = _loss_along(X, D, Z, b, lam, E, V, beta, 0.0)

        def diff(t):
            return (_loss_along(X, D, Z, b, lam, E, V, beta, t) - base) / t

        return 2 * diff(5e-7) - diff(1e-6)

    scale = 1e-5 * (1 + objective(X, D, Z, lam, bias=b))
    for _ in range(5):  # random feasible tangent directions
        E = rng.normal(size=(n, k))
        if nonneg:
            E[Z == 0] = np.abs(E[Z == 0])
        V = rng.normal(size=(k, X.shape[1]))
        V -= np.einsum("kd,kd->k", V, D)[:, None] * D
        beta = rng.normal(size=X.shape[1]) if with_bias else np.zeros(X.shape[1])
        bound = (lam * (Vc * np.abs(E)).sum() + gnorm @ np.linalg.norm(V, axis=1)
                 + bias_rate * np.linalg.norm(beta))
        assert rate(E, V, beta) >= -bound - scale
    # the steepest direction the report describes attains the bound: not over-reported
    S = (X - Z @ D - (0 if b is None else b)) @ D.T / lam
    if nonneg:
        E = np.where(Z > 0, np.sign(S - 1), (S > 1).astype(float))
    else:
        E = np.where(Z != 0, np.sign(S - np.sign(Z)), np.sign(S) * (np.abs(S) > 1))
    V = rep.atoms.direction
    beta = np.zeros(X.shape[1])
    if with_bias and rep.bias.violation > 0:
        beta = rep.bias.mean_residual / np.linalg.norm(rep.bias.mean_residual)
    bound = (lam * (Vc * np.abs(E)).sum() + gnorm @ np.linalg.norm(V, axis=1)
             + bias_rate * np.linalg.norm(beta))
    assert rate(E, V, beta) == pytest.approx(-bound, abs=10 * scale)
