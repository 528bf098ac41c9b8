"""``toysae.dictlearn.updates``: the dictionary update rules: BCD is exact block
minimisation, K-SVD lowers the reconstruction error on a fixed support."""

from __future__ import annotations

import numpy as np
import torch
from problems import planted

from toysae.dictlearn import sparse_code
from toysae.dictlearn.updates import bcd_update, ksvd_update, mod_update


def test_bcd_update_is_exact_block_minimisation():
    rng = np.random.default_rng(102)  # not planted's seed: D must differ from F
    X, F, Z = planted(2, n=300)
    D = rng.standard_normal(F.shape)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    A, B = Z.T @ Z, Z.T @ X

    def surrogate(D):  # = 1/2 ||X - Z D||^2 up to a constant
        return 0.5 * np.trace(D.T @ A @ D) - np.trace(D.T @ B)

    new = bcd_update(D, A, B)
    assert surrogate(new) < surrogate(D) - 1e-3
    np.testing.assert_allclose(np.linalg.norm(new, axis=1), 1.0)
    # Planted codes: the true dictionary is the fixed point.
    np.testing.assert_allclose(bcd_update(F, A, B), F, atol=1e-10)
    np.testing.assert_allclose(mod_update(D, A, B), F, atol=1e-8)


def test_ksvd_update_lowers_reconstruction_error_on_fixed_support():
    rng = np.random.default_rng(103)
    X, F, Z = planted(3, n=300, signed=True)
    D = F + 0.3 * rng.standard_normal(F.shape)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    codes = sparse_code(X, D, 0.0, method="omp", n_nonzero=2, nonneg=False,
                        dtype=torch.float64).codes
    before = np.linalg.norm(X - codes @ D)
    D2, codes2 = ksvd_update(D, X, codes, nonneg=False)
    after = np.linalg.norm(X - codes2 @ D2)
    assert after < 0.9 * before
    assert np.array_equal(codes2 != 0, (codes != 0) & (codes2 != 0))  # support kept
