"""``toysae.dictlearn.sparse_coding``: ``sparse_code``'s interface (its result, the KKT gap
it reports and ``kkt_gap``, torch inputs, sparse output, non-convergence reported, bad
input) and the routes it takes: the working-set path on many atoms, the mixed-precision
route only for cold float64 working-set solves. Each solver's own numbers are tested
beside it, in tests/dictlearn/lasso/."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from problems import random_problem, support

from toysae.dictlearn import ConvergenceWarning, SparseCodeResult, kkt_gap, sparse_code
from toysae.dictlearn.lasso._mixed_precision import mixed_precision_lasso


def test_float64_reaches_tight_kkt_gap():
    X, D, _ = random_problem(3, d=12, n_atoms=24, n=10)
    res = sparse_code(X, D, 0.05, dtype=torch.float64, tol=1e-11)
    assert res.success
    assert res.kkt_gap <= 1e-10
    assert res.codes.dtype == np.float64
    # The package's checker agrees with the reported gap.
    assert kkt_gap(X, D, res.codes, 0.05) <= 1e-10
    # An independent check, from scratch in numpy (the two above share kkt_violation): the
    # response s_nj = d_j . r_n is lam on the support and at most lam off it.
    Z = res.codes
    S = (X - Z @ D) @ D.T
    on = Z > 0
    assert (Z >= 0).all() and on.any() and (~on).any()
    gap = np.where(on, np.abs(S - 0.05), np.maximum(S - 0.05, 0.0)).max() / 0.05
    assert gap <= 1e-10
    assert res.kkt_gap == pytest.approx(gap, abs=1e-12)


def test_kkt_gap_flags_suboptimal_codes():
    X, D, _ = random_problem(4)
    res = sparse_code(X, D, 0.1, dtype=torch.float64, tol=1e-10)
    Z = res.codes.copy()
    assert kkt_gap(X, D, Z, 0.1) < 1e-8
    Z[Z > 0] *= 1.1
    assert kkt_gap(X, D, Z, 0.1) > 1e-2


def test_non_convergence_is_reported():
    X, D, _ = random_problem(10)
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        res = sparse_code(X, D, 0.1, max_iter=1)
    assert not res.success
    assert "max_iter=1" in res.message
    assert res.n_iter == 1
    assert res.kkt_gap > 1e-4


def test_result_prints_and_serialises():
    X, D, _ = random_problem(11, n=5)
    res = sparse_code(X, D, 0.1)
    assert isinstance(res, SparseCodeResult)
    text = repr(res)
    for field in ("codes", "objective", "success", "n_iter", "kkt_gap", "method"):
        assert f"{field}:" in text
    # The shared Result repr prints the message as its own closing line.
    assert text.splitlines()[-1] == res.message and "?" not in text
    assert '"method": "fista"' in res.to_json()
    assert "codes" not in res.to_dict() and res.to_dict(include_arrays=True)["codes"]


def test_accepts_torch_tensors():
    X, D, _ = random_problem(12)
    a = sparse_code(torch.tensor(X), torch.tensor(D), 0.1, dtype=torch.float64)
    b = sparse_code(X, D, 0.1, dtype=torch.float64)
    np.testing.assert_array_equal(a.codes, b.codes)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lam": -0.1}, "lam"),
        ({"method": "lars"}, "method"),
        ({"D": "zero_row"}, "D"),
        ({"D": "nan_row"}, "D"),
        ({"D": "wrong_d"}, "D"),
        ({"X": "nan"}, "X"),
        ({"X": "inf"}, "X"),
        ({"method": "omp", "n_nonzero": 33}, "n_nonzero"),
        ({"method": "omp"}, "n_nonzero"),
        ({"init": "wrong_shape"}, "init"),
        ({"max_iter": 0}, "max_iter"),
        ({"tol": 0.0}, "tol"),
        ({"method": "cvxpy", "solver": "NOPE"}, "solver"),
        ({"dtype": torch.float16}, "dtype"),
        ({"gram": "wrong_shape"}, "gram"),
        ({"gram": "not_DDt"}, "gram"),
        ({"gram": "nan_diagonal"}, "gram"),
        ({"gram": "ok", "method": "cvxpy"}, "gram"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(kwargs, name):
    X, D, _ = random_problem(14, n=3)
    kwargs = dict(kwargs)
    if kwargs.get("D") == "zero_row":
        D = D.copy()
        D[2] = 0.0
    elif kwargs.get("D") == "nan_row":
        D = D.copy()
        D[1, 3] = np.nan
    elif kwargs.get("D") == "wrong_d":
        D = D[:, :-1]
    if kwargs.get("X") in ("nan", "inf"):
        X = X.copy()
        X[0, 0] = np.nan if kwargs["X"] == "nan" else np.inf
    if kwargs.get("init") == "wrong_shape":
        kwargs["init"] = np.zeros((3, 5))
    if "gram" in kwargs:
        gram = D @ D.T
        if kwargs["gram"] == "wrong_shape":
            gram = gram[:-1]
        elif kwargs["gram"] == "not_DDt":
            gram = 2.0 * gram
        elif kwargs["gram"] == "nan_diagonal":
            gram[0, 0] = np.nan
        kwargs["gram"] = gram
    kwargs.pop("D", None)
    kwargs.pop("X", None)
    lam = kwargs.pop("lam", 0.1)
    with pytest.raises(ValueError, match=name):
        sparse_code(X, D, lam, **kwargs)


@pytest.mark.parametrize("nonneg", [True, False])
def test_working_set_path_matches_cvxpy_and_dense(nonneg):
    # n_atoms > 96 takes the working-set solver; the plain solver and cvxpy must agree with it.
    from toysae.dictlearn.lasso._fista import prox_grad
    from toysae.dictlearn.lasso._working_set import working_set_prox_grad

    X, D, _ = random_problem(15, d=24, n_atoms=128, n=12, density=0.03, signed=not nonneg)
    lam = 0.05  # small: many atoms violate KKT at z = 0, so sets get capped and refreshed
    ref = sparse_code(X, D, lam, method="cvxpy", nonneg=nonneg, dtype=torch.float64)
    res = sparse_code(X, D, lam, nonneg=nonneg, dtype=torch.float64, tol=1e-10)
    assert res.success and res.kkt_gap <= 1e-10
    assert abs(res.objective - ref.objective) <= 1e-8 * ref.objective
    assert np.array_equal(support(res.codes), support(ref.codes))
    Xt, Dt = torch.tensor(X), torch.tensor(D)
    C, G = Xt @ Dt.T, Dt @ Dt.T
    kw = dict(nonneg=nonneg, accelerate=True, max_iter=5000, tol=1e-10, init=None, scale=lam)
    ws = working_set_prox_grad(C, G, lam, max_set=4, **kw)  # tiny cap: forces many rounds
    dense = prox_grad(C, G, lam, **kw)
    assert bool(ws.success.all())
    np.testing.assert_allclose(ws.codes.numpy(), dense.codes.numpy(), atol=1e-8)


@pytest.mark.parametrize("method", ["fista", "omp"])
@pytest.mark.parametrize("n_atoms", [64, 160])  # the dense solver, then the working sets
def test_sparse_output_and_a_precomputed_gram_give_the_same_codes(method, n_atoms):
    import scipy.sparse as sp

    X, D, _ = random_problem(16, d=24, n_atoms=n_atoms, n=20, density=0.05)
    kw = dict(method=method, dtype=torch.float64)
    kw.update(n_nonzero=3) if method == "omp" else kw.update(tol=1e-10)
    dense = sparse_code(X, D, 0.05, **kw)
    sparse = sparse_code(X, D, 0.05, sparse_output=True, **kw)
    gram = sparse_code(X, D, 0.05, sparse_output=True, gram=torch.tensor(D @ D.T), **kw)
    for out in (sparse, gram):
        assert sp.isspmatrix_csr(out.codes) and out.codes.has_sorted_indices
        assert out.codes.dtype == np.float64 and not (out.codes.data == 0).any()
        np.testing.assert_allclose(out.codes.toarray(), dense.codes, atol=1e-12)
        assert out.objective == pytest.approx(dense.objective, rel=1e-12)
    with pytest.raises(TypeError, match="sparse_output"):
        sparse_code(X, D, 0.05, sparse_output=1)


def test_float32_sparse_code_on_many_atoms_is_exact_to_rounding():
    # Refits make float32 codes exact up to rounding, far below the default tol.
    rng = np.random.default_rng(4)
    D = rng.standard_normal((300, 40))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    X = ((rng.random((64, 300)) < 0.02) * rng.uniform(0.5, 1.5, (64, 300))) @ D
    ref = sparse_code(X, D, 0.1, dtype=torch.float64, tol=1e-12)
    res = sparse_code(X, D, 0.1)  # float32, tol 1e-4
    assert res.success and res.kkt_gap <= 1e-5
    assert abs(res.objective - ref.objective) <= 1e-6 * ref.objective


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_code_on_no_samples_in_the_working_set_regime(dtype):
    _, D, _ = random_problem(0, d=48, n_atoms=256)
    out = sparse_code(np.zeros((0, 48)), D, 0.1, dtype=dtype)
    assert out.codes.shape == (0, 256) and out.success


def test_sparse_code_takes_the_mixed_route_only_for_cold_float64_working_set_solves(
        monkeypatch):
    X, D, _ = random_problem(5, d=48, n_atoms=256, n=30, density=0.03)
    routes, real = [], mixed_precision_lasso

    def spy(*args, **kw):
        routes.append(args[0].dtype)
        return real(*args, **kw)

    import toysae.dictlearn.sparse_coding as coding

    monkeypatch.setattr(coding, "mixed_precision_lasso", spy)
    ref = sparse_code(X, D, 0.05, method="cvxpy").codes
    got = sparse_code(X, D, 0.05, dtype=torch.float64, tol=1e-10, max_iter=20000)
    assert routes == [torch.float64]
    np.testing.assert_allclose(got.codes, ref, atol=1e-6)
    sparse_code(X, D, 0.05, dtype=torch.float32)
    sparse_code(X, D, 0.05, dtype=torch.float64, init=got.codes)
    sparse_code(X, D[:64], 0.05, dtype=torch.float64)  # the dense solver's size
    assert routes == [torch.float64]


def test_data_and_atoms_past_the_dtypes_range_are_refused_naming_them():
    rng = np.random.default_rng(3)
    D = rng.normal(size=(8, 5))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    X = rng.normal(size=(20, 5))
    for kwargs in ({}, {"method": "omp", "n_nonzero": 2}):
        with pytest.raises(ValueError, match=r"X: row \d+ has norm .* above 2.81e\+14"):
            sparse_code(X * 1e25, D, 0.1, **kwargs)  # was objective=inf, a warning only
    with pytest.raises(ValueError, match=r"D: row \d+ has norm 1e\+20"):
        sparse_code(X, D * 1e20, 0.1)  # was a LinAlgError from eigh
    with pytest.raises(ValueError, match="X: .* in float64"):
        sparse_code(X * 1e150, D, 0.1, dtype=torch.float64)
    # Within range the answer scales with the data (and lam with it).
    ref = sparse_code(X, D, 0.1, dtype=torch.float64)
    scaled = sparse_code(X * 1e12, D, 0.1 * 1e12, dtype=torch.float64)
    np.testing.assert_allclose(scaled.codes / 1e12, ref.codes, atol=1e-12)


def test_float64_data_past_float32s_range_takes_the_plain_float64_route():
    # The mixed route searches in float32; data whose correlations overflow there is
    # solved in float64 alone: finite codes, an honest success flag.
    rng = np.random.default_rng(4)
    D = rng.normal(size=(120, 16))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    X = rng.normal(size=(30, 16))
    ref = sparse_code(X, D, 0.1, dtype=torch.float64)
    assert ref.success
    at_1e20 = sparse_code(X * 1e20, D, 0.1 * 1e20, dtype=torch.float64)
    assert at_1e20.success
    np.testing.assert_allclose(at_1e20.codes / 1e20, ref.codes, atol=1e-9)
    # At 1e40 the float32 search would overflow (NaN codes); the plain float64 solver
    # (the route a warm start takes) gives the scaled answer.
    far = sparse_code(X * 1e40, D, 0.1 * 1e40, dtype=torch.float64)
    plain = sparse_code(X, D, 0.1, dtype=torch.float64, init=np.zeros((30, 120)))
    assert far.success == plain.success and np.isfinite(far.objective)
    np.testing.assert_allclose(far.codes / 1e40, plain.codes, atol=1e-9)
