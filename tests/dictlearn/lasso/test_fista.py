"""``toysae.dictlearn.lasso._fista``: the dense proximal-gradient solver (FISTA with per-sample
restarts, ISTA) against the exact cvxpy reference and itself (signed vs nonnegative codes,
warm starts), and its pieces by hand: the soft threshold, the per-sample KKT gap, the
products on every route, masks and per-sample Gram matrices, and ``LassoOutput`` built
from index sets."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import torch
from problems import random_problem, support

from toysae import _tuning
from toysae.dictionary_objective import dictionary_objective
from toysae.dictlearn import sparse_code
from toysae.dictlearn.lasso._fista import (
    LassoOutput,
    gram_times,
    kkt_violation,
    lipschitz,
    prox,
    prox_grad,
    sparse_times,
)


@pytest.mark.parametrize("nonneg", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fista_matches_cvxpy_objective_and_support(seed, nonneg):
    X, D, _ = random_problem(seed, signed=not nonneg)
    lam = 0.1
    ref = sparse_code(X, D, lam, method="cvxpy", nonneg=nonneg, dtype=torch.float64)
    assert ref.success, ref.message
    fista = sparse_code(X, D, lam, nonneg=nonneg)  # the float32 default
    assert fista.success, fista.message
    assert abs(fista.objective - ref.objective) <= 1e-4 * ref.objective
    # Support of the float64 solve matches exactly; float32 entries are ~1e-7 accurate.
    fista64 = sparse_code(X, D, lam, nonneg=nonneg, dtype=torch.float64, tol=1e-10)
    assert np.array_equal(support(fista64.codes), support(ref.codes))
    np.testing.assert_allclose(fista64.codes, ref.codes, atol=1e-6)
    strong = np.abs(ref.codes) > 1e-3
    assert np.array_equal(support(fista.codes)[strong], strong[strong])
    assert not support(fista.codes)[np.abs(ref.codes) == 0].any() or \
        np.abs(fista.codes[np.abs(ref.codes) == 0]).max() < 1e-3


@pytest.mark.parametrize("nonneg", [True, False])
def test_ista_agrees_with_fista(nonneg):
    X, D, _ = random_problem(5, signed=not nonneg)
    fista = sparse_code(X, D, 0.1, nonneg=nonneg, dtype=torch.float64, tol=1e-9)
    ista = sparse_code(X, D, 0.1, method="ista", nonneg=nonneg, dtype=torch.float64,
                       tol=1e-9)
    assert ista.success and fista.success
    np.testing.assert_allclose(ista.codes, fista.codes, atol=1e-6)
    assert ista.n_iter > fista.n_iter  # momentum is doing something


def test_signed_vs_nonneg():
    X, D, _ = random_problem(8, signed=True)
    pos = sparse_code(X, D, 0.1, nonneg=True, dtype=torch.float64)
    sgn = sparse_code(X, D, 0.1, nonneg=False, dtype=torch.float64)
    assert (pos.codes >= 0).all()
    assert (sgn.codes < 0).any()
    # A larger feasible set gives a strictly lower optimum on signed data.
    assert sgn.objective < pos.objective - 1e-3
    # Negated data: signed codes flip sign exactly, nonneg codes are a different problem.
    flip = sparse_code(-X, D, 0.1, nonneg=False, dtype=torch.float64)
    np.testing.assert_allclose(flip.codes, -sgn.codes, atol=1e-7)


def test_warm_start_reduces_iterations():
    X, D, _ = random_problem(9, n=40)
    cold = sparse_code(X, D, 0.1, dtype=torch.float64, tol=1e-9)
    near = sparse_code(X + 1e-3, D, 0.1, dtype=torch.float64, tol=1e-9)
    warm = sparse_code(X + 1e-3, D, 0.1, dtype=torch.float64, tol=1e-9, init=cold.codes)
    assert warm.success and near.success
    assert warm.n_iter < near.n_iter
    np.testing.assert_allclose(warm.codes, near.codes, atol=1e-6)
    exact = sparse_code(X, D, 0.1, dtype=torch.float64, tol=1e-8, init=cold.codes)
    assert exact.n_iter == 0


def test_prox_is_the_soft_threshold():
    v = torch.tensor([[-2.0, -0.5, 0.0, 0.3, 1.5]])
    assert prox(v, 0.5, nonneg=False).tolist() == [[-1.5, 0.0, 0.0, 0.0, 1.0]]
    assert prox(v, 0.5, nonneg=True).tolist() == [[0.0, 0.0, 0.0, 0.0, 1.0]]
    # a per-sample threshold (the step 1/L of each sample) broadcasts over the atoms
    rows = prox(torch.ones(2, 3), torch.tensor([[0.25], [2.0]]), nonneg=False)
    assert rows.tolist() == [[0.75] * 3, [0.0] * 3]


def test_kkt_violation_by_hand():
    lam = 0.5
    codes = torch.tensor([[1.0, 0.0, -2.0, 0.0]])
    response = torch.tensor([[0.75, 0.25, -0.5, -1.25]])  # g = c - z G
    # nonnegative: |g - lam| on the support, max(g - lam, 0) off it
    assert kkt_violation(codes.abs(), response, lam, True).tolist() == [1.0]
    on_off = torch.tensor([[0.25, 0.0, 1.0, 0.0]])
    assert torch.equal(kkt_violation(codes.abs(), response, lam, True), on_off.amax(1))
    # signed: |g - lam sign(z)| on the support (0.25 and 0.0), max(|g| - lam, 0) off (0, 0.75)
    assert kkt_violation(codes, response, lam, False).tolist() == [0.75]
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the worst entry lies outside the support
    assert kkt_violation(codes, response, lam, False, mask).tolist() == [0.25]
    assert kkt_violation(torch.zeros(3, 0), torch.zeros(3, 0), lam, True).tolist() == [0.0] * 3


@pytest.mark.parametrize("nonneg", [True, False])
def test_prox_grad_reaches_the_optimum_its_kkt_gap_certifies(nonneg):
    X, D, _ = random_problem(20, signed=not nonneg)
    Xt, Dt = torch.tensor(X), torch.tensor(D)
    C, G = Xt @ Dt.T, Dt @ Dt.T
    lam = 0.1
    out = prox_grad(C, G, lam, nonneg=nonneg, accelerate=True, max_iter=20_000, tol=1e-11,
                    init=None, scale=lam)
    assert bool(out.success.all()) and float(out.kkt.max()) <= 1e-11
    Z = out.codes.numpy()
    # the gap it reports is the one of its own codes, recomputed here from the data
    S = (X - Z @ D) @ D.T
    on = Z != 0
    assert on.any() and (~on).any()
    if nonneg:
        gap = np.where(on, np.abs(S - lam), np.maximum(S - lam, 0.0)).max(axis=1)
    else:
        gap = np.where(on, np.abs(S - lam * np.sign(Z)), np.maximum(np.abs(S) - lam, 0.0)
                       ).max(axis=1)
    np.testing.assert_allclose(out.kkt.numpy(), gap / lam, atol=1e-12)
    ref = sparse_code(X, D, lam, method="cvxpy", nonneg=nonneg, dtype=torch.float64)
    assert dictionary_objective(X, D, Z, lam) <= ref.objective * (1 + 1e-9)
    top = float(np.linalg.eigvalsh(G.numpy())[-1])  # the step 1/L is valid: L >= top, by a hair
    assert top <= lipschitz(G) <= top * (1 + 1e-5)


def test_prox_grad_stops_at_max_iter_and_says_so():
    X, D, _ = random_problem(21)
    Xt, Dt = torch.tensor(X), torch.tensor(D)
    out = prox_grad(Xt @ Dt.T, Dt @ Dt.T, 0.1, nonneg=True, accelerate=True, max_iter=3,
                    tol=1e-12, init=None, scale=0.1)
    short = ~out.success
    assert int(short.sum()) >= X.shape[0] - 2  # (a sample whose optimum is z = 0 starts there)
    assert out.n_iter[short].tolist() == [3] * int(short.sum())
    assert bool((out.kkt[short] > 1e-12).all()) and bool((out.kkt[~short] <= 1e-12).all())


def test_a_mask_solves_the_problem_on_the_masked_atoms_alone():
    X, D, _ = random_problem(22, n=8)
    Xt, Dt = torch.tensor(X), torch.tensor(D)
    C, G = Xt @ Dt.T, Dt @ Dt.T
    rng = np.random.default_rng(0)
    keep = torch.tensor(rng.random((8, 32)) < 0.4, dtype=torch.float64)
    kw = dict(nonneg=True, accelerate=True, max_iter=20_000, tol=1e-12, init=None, scale=0.1)
    masked = prox_grad(C, G, 0.1, mask=keep, **kw)
    assert bool(masked.success.all())
    assert bool((masked.codes[keep == 0] == 0).all())
    for n in range(8):  # each row: the same problem on its own atoms only
        atoms = keep[n].bool()
        alone = prox_grad(C[n:n + 1, atoms], G[atoms][:, atoms], 0.1, **kw)
        torch.testing.assert_close(masked.codes[n, atoms], alone.codes[0], atol=1e-9, rtol=0)


def test_a_per_sample_gram_batch_gives_the_shared_grams_codes():
    X, D, _ = random_problem(23, n=6)
    Xt, Dt = torch.tensor(X), torch.tensor(D)
    C, G = Xt @ Dt.T, Dt @ Dt.T
    kw = dict(nonneg=False, accelerate=True, max_iter=20_000, tol=1e-11, init=None, scale=0.1)
    shared = prox_grad(C, G, 0.1, **kw)
    batch = prox_grad(C, G.expand(6, 32, 32).clone(), 0.1, **kw)
    assert bool(batch.success.all())
    torch.testing.assert_close(batch.codes, shared.codes, atol=1e-9, rtol=0)


def test_the_products_agree_on_every_route(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(40, 200, generator=gen, dtype=torch.float64)
    z[torch.rand(40, 200, generator=gen) > 0.02] = 0.0  # 2% nonzero
    M = torch.randn(200, 7, generator=gen, dtype=torch.float64)
    dense = z.numpy() @ M.numpy()
    for min_entries in (10 ** 9, 1):  # the plain product, then the sparse one
        monkeypatch.setattr(_tuning, "SPARSE_MIN_ENTRIES", min_entries)
        np.testing.assert_allclose(sparse_times(z, M).numpy(), dense, rtol=1e-12, atol=1e-12)
    G = torch.randn(40, 5, 5, generator=gen, dtype=torch.float64)
    w = torch.randn(40, 5, generator=gen, dtype=torch.float64)
    expected = np.einsum("ni,nij->nj", w.numpy(), G.numpy())
    for broadcast_max in (32, 0):  # broadcasting, then batched matmuls
        monkeypatch.setattr(_tuning, "BROADCAST_GRAM_MAX", broadcast_max)
        np.testing.assert_allclose(gram_times(w, G).numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gram_times(w, G[0]).numpy(), w.numpy() @ G[0].numpy())


def test_lasso_output_builds_its_codes_from_index_sets():
    # Row 0 uses atoms 2 and 0 with one padding entry (atom 0, value 0) on top of a real atom 0.
    S = torch.tensor([[2, 0, 0], [1, 3, 0]])
    values = torch.tensor([[0.5, 0.7, 0.0], [1.0, -2.0, 0.0]], dtype=torch.float64)
    out = LassoOutput(torch.zeros(2), torch.zeros(2, dtype=torch.long), torch.ones(2).bool(),
                      sets=(S, values), n_atoms=5)
    expected = np.array([[0.7, 0.0, 0.5, 0.0, 0.0], [0.0, 1.0, 0.0, -2.0, 0.0]])
    np.testing.assert_array_equal(out.codes.numpy(), expected)
    Z = out.csr()
    assert scipy.sparse.isspmatrix_csr(Z) and Z.has_sorted_indices and Z.dtype == np.float64
    assert Z.nnz == 4 and not (Z.data == 0).any()
    np.testing.assert_array_equal(Z.toarray(), expected)
    dense = LassoOutput(torch.zeros(2), torch.zeros(2), torch.ones(2).bool(),
                        codes=torch.tensor(expected))
    assert dense.n_atoms == 5 and dense.sets is None
    np.testing.assert_array_equal(dense.csr().toarray(), expected)
    with pytest.raises(ValueError, match="dense codes or index sets and n_atoms"):
        LassoOutput(torch.zeros(2), torch.zeros(2), torch.ones(2).bool(), sets=(S, values))
