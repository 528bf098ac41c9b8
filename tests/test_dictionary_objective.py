"""``toysae.dictionary_objective``: ``1/2 sum ||x - z D - b||^2 + lam sum |z|`` on a hand-made
problem, the same for numpy, torch and sparse codes, per sample and in any number of row
blocks; bad input refused naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import torch

import toysae.dictionary_objective as objective_module
from toysae.dictionary_objective import dictionary_objective, objective_from_parts

# Two samples in d = 2, two atoms. Residuals by hand: x0 - z0 D = (1, 2) - (1, 0) = (0, 2),
# x1 - z1 D = (0, 3) - (-2 * (0, 1)) = (0, 5); squared 4 and 25; |z| sums 1 and 2.
X = np.array([[1.0, 2.0], [0.0, 3.0]])
D = np.array([[1.0, 0.0], [0.0, 1.0]])
Z = np.array([[1.0, 0.0], [0.0, -2.0]])
LAM = 0.5
PER_SAMPLE = np.array([0.5 * 4 + LAM * 1, 0.5 * 25 + LAM * 2])


def _problem(seed=0, n=37, n_atoms=6, d=5):
    rng = np.random.default_rng(seed)
    Zr = rng.normal(size=(n, n_atoms)) * (rng.uniform(size=(n, n_atoms)) < 0.3)
    return rng.normal(size=(n, d)), rng.normal(size=(n_atoms, d)), Zr


def test_the_objective_of_a_hand_made_problem():
    assert dictionary_objective(X, D, Z, LAM) == PER_SAMPLE.sum()
    np.testing.assert_array_equal(dictionary_objective(X, D, Z, LAM, per_sample=True), PER_SAMPLE)
    # the bias is subtracted from every residual: x0 - z0 D - b = (0, 2) - (0, 2) = 0
    bias = np.array([0.0, 2.0])
    per = dictionary_objective(X, D, Z, LAM, bias=bias, per_sample=True)
    np.testing.assert_array_equal(per, [0.5 * 0 + LAM * 1, 0.5 * 9 + LAM * 2])
    assert dictionary_objective(X, D, Z, 0.0) == 0.5 * (4 + 25)


def test_objective_from_parts_is_the_formula_for_floats_arrays_and_tensors():
    assert objective_from_parts(4.0, 3.0, 0.5) == 3.5
    np.testing.assert_array_equal(objective_from_parts(np.array([4.0, 2.0]), np.array([1.0, 0.0]),
                                                       2.0), [4.0, 1.0])
    out = objective_from_parts(torch.tensor([4.0]), torch.tensor([1.0]), 2.0)
    assert isinstance(out, torch.Tensor) and out.item() == 4.0


def test_numpy_torch_and_sparse_codes_give_the_same_objective():
    Xr, Dr, Zr = _problem()
    bias = np.linspace(-1, 1, 5)
    R = Xr - Zr @ Dr - bias  # the residual, built in one piece
    ref = 0.5 * np.einsum("ij,ij->i", R, R) + 0.1 * np.abs(Zr).sum(axis=1)
    per = dictionary_objective(Xr, Dr, Zr, 0.1, bias=bias, per_sample=True)
    np.testing.assert_allclose(per, ref, rtol=1e-13)
    total = dictionary_objective(Xr, Dr, Zr, 0.1, bias=bias)
    assert isinstance(total, float) and total == pytest.approx(ref.sum(), rel=1e-13)
    as_torch = dictionary_objective(torch.from_numpy(Xr), torch.from_numpy(Dr),
                                    torch.from_numpy(Zr), 0.1, bias=torch.from_numpy(bias))
    assert as_torch == total
    for sparse in (scipy.sparse.csr_matrix(Zr), scipy.sparse.coo_matrix(Zr)):
        assert dictionary_objective(Xr, Dr, sparse, 0.1, bias=bias) == pytest.approx(total,
                                                                                     rel=1e-13)


def test_row_blocks_give_the_one_block_objective(monkeypatch):
    """The residual is built in blocks of CHECK_CHUNK_ENTRIES // d rows; blocks of 5, 2 and
    1 rows (37 samples: the last block is short) give the one-block values."""
    Xr, Dr, Zr = _problem(seed=1)
    whole = dictionary_objective(Xr, Dr, Zr, 0.2, per_sample=True)
    for entries in (25, 10, 1):
        monkeypatch.setattr(objective_module, "CHECK_CHUNK_ENTRIES", entries)
        np.testing.assert_allclose(dictionary_objective(Xr, Dr, Zr, 0.2, per_sample=True), whole,
                                   rtol=1e-14)


def test_bad_input_is_refused_naming_the_argument():
    with pytest.raises(TypeError, match="^X must be an array"):
        dictionary_objective(None, D, Z, LAM)
    with pytest.raises(ValueError, match="^D must have 2 dimension"):
        dictionary_objective(X, D[0], Z, LAM)
    with pytest.raises(ValueError, match="D has 3 columns but X has 2"):
        dictionary_objective(X, np.ones((2, 3)), Z, LAM)
    with pytest.raises(ValueError, match=r"Z must have shape \(n_samples, n_atoms\) = \(2, 2\)"):
        dictionary_objective(X, D, Z[:1], LAM)
    with pytest.raises(ValueError, match=r"Z must have shape .* got \(2, 3\)"):
        dictionary_objective(X, D, scipy.sparse.csr_matrix(np.ones((2, 3))), LAM)
    with pytest.raises(ValueError, match="^Z contains 1 NaN or Inf"):
        dictionary_objective(X, D, scipy.sparse.csr_matrix([[np.inf, 0.0], [0.0, 1.0]]), LAM)
    with pytest.raises(ValueError, match="^Z contains 1 NaN or Inf"):
        dictionary_objective(X, D, np.array([[np.nan, 0.0], [0.0, 1.0]]), LAM)
    with pytest.raises(ValueError, match="^lam must be >= 0"):
        dictionary_objective(X, D, Z, -0.1)
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        dictionary_objective(X, D, Z, LAM, bias=np.zeros(3))
    with pytest.raises(ValueError, match="^bias must have 1 dimension"):
        dictionary_objective(X, D, Z, LAM, bias=np.zeros((1, 2)))
