"""theory.matched_lam: the lam whose optimal codes have a given L0."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from theory_helpers import solve_codes

from toysae.sae import make_sae
from toysae.theory import lam_for_l0, sae_lam_for_l0
from toysae.theory.sae import sae_codes


def _problem(seed=0, n=120, d=8, k=16):
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(k, d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    Z = np.maximum(rng.normal(size=(n, k)), 0) * (rng.random((n, k)) < 0.2)
    return Z @ D + 0.05 * rng.normal(size=(n, d)), D


@pytest.mark.parametrize("target", [1.5, 3.0])
def test_the_lam_found_gives_the_target_l0_by_an_independent_solver(target):
    X, D = _problem()
    res = lam_for_l0(X, D, target)
    assert res.success and res.relative_error <= 0.02, res.message
    assert 0 < res.lam < res.lam_max and res.n_iter == len(res.lams) <= 40
    Z = solve_codes(X, D, res.lam)  # exact coordinate descent, not toysae's solver
    assert np.count_nonzero(Z > 1e-10) / len(X) == pytest.approx(target, rel=0.03)


def test_more_sparsity_needs_a_larger_lam_and_bias_is_subtracted():
    X, D = _problem(1)
    sparse, dense = lam_for_l0(X, D, 1.0), lam_for_l0(X, D, 4.0)
    assert sparse.lam > dense.lam
    b = np.linspace(-2, 2, X.shape[1])
    shifted = lam_for_l0(X + b, D, 4.0, bias=b)
    assert shifted.lam == pytest.approx(dense.lam, rel=1e-9)


def test_an_unreachable_target_is_reported_not_hidden():
    # One sample: its L0 is an integer, so 2.5 within 1% cannot be reached.
    X, D = _problem(2, n=1)
    res = lam_for_l0(X, D, 2.5, rtol=0.01)
    assert not res.success and "no lam found" in res.message
    assert res.l0 in (2.0, 3.0)
    few = lam_for_l0(*_problem(3), 3.0, rtol=1e-4, max_evals=2)
    assert not few.success and few.n_iter == 2


def test_the_sae_wrapper_targets_its_own_l0():
    torch.manual_seed(0)
    sae = make_sae("relu", 8, 16, seed=1).double()
    X, _ = _problem(4)
    own = np.count_nonzero(sae_codes(sae, X)) / len(X)
    res = sae_lam_for_l0(sae, X, rtol=0.05)
    assert res.target_l0 == pytest.approx(own) and res.success, res.message


@pytest.mark.parametrize("kwargs, match", [
    ({"target_l0": 0.0}, "target_l0"), ({"target_l0": float("nan")}, "target_l0"),
    ({"target_l0": 9.0}, "target_l0"), ({"target_l0": 2.0, "rtol": 0.0}, "rtol"),
    ({"target_l0": 2.0, "max_evals": 1}, "max_evals")])
def test_bad_input_is_refused(kwargs, match):
    X, D = _problem()
    with pytest.raises(ValueError, match=match):
        lam_for_l0(X, D, **kwargs)
