"""``toysae.theory.hierarchy``: the certified descent step of a nested (parent, child)
pair, exact for every step size, switched off for an antipodal child, absent for
exclusive or duplicate atoms, passed when its drop is verified; and a strict certified
step for every constructed hierarchy (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from theory_helpers import (
    LAM,
    dog_labrador,
    dog_labrador_solved,
    finite,
    objective,
    solve_codes,
    unit_rows,
)

from toysae.dictionary_objective import dictionary_objective
from toysae.theory import check_optimality, hierarchy_certificate

# --- hierarchy ----------------------------------------------------------------------------

def test_hierarchy_step_is_exact_for_every_eps():
    X, F, codes = dog_labrador(seed=2)
    Z = solve_codes(X, F, LAM)
    rep = hierarchy_certificate(X, F, Z, LAM)
    (step,) = [s for s in rep.steps if (s.child, s.parent) == (1, 0)]
    on = Z[:, 1] > 0
    assert step.eps == pytest.approx((Z[on, 0] / Z[on, 1]).min())
    c = F[0] @ F[1]
    for eps in np.linspace(0, step.eps, 6)[1:]:
        u = F[1] + eps * F[0]
        rho = np.linalg.norm(u)
        D2, Z2 = F.copy(), Z.copy()
        D2[1] = u / rho
        Z2[:, 1] *= rho
        Z2[:, 0] -= eps * Z[:, 1]
        assert np.abs(Z2 @ D2 - Z @ F).max() < 1e-12  # reconstruction unchanged
        assert Z2.min() > -1e-12  # feasible up to eps*
        drop = objective(X, F, Z, LAM) - objective(X, D2, Z2, LAM)
        expect = LAM * Z[:, 1].sum() * (1 + eps - np.sqrt(1 + 2 * eps * c + eps**2))
        assert drop == pytest.approx(expect, rel=1e-8, abs=1e-12) and drop > 0
    # beyond eps* the parent code would go negative
    assert (Z[:, 0] - 1.01 * step.eps * Z[:, 1]).min() < 0
    D2, Z2 = step.apply(F, Z)
    assert Z2.min() >= 0 and (Z2[step.absorbed_samples, 0] == 0).all()
    full = dictionary_objective(X, F, Z, LAM) - dictionary_objective(X, D2, Z2, LAM)
    assert full == pytest.approx(step.verified_drop, rel=1e-9)
    assert step.verified_drop == pytest.approx(step.predicted_drop, rel=1e-9)


def test_hierarchy_antipodal_child_is_switched_off():
    # child = -parent direction and eps* = 1: the child cancels out entirely
    X = np.array([[1.0, 0.0], [2.0, 0.0]])
    D = np.array([[1.0, 0.0], [-1.0, 0.0]])
    Z = np.array([[1.0, 1.0], [3.0, 1.0]])  # eps* = min(1/1, 3/1) = 1
    rep = hierarchy_certificate(X, D, Z, LAM)
    step = [s for s in rep.steps if s.child == 1][0]
    assert step.eps == 1.0 and step.norm == 0.0
    D2, Z2 = step.apply(D, Z)
    assert np.allclose(Z2 @ D2, Z @ D) and (Z2[:, 1] == 0).all()
    assert step.verified_drop == pytest.approx(LAM * 2 * Z[:, 1].sum())


def test_exclusive_and_duplicate_atoms_get_no_certificate():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    D = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    Z = np.array([[0.9, 0.0, 0.0], [0.0, 0.9, 0.0], [0.0, 0.0, 0.5]])
    assert hierarchy_certificate(X[:2], D[:2], Z[:2, :2], LAM).n_nested == 0
    Zdup = np.array([[0.9, 0.0, 0.0], [0.0, 0.5, 0.4], [0.0, 0.5, 0.4]])
    rep = hierarchy_certificate(X, D, Zdup, LAM)
    assert rep.passed and rep.n_nested == 2 and set(rep.duplicates) == {(1, 2), (2, 1)}


FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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


def test_a_hierarchy_step_passes_when_its_drop_is_verified():
    X, F, Z = dog_labrador_solved()
    (step,) = hierarchy_certificate(X, F, Z, LAM).steps
    assert step.passed and step.verified_drop > 0
    assert step.message.startswith("atom 1 fires only with atom 0: rotating it toward atom 0")
    assert f"verified drop {step.verified_drop:.4g}" in step.message
    # no nested pair: the report passes and says so
    Xe = np.array([[1.0, 0.0], [0.0, 1.0]])
    ok = hierarchy_certificate(Xe, np.eye(2), np.diag([0.9, 0.9]), LAM)
    assert ok.passed and ok.message == "hierarchy holds: no nested pair offers a descent step"
