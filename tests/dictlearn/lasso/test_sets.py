"""``toysae.dictlearn.lasso._sets``: the algebra of codes on per-sample index sets: exact
refits on a support (and what they flag), set products."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from problems import gram_problem

from toysae.dictlearn.lasso._fista import prox_grad
from toysae.dictlearn.lasso._sets import minus_gram_times, refit_on_support, set_times


def _blocks(C, G, S):
    return C.gather(1, S), G[S[:, :, None], S[:, None, :]]


def test_refit_on_the_optimal_support_is_the_optimum():
    C, G = gram_problem(0)
    lam = 0.1
    opt = prox_grad(C, G, lam, nonneg=True, accelerate=True, max_iter=50_000, tol=1e-12,
                    init=None, scale=lam)
    assert bool(opt.success.all())
    m = int((opt.codes != 0).sum(dim=1).max())
    S = opt.codes.abs().topk(m, dim=1).indices
    c, Gs = _blocks(C, G, S)
    support = opt.codes.gather(1, S) != 0
    z, consistent, dropped = refit_on_support(c, Gs, support, torch.ones_like(c), lam)
    assert bool(consistent.all()) and not bool(dropped.any())
    np.testing.assert_allclose(z.numpy(), opt.codes.gather(1, S).numpy(), atol=1e-9)


def test_refit_flags_and_drops_an_atom_that_would_turn_negative():
    # Two nearly parallel atoms and x along the first: the refit on both gives the
    # second a negative code.
    G = torch.tensor([[[1.0, 0.9], [0.9, 1.0]]], dtype=torch.float64)
    c = torch.tensor([[1.0, 0.9]], dtype=torch.float64)  # x = d_0
    support = torch.tensor([[True, True]])
    sign = torch.ones_like(c)
    z, consistent, dropped = refit_on_support(c, G, support, sign, 0.1, max_drops=0)
    assert not bool(consistent[0]) and float(z[0, 1]) < 0
    z, consistent, dropped = refit_on_support(c, G, support, sign, 0.1, max_drops=1)
    assert bool(consistent[0]) and bool(dropped[0])
    np.testing.assert_allclose(z.numpy(), [[0.9, 0.0]], atol=1e-12)


def test_refit_reports_a_singular_block():
    G = torch.ones(1, 2, 2, dtype=torch.float64)  # two identical atoms
    c = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    _, consistent, _ = refit_on_support(c, G, torch.ones(1, 2, dtype=torch.bool),
                                        torch.ones_like(c), 0.1, max_drops=0)
    assert not bool(consistent[0])


def test_set_times_is_the_dense_product():
    rng = np.random.default_rng(1)
    M = torch.tensor(rng.standard_normal((30, 7)))
    S = torch.tensor(rng.integers(0, 30, (5, 4)))
    values = torch.tensor(rng.standard_normal((5, 4)))
    values[:, -1] = 0.0  # padding
    S[:, -1] = 0
    dense = torch.zeros(5, 30, dtype=torch.float64).index_put_(
        (torch.arange(5)[:, None], S), values, accumulate=True)
    np.testing.assert_allclose(set_times(S, values, M).numpy(), (dense @ M).numpy(),
                               atol=1e-12)


@pytest.mark.parametrize(("m", "cached", "route"), [(1, False, "G"), (6, False, "D"),
                                                    (6, True, "G")])
def test_minus_gram_times_is_base_minus_the_gram_product_by_either_route(monkeypatch, m,
                                                                        cached, route):
    # Through D when the sets are wide against d = 40 (m * 30 > 40) and G is too large for
    # the cache (here: a zero-byte cache), else by gathering rows of G.
    import toysae.dictlearn.lasso._sets as sets

    monkeypatch.setattr(sets, "GRAM_CACHED_BYTES", 1 << 30 if cached else 0)
    widths = []
    real = sets.set_times
    monkeypatch.setattr(sets, "set_times",
                        lambda S, v, M: widths.append(M.shape[1]) or real(S, v, M))
    rng = np.random.default_rng(2)
    D = torch.tensor(rng.standard_normal((50, 40)))
    G = D @ D.T
    S = torch.tensor(rng.integers(0, 50, (5, m)))
    values = torch.tensor(rng.standard_normal((5, m)))
    dense = torch.zeros(5, 50, dtype=torch.float64).index_put_(
        (torch.arange(5)[:, None], S), values, accumulate=True)
    base = torch.tensor(rng.standard_normal((5, 50)))
    expected = (base - dense @ G).numpy()
    for dictionary in (None, D):
        out = torch.empty_like(base)
        minus_gram_times(base, S, values, G, dictionary, out=out)
        np.testing.assert_allclose(out.numpy(), expected, atol=1e-10)
        inplace = base.clone()
        assert minus_gram_times(inplace, S, values, G, dictionary,
                                out=inplace).data_ptr() == inplace.data_ptr()
        np.testing.assert_allclose(inplace.numpy(), expected, atol=1e-10)
    assert widths[:2] == [50, 50]  # without D: always G
    assert widths[2:] == ([40, 40] if route == "D" else [50, 50])
