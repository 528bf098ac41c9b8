"""``toysae.theory.report``: ``check_optimality`` on hand-made, learned and large states
(rows and codes rescaled together, sparse and torch inputs, candidate pairs above the
all-pairs size, no n_atoms**2 memory), its message, and theorems of docs/theory.md on
random small problems (hypothesis): converged dictionaries pass every check, exclusive
features are never flagged, the reported violations bound every first-order decrease."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from theory_helpers import (
    LAM,
    dog_labrador_solved,
    finite,
    flagged,
    learn_dictionary,
    messy_state,
    objective,
    problems,
    solve_codes,
    unit_rows,
)

import toysae.theory.pairs as pairs_module
from toysae.dictionary_objective import dictionary_objective
from toysae.theory import Tolerances, check_optimality, code_kkt


def test_normalize_rescales_rows_and_codes_together(learned):
    X, D, Z = learned
    scale = np.array([2.0, 0.5, 1.0, 3.0])
    ref = check_optimality(X, D, Z, LAM)
    # same reconstruction, non-unit rows: after normalising, the same state
    rep = check_optimality(X, D * scale[:, None], Z / scale, LAM, normalize=True)
    assert rep.passed and abs(rep.objective - ref.objective) < 1e-9


def test_sparse_and_torch_inputs_give_the_same_report(learned):
    X, D, Z = learned
    dense = check_optimality(X, D, Z, LAM)
    other = check_optimality(torch.tensor(X), torch.tensor(D), sp.csr_matrix(Z), LAM)
    assert np.allclose(dense.atoms.violation, other.atoms.violation)
    assert np.allclose(dense.pairs.lhs, other.pairs.lhs)
    # at the exact optimum those are ~0 on both sides; compare a state that fails every
    # check, codes off their optimum (atom 3 switched off), the sparse copy holding
    # explicit zeros where the dense one has none (atom 3's entries and more)
    Zbad = Z * np.array([1.3, 0.7, 1.1, 0.0])
    stored = sp.csr_matrix(Z * np.array([1.3, 0.7, 1.1, 1.0]))
    stored.data[stored.indices == 3] = 0.0
    assert (stored.data == 0).sum() > 0 and np.array_equal(stored.toarray(), Zbad)
    dense = check_optimality(X, D, Zbad, LAM)
    other = check_optimality(torch.tensor(X), torch.tensor(D), stored, LAM)
    assert not dense.code.passed and not dense.atoms.passed
    assert dense.atoms.max_violation > 0.1 and dense.code.max_violation > 0.1
    assert dense.message == other.message and dense.passed == other.passed
    assert dense.objective == pytest.approx(other.objective, rel=1e-12)
    for a, b in ((dense.code, other.code), (dense.atoms, other.atoms)):
        assert (a.max_violation, a.n_violations) == pytest.approx((b.max_violation,
                                                                   b.n_violations), rel=1e-12)
    assert np.allclose(dense.code.per_atom, other.code.per_atom, rtol=1e-12)
    assert np.allclose(dense.atoms.violation, other.atoms.violation, rtol=1e-12)
    for name in ("lhs", "identity_violation", "hull_low", "hull_high", "coactive_mass",
                 "alone_lhs", "nested", "alive"):
        assert np.allclose(getattr(dense.pairs, name), getattr(other.pairs, name),
                           rtol=1e-12), name
    assert (dense.hierarchy.n_nested, dense.hierarchy.n_certified) == (
        other.hierarchy.n_nested, other.hierarchy.n_certified)


def test_learned_dictionary_passes_everything(learned):
    X, D, Z = learned
    tight = Tolerances(code=1e-8, atom=1e-7, pair=1e-7)
    rep = check_optimality(X, D, Z, LAM, tolerances=tight)
    assert rep.passed, rep.message
    assert "FAIL" not in str(rep)
    assert rep.objective == pytest.approx(dictionary_objective(X, D, Z, LAM), rel=1e-12)
    out = json.loads(rep.to_json())
    assert out["passed"] is True and out["tolerances"]["atom"] == 1e-7
    assert "violation" in json.loads(rep.to_json(include_arrays=True))["atoms"]


FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TIGHT = Tolerances(code=1e-8, atom=1e-7, pair=1e-7, bias=1e-7)


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


def test_check_optimality_uses_candidates_above_the_all_pairs_size(monkeypatch):
    X, D, Z = messy_state(3)
    small = check_optimality(X, D, Z, LAM)
    assert small.pairs.scope == "all"
    monkeypatch.setattr(pairs_module, "ALL_PAIRS_MAX_ATOMS", 10)
    large = check_optimality(X, D, Z, LAM)
    assert large.pairs.scope == "candidates"
    assert large.pairs.n_violations == small.pairs.n_violations
    assert large.hierarchy.n_nested == small.hierarchy.n_nested
    assert large.message.splitlines()[0] == small.message.splitlines()[0]


def _peak_check(k: int, seed: int = 5):
    """check_optimality on 1,500 samples x ``k`` random atoms in 16-d (nearly every pair
    fails the identity) with a planted nested pair; (report, peak traced bytes)."""
    rng = np.random.default_rng(seed)
    n, d = 1500, 16
    D = unit_rows(rng.normal(size=(k, d)))
    cols = rng.integers(2, k, size=(n, 6))
    Z = sp.lil_matrix(sp.csr_matrix((rng.uniform(0.5, 1.5, n * 6), (
        np.repeat(np.arange(n), 6), cols.ravel())), shape=(n, k)))
    Z[:40, 0] = 1.0
    Z[:20, 1] = 0.5  # a nested pair: atom 1 fires only with atom 0
    Z = sp.csr_matrix(Z)
    X = np.asarray(Z @ D) + 0.01 * rng.normal(size=(n, d))
    tracemalloc.start()
    rep = check_optimality(X, D, Z, LAM, max_pairs=20_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return rep, peak


def test_a_large_dictionary_needs_no_n_atoms_squared_memory():
    small, small_peak = _peak_check(2048)
    rep, peak = _peak_check(8192)
    k = 8192
    assert rep.pairs.scope == "candidates" and rep.pairs.n_pairs_checked == k * (k - 1)
    assert rep.pairs.n_violations > 0.5 * k * k  # nearly every pair fails: the worst kept
    assert len(rep.pairs.pairs) <= 20_000 + rep.hierarchy.n_nested
    assert (1, 0) in flagged(rep.pairs, rep.pairs.nested)
    # 16 times the pairs, about the same memory (one (k, k) float64 matrix is 537 MB)
    assert peak < 1.5 * small_peak and peak < 0.25 * k * k * 8, (
        f"peak {peak / 1e6:.0f} MB at {k} atoms, {small_peak / 1e6:.0f} MB at 2048")


def test_check_optimality_message_has_one_line_per_check_with_the_numbers():
    X, F, Z = dog_labrador_solved()
    rep = check_optimality(X, F, Z, LAM)
    assert not rep.passed
    lines = rep.message.splitlines()
    assert lines[0] == "3 of 4 checks fail"
    assert lines[1].startswith("[ok  ] code KKT holds: max violation")
    assert lines[2].startswith("[FAIL] atom stationarity fails: max relative tangential force "
                               f"{rep.atoms.max_violation:.3g} > tol 0.01")
    assert lines[3].strip() == "worst atom 1: its residual points toward atom 0 (cos 0.954)"
    pair_line = next(x for x in lines if "pair identity" in x)
    assert pair_line.startswith("[FAIL] pair identity fails") and "tol 0.01" in pair_line
    assert any(x.strip().startswith("worst pair (1, 0)") for x in lines)
    hier = next(x for x in lines if "hierarchy" in x)
    assert hier.startswith("[FAIL] hierarchy fails: 1 nested pair(s)")
    assert any("atom 1 fires only with atom 0" in x for x in lines)
    assert str(rep).endswith(rep.message)  # the message prints last, once
    assert str(rep).count("pair identity fails") == 1
    assert "code: CodeKKTReport(passed=True)" in str(rep)
    assert "atoms: AtomStationarityReport(passed=False)" in str(rep)
    assert "hierarchy: HierarchyReport(passed=False)" in str(rep)


def test_failing_checkers_say_what_fails_with_the_numbers():
    X, F, Z = dog_labrador_solved()
    rep = check_optimality(X, F, 2 * Z, LAM, decoder_bias=True, bias=np.full(3, 0.5))
    assert rep.code.message.startswith("code KKT fails: max violation")
    assert f"{rep.code.max_violation:.3g} > tol 0.001" in rep.code.message
    assert "worst: sample" in rep.code.message
    assert rep.bias.message == (f"decoder bias condition fails: ||mean residual|| / lam = "
                                f"{rep.bias.violation:.3g} > tol 0.001")
    lazy = np.zeros_like(Z)
    lazy[:, 0] = solve_codes(X, F[:1], LAM)[:, 0]
    atoms = check_optimality(X, F, lazy, LAM).atoms
    assert atoms.message.startswith("atom stationarity fails")
    assert "worst atom 0: its residual points toward atom 1" in atoms.message
