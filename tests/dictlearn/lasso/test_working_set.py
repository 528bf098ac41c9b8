"""The working-set lasso solver's parts: exact refits, set products, the row state, and the
scratch-buffer workspace."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from problems import random_problem

from toysae._buffers import Workspace
from toysae._tuning import FIRST_SET, FIRST_SET_MAX
from toysae._validation import to_numpy
from toysae.dictlearn import sparse_code
from toysae.dictlearn.lasso._fista import prox_grad
from toysae.dictlearn.lasso._sets import minus_gram_times, refit_on_support, set_times
from toysae.dictlearn.lasso._working_set import RowState, first_round, working_set_prox_grad


def _problem(seed, density=0.02, signed=False):
    """(C, G) in float64 for 40 samples on 256 atoms in 48 dimensions (the working-set path)."""
    X, D, _ = random_problem(seed, d=48, n_atoms=256, n=40, density=density, signed=signed)
    Xt, Dt = torch.tensor(X), torch.tensor(D)
    return Xt @ Dt.T, Dt @ Dt.T


def _blocks(C, G, S):
    return C.gather(1, S), G[S[:, :, None], S[:, None, :]]


def test_refit_on_the_optimal_support_is_the_optimum():
    C, G = _problem(0)
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


@pytest.mark.parametrize("nonneg", [True, False])
def test_working_sets_match_the_dense_solver_on_many_atoms(nonneg):
    C, G = _problem(2, signed=not nonneg, density=0.03)
    lam = 0.05
    kw = dict(nonneg=nonneg, accelerate=True, max_iter=50_000, tol=1e-10, init=None,
              scale=lam)
    ws = working_set_prox_grad(C, G, lam, **kw)
    dense = prox_grad(C, G, lam, **kw)
    assert bool(ws.success.all()) and float(ws.kkt.max()) <= 1e-10
    np.testing.assert_allclose(ws.codes.numpy(), dense.codes.numpy(), atol=1e-7)
    S, values = ws.sets
    rebuilt = torch.zeros_like(C).index_put_((torch.arange(C.shape[0])[:, None], S), values,
                                             accumulate=True)
    assert torch.equal(rebuilt, ws.codes)


def test_working_sets_from_a_warm_start_agree():
    C, G = _problem(3)
    lam = 0.1
    kw = dict(nonneg=True, accelerate=True, max_iter=50_000, tol=1e-10, scale=lam)
    cold = working_set_prox_grad(C, G, lam, init=None, **kw)
    rough = prox_grad(C, G, lam, init=None, **{**kw, "tol": 0.3})
    warm = working_set_prox_grad(C, G, lam, init=rough.codes, **kw)
    assert bool(warm.success.all())
    np.testing.assert_allclose(warm.codes.numpy(), cold.codes.numpy(), atol=1e-7)


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


def test_workspace_buffers_are_aligned_and_sized():
    ws = Workspace()
    for dtype in (torch.float32, torch.float64):
        buf = ws.empty(f"a{dtype}", (33, 17), dtype)
        assert buf.shape == (33, 17) and buf.dtype == dtype
        assert buf.data_ptr() % 64 == 0
        assert bool((ws.zeros(f"z{dtype}", (5, 3), dtype) == 0).all())


def test_workspace_copy_shares_aligned_input_and_converts_the_rest():
    ws = Workspace()
    aligned = ws.empty("aligned", (4, 6), torch.float32).numpy()
    aligned[:] = 1.5
    shared = ws.copy("x", aligned, torch.float32)
    assert shared.data_ptr() == aligned.ctypes.data
    assert "x" not in ws.held()  # nothing was taken
    x64 = np.arange(24, dtype=np.float64).reshape(4, 6)
    converted = ws.copy("x", x64, torch.float32)
    assert converted.dtype == torch.float32 and converted.data_ptr() % 64 == 0
    np.testing.assert_array_equal(converted.numpy(), x64.astype(np.float32))


def test_to_numpy_keeps_float_dtypes_when_asked():
    x32 = np.ones((2, 2), dtype=np.float32)
    assert to_numpy(x32, "x", dtype=None) is x32
    assert to_numpy([[1, 2]], "x", dtype=None).dtype == np.float64
    with pytest.raises(TypeError, match="x"):
        to_numpy([["a"]], "x", dtype=None)


def test_workspace_never_hands_out_a_buffer_twice_while_it_is_held():
    ws = Workspace()
    first = ws.empty("g", (1000, 8), torch.float32)
    address = first.data_ptr()
    with pytest.raises(RuntimeError, match="'g' is still in use"):
        ws.empty("g", (1000, 8), torch.float32)
    other = ws.empty("h", (1000, 8), torch.float32)  # another name: other memory
    assert abs(other.data_ptr() - address) >= 1000 * 8 * 4
    ws.release("g")
    again = ws.empty("g", (500, 8), torch.float32)  # released: the same memory, reused
    assert again.data_ptr() == address
    bigger = ws.empty("big", (10, 10), torch.float64)
    ws.release("big")
    grown = ws.empty("big", (100, 100), torch.float64)  # too small: grown, not overrun
    assert grown.numel() == 10_000 and grown.data_ptr() % 64 == 0
    del bigger
    # A session gives back exactly the names taken inside it.
    with ws.session():
        ws.empty("inner", (3,), torch.float32)
        assert "inner" in ws.held()
    assert ws.held() == {"g", "h", "big"}
    plain = Workspace(reuse=False)
    assert plain.empty("g", (4,), torch.float32).shape == (4,)
    with pytest.raises(RuntimeError, match="still in use"):  # the same rule without reuse
        plain.empty("g", (4,), torch.float32)
    assert plain.nbytes == 0  # plain torch.empty: nothing kept
    # Off the CPU the device's own caching allocator reuses memory: plain torch.empty.
    meta = ws.empty("g", (3, 4), torch.float32, device="meta")
    assert meta.device.type == "meta" and ws.held() == {"g", "h", "big"}


def test_workspace_pickles_empty_and_solves_are_unchanged_by_reuse():
    import pickle

    C, G = _problem(5)
    ws = Workspace()
    kw = dict(nonneg=True, accelerate=True, max_iter=5000, tol=1e-10, init=None, scale=0.1)
    a = working_set_prox_grad(C, G, 0.1, workspace=ws, **kw)
    assert ws.held() == frozenset() and ws.nbytes > 0  # everything given back
    b = working_set_prox_grad(C, G, 0.1, workspace=ws, **kw)
    c = working_set_prox_grad(C, G, 0.1, workspace=Workspace(reuse=False), **kw)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.codes, c.codes)
    copy = pickle.loads(pickle.dumps(ws))
    assert isinstance(copy, Workspace) and copy.nbytes == 0


def test_row_state_keep_compacts_every_field_with_one_index():
    ws = Workspace()
    n, n_atoms, m = 6, 10, 3
    response = ws.empty("lasso.response.0", (n, n_atoms), torch.float64)
    response.copy_(torch.arange(n * n_atoms, dtype=torch.float64).view(n, n_atoms))
    state = RowState(sample=torch.arange(n) + 100,
                     atoms=torch.arange(n * m).view(n, m) % n_atoms,
                     codes=torch.arange(n * m, dtype=torch.float64).view(n, m),
                     response=response, used=torch.arange(n) * 2,
                     kkt=torch.linspace(0, 1, n, dtype=torch.float64), slot=0)
    rows = torch.tensor([1, 4])
    kept = state.keep(rows, ws)
    assert len(kept) == 2 and kept.slot == 1
    for field in ("sample", "atoms", "codes", "used", "kkt"):
        assert torch.equal(getattr(kept, field), getattr(state, field)[rows]), field
    assert torch.equal(kept.response, response[rows])
    assert ws.held() == {"lasso.response.1"}  # the old buffer was given back
    again = kept.keep(torch.tensor([0]), ws)
    assert again.slot == 0 and torch.equal(again.sample, torch.tensor([101]))
    assert ws.held() == {"lasso.response.0"}


def test_codes_move_between_working_sets_in_bounded_blocks(monkeypatch):
    """Moving codes between working sets matches every set atom of a row against every
    other at once; a dense warm start made that (rows, n_atoms, n_atoms) and asked for
    36 GB at 4,096 samples x 4,096 atoms. In blocks of rows the codes must be the same."""
    import toysae._tuning as tuning
    import toysae.dictlearn.lasso._working_set as working_set

    rng = np.random.default_rng(3)
    D = rng.standard_normal((300, 24))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    X = np.abs(rng.standard_normal((64, 300))) * (rng.random((64, 300)) < 0.03) @ D
    init = np.abs(rng.standard_normal((64, 300))) * (rng.random((64, 300)) < 0.04)
    one_pass = sparse_code(X, D, 0.05, dtype=torch.float64, tol=1e-9, init=init,
                           max_iter=20000).codes
    shapes, real = [], working_set._move_to_sets

    def spy(S_old, values, S_new, valid):
        shapes.append((S_new.shape[0], S_new.shape[1] * S_old.shape[1]))
        return real(S_old, values, S_new, valid)

    monkeypatch.setattr(working_set, "_move_to_sets", spy)
    monkeypatch.setattr(tuning, "MOVE_BLOCK_ENTRIES", 1000)  # a few rows per block
    blocked = sparse_code(X, D, 0.05, dtype=torch.float64, tol=1e-9, init=init,
                           max_iter=20000).codes
    assert any(rows * per_row > 1000 for rows, per_row in shapes)  # blocks were needed
    np.testing.assert_array_equal(np.asarray(blocked), np.asarray(one_pass))


def test_the_first_guess_grows_on_wide_supports_and_the_solve_stays_exact():
    # About 20 of 256 atoms per sample: an 8-atom first guess fills on nearly every
    # sample, so the first round doubles it (on those samples only), and the cap of the
    # later rounds follows; the codes are still the dense solver's.
    C, G = _problem(5, density=0.08)
    lam = 0.02
    first = first_round(C, G, lam, nonneg=True, first_set=FIRST_SET, scale=lam,
                        workspace=Workspace())
    width = first.atoms.shape[1]
    assert FIRST_SET < width <= FIRST_SET_MAX
    kept = (first.codes != 0).sum(dim=1)
    assert int(kept.max()) > FIRST_SET  # some samples did get the wider guess
    assert bool((first.codes[:, FIRST_SET:][kept <= FIRST_SET] == 0).all())  # padding
    kw = dict(nonneg=True, accelerate=True, max_iter=50_000, tol=1e-10, init=None,
              scale=lam)
    ws = working_set_prox_grad(C, G, lam, **kw)
    dense = prox_grad(C, G, lam, **kw)
    assert bool(ws.success.all())
    np.testing.assert_allclose(ws.codes.numpy(), dense.codes.numpy(), atol=1e-7)
    assert int((dense.codes != 0).sum(dim=1).float().median()) > FIRST_SET
