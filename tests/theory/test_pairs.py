"""``toysae.theory.pairs``: the pair identity against brute force, a nested pair failing the
hull; and on large dictionaries the candidate pairs miss nothing the all-pairs check
flags, a hull failure without co-firing is found, ``max_pairs`` keeps the largest."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from theory_helpers import LAM, dog_labrador, flagged, messy_state, solve_codes, unit_rows

from toysae.theory import pair_conditions

# --- pairs --------------------------------------------------------------------------------

def test_pair_identity_matches_brute_force_and_subset_mode():
    rng = np.random.default_rng(1)
    X, D = rng.normal(size=(25, 3)), unit_rows(rng.normal(size=(4, 3)))
    Z = solve_codes(X, D, 0.3)
    Z[:, 1] *= 1.3  # off-optimal on purpose: the sums must still be right
    rep = pair_conditions(X, D, Z, 0.3)
    S = (X - Z @ D) @ D.T / 0.3
    for i in range(4):
        on = Z[:, i] > 0
        for j in range(4):
            if i == j or not on.any():
                continue
            assert rep.lhs[i, j] == pytest.approx(Z[on, i] @ S[on, j])
            assert rep.hull_low[i, j] == pytest.approx(S[on, j].min())
            assert rep.hull_high[i, j] == pytest.approx(S[on, j].max())
            alone = on & (Z[:, j] == 0)
            assert rep.alone_lhs[i, j] == pytest.approx(Z[alone, i] @ (1 - S[alone, j]))
            assert rep.nested[i, j] == (not alone.any())
            assert rep.alone_lhs[i, j] + rep.coactive_lhs[i, j] == pytest.approx(
                Z[on, i].sum() - rep.lhs[i, j])
    pairs = np.array([[2, 0], [0, 3], [3, 1]])
    sub = pair_conditions(X, D, Z, 0.3, pairs=pairs)
    for name in ("lhs", "hull_low", "identity_violation", "alone_lhs", "nested"):
        assert np.allclose(getattr(sub, name), getattr(rep, name)[pairs[:, 0], pairs[:, 1]])
    with pytest.raises(ValueError, match="pairs must have i != j"):
        pair_conditions(X, D, Z, 0.3, pairs=np.array([[1, 1]]))
    with pytest.raises(ValueError, match=r"pairs index 9 is out of range \[0, 4\)"):
        pair_conditions(X, D, Z, 0.3, pairs=np.array([[0, 9]]))


def test_nested_pair_fails_the_hull():
    X, F, _ = dog_labrador()
    Z = solve_codes(X, F, LAM)
    assert ((Z[:, 1] > 0) <= (Z[:, 0] > 0)).all()  # labrador only with dog
    rep = pair_conditions(X, F, Z, LAM)
    assert rep.nested[1, 0] and not rep.in_hull[1, 0]  # E empty: hull [1, 1], c < 1
    assert rep.hull_low[1, 0] == pytest.approx(1.0) and rep.cos[1, 0] < 0.5
    assert not rep.passed


@pytest.mark.parametrize("nonneg", [True, False])
def test_candidate_pairs_miss_nothing_the_all_pairs_check_flags(nonneg):
    X, D, Z = messy_state(0, nonneg=nonneg)
    full = pair_conditions(X, D, Z, LAM, pairs="all", nonneg=nonneg)
    cand = pair_conditions(X, D, Z, LAM, pairs="candidates", nonneg=nonneg)
    assert full.scope == "all" and cand.scope == "candidates" and cand.complete
    assert 0 < cand.n_violations < full.n_pairs_checked  # something to find, not everything
    tol = full.tol
    for name, mask_of in [("identity", lambda r: r.identity_violation > tol),
                          ("hull", lambda r: r.hull_violation > tol),
                          ("attained hull", lambda r: ~r.in_attained_hull),
                          ("nested", lambda r: r.nested)]:
        expect, got = flagged(full, mask_of(full)), flagged(cand, mask_of(cand))
        assert got == expect, name
    assert (cand.n_violations, cand.n_hull_failures, cand.n_nested) == (
        full.n_violations, full.n_hull_failures, full.n_nested)
    assert cand.n_pairs_checked == full.n_pairs_checked == 24 * 23
    assert cand.max_violation == pytest.approx(full.max_violation, rel=1e-12)
    assert [w[:2] for w in cand.worst] == [w[:2] for w in full.worst]
    # every record equals the all-pairs one
    i, j = cand.pairs[:, 0], cand.pairs[:, 1]
    for name in ("lhs", "weighted_mean", "identity_violation", "hull_low", "hull_high",
                 "coactive_mass", "alone_mass", "alone_lhs", "coactive_lhs", "split_rhs"):
        assert np.allclose(getattr(cand, name), getattr(full, name)[i, j], atol=1e-10), name
    assert (cand.nested == full.nested[i, j]).all()
    # the planted cases are among them
    assert (1, 0) in flagged(cand, cand.nested)
    assert (2, 3) in flagged(cand, ~cand.in_hull)


def test_a_hull_failure_without_co_firing_is_found():
    # the pair (2, 3) never co-fires, so a candidate set made of co-firing pairs alone
    # would miss it; its identity fails (the mean lies in the hull), so it is a candidate
    X, D, Z = messy_state(1)
    A = sp.csr_matrix(Z != 0).astype(float)
    assert (A.T @ A)[2, 3] == 0
    full = pair_conditions(X, D, Z, LAM, pairs="all")
    assert not full.in_hull[2, 3] and full.hull_low[2, 3] > full.cos[2, 3] + full.tol
    cand = pair_conditions(X, D, Z, LAM, pairs="candidates")
    assert (2, 3) in flagged(cand, ~cand.in_hull)


def test_max_pairs_keeps_the_largest_violations_and_says_the_hull_count_is_a_bound():
    X, D, Z = messy_state(2)
    full = pair_conditions(X, D, Z, LAM, pairs="all")
    cand = pair_conditions(X, D, Z, LAM, pairs="candidates", max_pairs=5)
    assert not cand.complete and cand.n_violations == full.n_violations > 5
    recorded = flagged(cand, cand.identity_violation > cand.tol)
    V = np.where(np.eye(24, dtype=bool), 0, full.identity_violation)
    top = {(int(a), int(b)) for a, b in zip(*np.unravel_index(np.argsort(-V, axis=None)[:5],
                                                               V.shape), strict=True)}
    assert top <= recorded
    assert flagged(full, full.nested) <= flagged(cand, cand.nested)  # nested: always kept
    assert "at least" in cand.message and cand.n_hull_failures <= full.n_hull_failures
    with pytest.raises(ValueError, match="max_pairs"):
        pair_conditions(X, D, Z, LAM, pairs="candidates", max_pairs=0)
    with pytest.raises(ValueError, match="pairs must be one of"):
        pair_conditions(X, D, Z, LAM, pairs="some")
