"""``toysae.dictlearn.lasso._mixed_precision``: float64 lasso solves that search their
supports in float32: the same answer as the float64 solvers, every route of the polish
and the finish taken."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from problems import dense_reference, wide_tensors

from toysae.dictlearn.lasso import _mixed_precision as mixed
from toysae.dictlearn.lasso._fista import LassoOutput
from toysae.dictlearn.lasso._mixed_precision import mixed_precision_lasso, set_correlations
from toysae.dictlearn.lasso._working_set import working_set_prox_grad


@pytest.mark.parametrize("nonneg", [True, False])
@pytest.mark.parametrize("density", [0.02, 0.08])  # supports of ~5 and ~20: several buckets
def test_mixed_precision_gives_the_float64_optimum(nonneg, density):
    X, D, G = wide_tensors(1, density=density, signed=not nonneg)
    lam = 0.02
    out = mixed_precision_lasso(X, D, G, lam, nonneg=nonneg, accelerate=True,
                                max_iter=50_000, tol=1e-10, scale=lam)
    ref = dense_reference(X, D, G, lam, nonneg)
    assert out.codes.dtype == torch.float64
    assert bool(out.success.all()) and float(out.kkt.max()) <= 1e-10
    np.testing.assert_allclose(out.codes.numpy(), ref.codes.numpy(), atol=1e-8)
    np.testing.assert_array_equal(out.codes.numpy() != 0, ref.codes.numpy() != 0)


def test_samples_the_float32_search_leaves_short_are_finished_in_float64(monkeypatch):
    # A loose search (KKT gap 0.01) leaves wrong supports on about half of the samples:
    # the float64 finish must take those and still land on the optimum.
    X, D, G = wide_tensors(2, density=0.08)
    lam = 0.02
    monkeypatch.setattr(mixed, "SEARCH_TOL", 0.01)
    calls, real = [], mixed.working_set_prox_grad

    def spy(C, G_, lam_, **kw):
        calls.append((C.dtype, C.shape[0], kw["init"] is not None))
        return real(C, G_, lam_, **kw)

    monkeypatch.setattr(mixed, "working_set_prox_grad", spy)
    out = mixed_precision_lasso(X, D, G, lam, nonneg=True, accelerate=True,
                                max_iter=50_000, tol=1e-10, scale=lam)
    assert calls[0] == (torch.float32, 60, False)  # the search, cold
    assert len(calls) == 2 and calls[1][0] == torch.float64 and calls[1][2]  # warm finish
    assert 0 < calls[1][1] < 60
    ref = dense_reference(X, D, G, lam, True)
    assert bool(out.success.all())
    np.testing.assert_allclose(out.codes.numpy(), ref.codes.numpy(), atol=1e-8)


def test_the_finish_replaces_a_late_samples_polished_codes_whatever_their_widths():
    # sample 1's polish left 6 atoms; its finish has 2 (narrower sets): none of the 6 stay
    buckets = [(torch.tensor([0, 1]), torch.tensor([[3, 4, 0, 0, 0, 0], [5, 6, 7, 8, 9, 10]]),
                torch.tensor([[1.0, 2.0, 0, 0, 0, 0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]],
                             dtype=torch.float64))]
    finish = LassoOutput(torch.tensor([0.0], dtype=torch.float64), torch.tensor([4]),
                         torch.tensor([True]), sets=(torch.tensor([[11, 12]]), torch.tensor(
                             [[0.5, 0.25]], dtype=torch.float64)), n_atoms=16)
    out = mixed._merged(2, 16, buckets, torch.tensor([0.0, 3.0], dtype=torch.float64),
                        torch.tensor([7, 9]), torch.tensor([1]), finish)
    want = torch.zeros(2, 16, dtype=torch.float64)
    want[0, 3], want[0, 4], want[1, 11], want[1, 12] = 1.0, 2.0, 0.5, 0.25
    assert out.codes.dtype == torch.float64 and torch.equal(out.codes, want)
    assert out.kkt.tolist() == [0.0, 0.0] and out.n_iter.tolist() == [7, 13]
    assert bool(out.success.all())


def test_mixed_precision_reports_samples_it_could_not_finish():
    X, D, G = wide_tensors(3, density=0.08)
    out = mixed_precision_lasso(X, D, G, 0.02, nonneg=True, accelerate=True, max_iter=2,
                                tol=1e-12, scale=0.02)
    assert not bool(out.success.all())
    assert float(out.kkt.max()) > 1e-12


def test_mixed_precision_on_no_samples():
    _, D, G = wide_tensors(0)
    out = mixed_precision_lasso(torch.zeros(0, 48, dtype=torch.float64), D, G, 0.1,
                                nonneg=True, accelerate=True, max_iter=100, tol=1e-9,
                                scale=0.1)
    assert out.codes.shape == (0, 256) and out.kkt.shape == (0,)


def test_set_correlations_are_the_full_products_on_each_rows_leading_entries():
    X, D, _ = wide_tensors(4)
    S = torch.randint(0, 256, (60, 7))
    count = torch.randint(0, 8, (60,))
    count[0], count[1] = 0, 7
    want = (X @ D.T).gather(1, S) * (torch.arange(7)[None, :] < count[:, None])
    np.testing.assert_allclose(set_correlations(X, D, S, count).numpy(), want.numpy(),
                               rtol=1e-12, atol=1e-12)


def test_near_duplicate_atoms_the_route_reports_what_it_certifies_and_matches_float64():
    # Pairs of atoms 1e-5 apart (cosine 1 - 5e-11): float32 rounding cannot tell the twins
    # apart, and the problem is so ill-conditioned that some samples do not reach the
    # tolerance in the iterations given, on either route. Those must be reported, and the
    # codes must be as good as the float64 solver's.
    rng = np.random.default_rng(7)
    base = rng.standard_normal((128, 32))
    D = np.concatenate([base, base + 1e-5 * rng.standard_normal((128, 32))])
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    Z = (rng.random((40, 256)) < 0.03) * rng.uniform(0.5, 1.5, (40, 256))
    X = torch.tensor(Z @ D + 0.01 * rng.standard_normal((40, 32)))
    Dt = torch.tensor(D)
    G = Dt @ Dt.T
    lam, tol = 0.05, 1e-9
    kw = dict(nonneg=True, accelerate=True, max_iter=3000, tol=tol, scale=lam)
    out = mixed_precision_lasso(X, Dt, G, lam, **kw)
    ref = working_set_prox_grad(X @ Dt.T, G, lam, init=None, D=Dt, **kw)
    assert torch.equal(out.success, out.kkt <= tol)  # success is exactly the certificate
    assert 0 < int((~out.success).sum()) < 40

    def objective(codes):
        return float((0.5 * (X - codes @ Dt).square().sum(1) + lam * codes.sum(1)).sum())

    assert objective(out.codes) <= objective(ref.codes) * (1 + 1e-6)
