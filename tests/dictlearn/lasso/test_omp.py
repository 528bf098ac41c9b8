"""``toysae.dictlearn.lasso._omp``: batched orthogonal matching pursuit recovers noiseless
sparse codes exactly (signed and nonnegative), never goes negative when nonnegative, and,
called on the Gram form directly, counts its steps, stops on the residual, never picks an
atom twice, and refits a support with nonnegative least squares when the plain refit has a
negative coefficient."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from problems import random_problem
from scipy.optimize import nnls

from toysae.dictlearn import sparse_code
from toysae.dictlearn.lasso._omp import omp


def _gram(X, D):
    Xt, Dt = torch.tensor(X), torch.tensor(D)
    return Xt @ Dt.T, Dt @ Dt.T, Xt.norm(dim=1)


@pytest.mark.parametrize("nonneg", [True, False])
def test_omp_exact_recovery_noiseless(nonneg):
    rng = np.random.default_rng(6)
    d, k, n, s = 40, 60, 30, 3
    D = rng.standard_normal((k, d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    Z = np.zeros((n, k))
    for i in range(n):
        idx = rng.choice(k, s, replace=False)
        Z[i, idx] = rng.uniform(0.5, 1.5, s) * (1 if nonneg else rng.choice([-1, 1], s))
    X = Z @ D
    res = sparse_code(X, D, 0.0, method="omp", n_nonzero=s, nonneg=nonneg,
                      dtype=torch.float64)
    assert res.success
    np.testing.assert_allclose(res.codes, Z, atol=1e-8)
    assert res.objective < 1e-12
    # More atoms than needed: the exact fit stops the greedy loop early.
    more = sparse_code(X, D, 0.0, method="omp", n_nonzero=s + 3, nonneg=nonneg,
                       dtype=torch.float64)
    np.testing.assert_allclose(more.codes, Z, atol=1e-8)


def test_omp_nonneg_never_negative():
    X, D, _ = random_problem(7, signed=True, noise=0.1)
    res = sparse_code(X, D, 0.0, method="omp", n_nonzero=4, nonneg=True, dtype=torch.float64)
    assert (res.codes >= 0).all()
    assert (np.count_nonzero(res.codes, axis=1) <= 4).all()


def test_omp_counts_its_steps_and_stops_on_an_exact_fit():
    rng = np.random.default_rng(1)
    D = rng.standard_normal((20, 12))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    Z = np.zeros((3, 20))
    Z[0, [4]] = 1.0  # one atom: an exact fit after one step
    Z[1, [2, 9]] = [1.0, -0.5]  # two atoms
    X = Z @ D  # row 2 is zero: no atom is ever worth picking
    out = omp(*_gram(X, D), 5, nonneg=False, rel_tol=1e-10)
    assert out.n_steps.tolist() == [1, 2, 0] and out.success
    np.testing.assert_allclose(out.codes.numpy(), Z, atol=1e-10)
    # With no tolerance, the steps past an exact fit pick atoms on rounding-level responses:
    # new ones, never an atom already in the support (picking one twice makes the refit singular).
    rounding = omp(*_gram(X[:2], D), 5, nonneg=False, rel_tol=0.0)
    np.testing.assert_allclose(rounding.codes.numpy(), Z[:2], atol=1e-10)


def test_omp_picks_each_atom_once_and_its_codes_are_the_least_squares_fit():
    X, D, _ = random_problem(2, d=16, n_atoms=32, n=10, noise=0.3, signed=True)
    out = omp(*_gram(X, D), 6, nonneg=False, rel_tol=0.0)
    Z = out.codes.numpy()
    assert out.n_steps.tolist() == [6] * 10
    for x, z in zip(X, Z, strict=True):
        atoms = np.flatnonzero(z)
        assert atoms.size == 6  # six distinct atoms (a repeat would leave fewer)
        coef, *_ = np.linalg.lstsq(D[atoms].T, x, rcond=None)
        np.testing.assert_allclose(z[atoms], coef, atol=1e-9)


def _nonnegative_omp(x, D, n_nonzero):
    """Nonnegative OMP for one sample, from scratch: pick the atom of largest positive
    response among those not yet picked, refit every picked atom by scipy's NNLS."""
    chosen, z = [], np.zeros(D.shape[0])
    for _ in range(n_nonzero):
        response = D @ (x - z @ D)
        response[chosen] = -np.inf
        if response.max() <= 0:
            break
        chosen.append(int(response.argmax()))
        z = np.zeros(D.shape[0])
        z[chosen] = nnls(D[chosen].T, x)[0]
    return z


def test_nonnegative_omp_refits_a_support_by_nonnegative_least_squares(monkeypatch):
    import toysae.dictlearn.lasso._omp as omp_module

    refits, real = [], omp_module.prox_grad

    def spy(C, *args, **kwargs):
        refits.append(C.shape[0])
        return real(C, *args, **kwargs)

    monkeypatch.setattr(omp_module, "prox_grad", spy)
    # seed 1: one sample's plain refit goes negative at some step (found by search)
    X, D, _ = random_problem(1, d=8, n_atoms=12, n=10, noise=0.3, signed=True)
    out = omp(*_gram(X, D), 4, nonneg=True, rel_tol=0.0)
    assert refits, "no plain refit went negative: the test would not reach the NNLS branch"
    assert out.success and (out.codes >= 0).all()
    expected = np.stack([_nonnegative_omp(x, D, 4) for x in X])
    np.testing.assert_allclose(out.codes.numpy(), expected, atol=1e-6)
