"""Hand-made cases for toysae.theory: each checker passes where it must and flags where it must."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.optimize import minimize
from theory_helpers import learn_dictionary, objective, solve_codes, unit_rows

from toysae._threads import torch_threads
from toysae.dictionary_objective import dictionary_objective
from toysae.theory import (
    Tolerances,
    amortisation_gap,
    atom_stationarity,
    bias_condition,
    check_optimality,
    check_sae,
    code_kkt,
    hierarchy_certificate,
    pair_conditions,
    wide_limit,
    wide_limit_gap,
)

LAM = 0.1


@pytest.fixture(scope="module")
def learned():
    """A small dictionary learned to convergence (exactly stationary)."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 3))
    D, Z, ok = learn_dictionary(X, unit_rows(rng.normal(size=(4, 3))), LAM)
    assert ok
    return X, D, Z


def _dog_labrador(seed=0, n=60):
    """Parent 'dog' always on, child 'labrador' on a third of the dog samples."""
    rng = np.random.default_rng(seed)
    F = np.array([[1.0, 0.0, 0.0], [0.3, 0.95, 0.0]])
    F = unit_rows(F)
    dog = rng.uniform(1.0, 2.0, n)
    lab = (rng.uniform(size=n) < 0.35) * rng.uniform(0.5, 1.5, n)
    X = np.outer(dog, F[0]) + np.outer(lab, F[1])
    return X, F, np.stack([dog, lab], axis=1)


# --- bad input ----------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [code_kkt, atom_stationarity, pair_conditions,
                                hierarchy_certificate, check_optimality])
def test_bad_input_is_refused_with_the_argument_named(fn, learned):
    X, D, Z = learned
    with pytest.raises(ValueError, match="lam"):
        fn(X, D, Z, 0.0)
    with pytest.raises(ValueError, match="lam"):
        fn(X, D, Z, -1.0)
    with pytest.raises(ValueError, match="D has 2 columns but X has 3"):
        fn(X, D[:, :2], Z, LAM)
    with pytest.raises(ValueError, match=r"Z must have shape"):
        fn(X, D, Z[:, :2], LAM)
    with pytest.raises(ValueError, match=r"Z must have shape"):
        fn(X, D, Z[:5], LAM)
    Zneg = Z.copy()
    Zneg[0, 0] = -0.5
    with pytest.raises(ValueError, match="negative code"):
        fn(X, D, Zneg, LAM)
    Xnan = X.copy()
    Xnan[1, 1] = np.nan
    with pytest.raises(ValueError, match="X contains 1 NaN"):
        fn(Xnan, D, Z, LAM)
    Dinf = D.copy()
    Dinf[0, 0] = np.inf
    with pytest.raises(ValueError, match="D contains 1 NaN or Inf"):
        fn(X, Dinf, Z, LAM)
    with pytest.raises(ValueError, match=r"row 2 has norm 1\.5 \(off by 0\.5\)"):
        fn(X, D * np.array([[1], [1], [1.5], [1]]), Z, LAM)
    with pytest.raises(ValueError, match=r"pass normalize=True to rescale rows and code"):
        fn(X, D * 1.01, Z, LAM)
    Dzero = D.copy()
    Dzero[1] = 0.0
    for normalize in (False, True):
        with pytest.raises(ValueError, match=r"D has 1 zero row\(s\) \(first: row 1\)"):
            fn(X, Dzero, Z, LAM, normalize=normalize)
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\), got \(2,\)"):
        fn(X, D, Z, LAM, bias=np.zeros(2))


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
    X, F, _ = _dog_labrador()
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
    X, F, _ = _dog_labrador()
    Z = solve_codes(X, F, LAM)
    assert ((Z[:, 1] > 0) <= (Z[:, 0] > 0)).all()  # labrador only with dog
    rep = pair_conditions(X, F, Z, LAM)
    assert rep.nested[1, 0] and not rep.in_hull[1, 0]  # E empty: hull [1, 1], c < 1
    assert rep.hull_low[1, 0] == pytest.approx(1.0) and rep.cos[1, 0] < 0.5
    assert not rep.passed


# --- hierarchy ----------------------------------------------------------------------------

def test_hierarchy_step_is_exact_for_every_eps():
    X, F, codes = _dog_labrador(seed=2)
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


# --- SAE ----------------------------------------------------------------------------------

class _OracleSAE(torch.nn.Module):
    """Encodes with exact lasso codes: its amortisation gap must be 0."""

    def __init__(self, D, b):
        super().__init__()
        self.W = torch.nn.Parameter(torch.tensor(D))
        self.b_dec = torch.nn.Parameter(torch.tensor(b))

    @property
    def dictionary(self):
        return self.W

    def encode(self, x):
        X = x.numpy() - self.b_dec.detach().numpy()
        return torch.tensor(solve_codes(X, self.W.detach().numpy(), LAM))


def test_amortisation_gap_is_zero_for_exact_codes_and_positive_for_an_sae():
    from toysae.sae import make_sae

    rng = np.random.default_rng(6)
    X = rng.normal(size=(60, 4))
    D = unit_rows(rng.normal(size=(6, 4)))
    with torch_threads(1):
        oracle = amortisation_gap(_OracleSAE(D, np.full(4, 0.1)), X, LAM, tol=1e-10)
    assert oracle.solver_success and abs(oracle.gap) < 1e-6 * oracle.optimal_objective
    assert oracle.support_jaccard > 0.99 and oracle.sae_kkt_violation < 1e-6
    # both objectives are the package's one objective, bias included
    for Z, value in ((oracle.sae_codes, oracle.sae_objective),
                     (oracle.optimal_codes, oracle.optimal_objective)):
        assert value == pytest.approx(dictionary_objective(X, D, Z, LAM, bias=np.full(4, 0.1)),
                                      rel=1e-12)
    assert oracle.per_sample_gap.sum() == pytest.approx(oracle.gap, abs=1e-12)
    sae = make_sae("relu", 4, 6, seed=0)
    with torch_threads(1):
        rep = check_sae(sae, X.astype(np.float32), LAM, normalize=True)
    assert rep.amortisation.gap > 0 and rep.amortisation.sae_kkt_violation > 0.01
    assert rep.optimality.code.passed  # re-solved codes are optimal ...
    assert not rep.optimality.passed  # ... but an untrained decoder is not stationary
