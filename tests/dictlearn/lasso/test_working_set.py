"""``toysae.dictlearn.lasso._working_set``: the working-set lasso solver matches the dense
solver on many atoms (cold and warm), its row state, the blocks codes move in, the first
guess of each set, and warm states in any sample order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from problems import dense_reference, gram_problem, wide_tensors

from toysae._buffers import Workspace
from toysae._tuning import FIRST_SET, FIRST_SET_MAX
from toysae.dictlearn import sparse_code
from toysae.dictlearn.lasso._fista import prox_grad
from toysae.dictlearn.lasso._working_set import (
    RowState,
    first_round,
    warm_state,
    working_set_prox_grad,
)


@pytest.mark.parametrize("nonneg", [True, False])
def test_working_sets_match_the_dense_solver_on_many_atoms(nonneg):
    C, G = gram_problem(2, signed=not nonneg, density=0.03)
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
    C, G = gram_problem(3)
    lam = 0.1
    kw = dict(nonneg=True, accelerate=True, max_iter=50_000, tol=1e-10, scale=lam)
    cold = working_set_prox_grad(C, G, lam, init=None, **kw)
    rough = prox_grad(C, G, lam, init=None, **{**kw, "tol": 0.3})
    warm = working_set_prox_grad(C, G, lam, init=rough.codes, **kw)
    assert bool(warm.success.all())
    np.testing.assert_allclose(warm.codes.numpy(), cold.codes.numpy(), atol=1e-7)


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
    C, G = gram_problem(5, density=0.08)
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


def test_warm_state_of_all_samples_in_another_order_keeps_each_samples_responses():
    X, D, G = wide_tensors(6)
    C = X @ D.T
    lam = 0.05
    codes = dense_reference(X, D, G, lam, True).codes
    order = torch.randperm(60, generator=torch.Generator().manual_seed(0))
    kw = dict(nonneg=True, scale=lam, workspace=Workspace(), D=D)
    state = warm_state(C, G, lam, order, codes[order], **kw)
    np.testing.assert_allclose(state.response.numpy(), (C - codes @ G)[order].numpy(),
                               atol=1e-12)
