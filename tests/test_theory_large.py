"""Large-dictionary checking: the candidate pairs miss nothing the all-pairs check flags,
nested supports come from one pass, and memory does not grow with n_atoms**2."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from theory_helpers import unit_rows

import toysae.theory.pairs as pairs_module
from toysae._tuning import CHECK_CHUNK_ENTRIES
from toysae.theory import check_optimality, hierarchy_certificate, pair_conditions
from toysae.theory.support import NestingTracker, lookup

LAM = 0.1


def _messy(seed: int, *, nonneg: bool = True, n: int = 300, k: int = 24):
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


def _flagged(rep, mask):
    """Set of pairs (i, j) where ``mask`` holds, from an all-pairs or a list report."""
    if rep.pairs is None:
        return {(int(i), int(j)) for i, j in zip(*np.nonzero(mask), strict=True)}
    return {(int(i), int(j)) for i, j in rep.pairs[mask]}


@pytest.mark.parametrize("nonneg", [True, False])
def test_candidate_pairs_miss_nothing_the_all_pairs_check_flags(nonneg):
    X, D, Z = _messy(0, nonneg=nonneg)
    full = pair_conditions(X, D, Z, LAM, pairs="all", nonneg=nonneg)
    cand = pair_conditions(X, D, Z, LAM, pairs="candidates", nonneg=nonneg)
    assert full.scope == "all" and cand.scope == "candidates" and cand.complete
    assert 0 < cand.n_violations < full.n_pairs_checked  # something to find, not everything
    tol = full.tol
    for name, mask_of in [("identity", lambda r: r.identity_violation > tol),
                          ("hull", lambda r: r.hull_violation > tol),
                          ("attained hull", lambda r: ~r.in_attained_hull),
                          ("nested", lambda r: r.nested)]:
        expect, got = _flagged(full, mask_of(full)), _flagged(cand, mask_of(cand))
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
    assert (1, 0) in _flagged(cand, cand.nested)
    assert (2, 3) in _flagged(cand, ~cand.in_hull)


def test_a_hull_failure_without_co_firing_is_found():
    # the pair (2, 3) never co-fires, so a candidate set made of co-firing pairs alone
    # would miss it; its identity fails (the mean lies in the hull), so it is a candidate
    X, D, Z = _messy(1)
    A = sp.csr_matrix(Z != 0).astype(float)
    assert (A.T @ A)[2, 3] == 0
    full = pair_conditions(X, D, Z, LAM, pairs="all")
    assert not full.in_hull[2, 3] and full.hull_low[2, 3] > full.cos[2, 3] + full.tol
    cand = pair_conditions(X, D, Z, LAM, pairs="candidates")
    assert (2, 3) in _flagged(cand, ~cand.in_hull)


def test_max_pairs_keeps_the_largest_violations_and_says_the_hull_count_is_a_bound():
    X, D, Z = _messy(2)
    full = pair_conditions(X, D, Z, LAM, pairs="all")
    cand = pair_conditions(X, D, Z, LAM, pairs="candidates", max_pairs=5)
    assert not cand.complete and cand.n_violations == full.n_violations > 5
    recorded = _flagged(cand, cand.identity_violation > cand.tol)
    V = np.where(np.eye(24, dtype=bool), 0, full.identity_violation)
    top = {(int(a), int(b)) for a, b in zip(*np.unravel_index(np.argsort(-V, axis=None)[:5],
                                                               V.shape), strict=True)}
    assert top <= recorded
    assert _flagged(full, full.nested) <= _flagged(cand, cand.nested)  # nested: always kept
    assert "at least" in cand.message and cand.n_hull_failures <= full.n_hull_failures
    with pytest.raises(ValueError, match="max_pairs"):
        pair_conditions(X, D, Z, LAM, pairs="candidates", max_pairs=0)
    with pytest.raises(ValueError, match="pairs must be one of"):
        pair_conditions(X, D, Z, LAM, pairs="some")


def test_check_optimality_uses_candidates_above_the_all_pairs_size(monkeypatch):
    X, D, Z = _messy(3)
    small = check_optimality(X, D, Z, LAM)
    assert small.pairs.scope == "all"
    monkeypatch.setattr(pairs_module, "ALL_PAIRS_MAX_ATOMS", 10)
    large = check_optimality(X, D, Z, LAM)
    assert large.pairs.scope == "candidates"
    assert large.pairs.n_violations == small.pairs.n_violations
    assert large.hierarchy.n_nested == small.hierarchy.n_nested
    assert large.message.splitlines()[0] == small.message.splitlines()[0]


@pytest.mark.parametrize("rows", [1, 7, 300])
def test_nested_supports_from_one_pass_in_any_chunking(rows):
    X, D, Z = _messy(4, nonneg=False)
    Z[:5, 0] = 0.0  # atoms first seen in different chunks
    Zs = sp.csr_matrix(Z)
    tracker = NestingTracker(Z.shape[1])
    for start in range(0, len(Z), rows):
        tracker.add(Zs[start:start + rows])
    on = Z != 0
    expect = sorted((i, j) for i in range(Z.shape[1]) for j in range(Z.shape[1])
                    if i != j and on[:, i].any() and (on[on[:, i], j]).all())
    assert [tuple(map(int, p)) for p in tracker.pairs()] == expect
    for (i, j), ratio, sign in zip(tracker.pairs(), tracker.ratio, tracker.sign, strict=True):
        rows_i = on[:, i]
        assert ratio == (np.abs(Z[rows_i, j]) / np.abs(Z[rows_i, i])).min()
        signs = np.sign(Z[rows_i, i] * Z[rows_i, j])
        assert sign == (signs[0] if (signs == signs[0]).all() else 0)
    rep = hierarchy_certificate(X, D, Z, LAM, nonneg=False)
    assert rep.n_nested == len(expect)


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
    assert (1, 0) in _flagged(rep.pairs, rep.pairs.nested)
    # 16 times the pairs, about the same memory (one (k, k) float64 matrix is 537 MB)
    assert peak < 1.5 * small_peak and peak < 0.25 * k * k * 8, (
        f"peak {peak / 1e6:.0f} MB at {k} atoms, {small_peak / 1e6:.0f} MB at 2048")


@pytest.mark.parametrize("shape", [(64, 50), (3000, 2000)])  # the dense and the search paths
def test_code_lookup_reads_each_chunk_exactly_and_leaves_its_kept_block_zero(shape):
    rng = np.random.default_rng(0)
    scratch: dict = {}
    for seed in range(4):  # chunks of different patterns reuse one block
        Z = sp.random(*shape, density=0.02, format="csr", random_state=seed)
        Z.sort_indices()
        rows = rng.integers(0, shape[0], 500)
        cols = rng.integers(0, shape[1], 500)
        rows[:20], cols[:20] = Z.nonzero()[0][:20], Z.nonzero()[1][:20]  # some hits
        want = Z.toarray()[rows, cols]
        np.testing.assert_array_equal(lookup(Z, rows, cols, scratch), want)
        np.testing.assert_array_equal(lookup(Z, rows, cols), want)
        assert np.count_nonzero(want) >= 20
    if "lookup" in scratch:
        with pytest.raises(IndexError):  # a query off the matrix
            lookup(Z, np.array([shape[0] + 5]), np.array([0]), scratch)
        assert not scratch["lookup"].any()
    assert ("lookup" in scratch) == (shape[0] * shape[1] <= CHECK_CHUNK_ENTRIES)
