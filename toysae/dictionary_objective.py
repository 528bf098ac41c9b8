"""The dictionary-learning objective, one definition for the whole package.

``L(D, Z) = 1/2 * sum_n ||x_n - z_n D - b||^2 + lam * sum_n ||z_n||_1``

(the scikit-learn scaling; docs/design.md, "Conventions"), with an optional
decoder bias ``b`` so that ``x_hat = Z @ D + b``. The formula itself lives in
:func:`objective_from_parts`; every caller goes through it:

- :func:`dictionary_objective` evaluates it from ``(X, D, Z)``;
- a solver or checker that already holds the two sums (the squared residual
  from a chunked or index-set pass, and the L1 norm of the codes) passes them
  to :func:`objective_from_parts` and never rebuilds the residual.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from toysae._tuning import CHECK_CHUNK_ENTRIES
from toysae._validation import check_float, check_problem_shapes, to_numpy


def objective_from_parts(squared_residual, l1, lam: float):
    """``1/2 * squared_residual + lam * l1``: the objective from its two sums.

    ``squared_residual`` is ``sum ||x - z D - b||^2`` and ``l1`` is
    ``sum ||z||_1``, over all samples (floats) or per sample (numpy arrays or
    torch tensors of the same shape; the result has that type). No checks:
    this is the inner formula, called with values the caller computed.
    """
    return 0.5 * squared_residual + lam * l1


def _codes(Z, n: int, n_atoms: int):
    """Z as float64 numpy or scipy CSR (finite, right shape); its per-row L1 norms."""
    if scipy.sparse.issparse(Z):
        Z = scipy.sparse.csr_matrix(Z, dtype=np.float64)
        check_problem_shapes((n, 0), (n_atoms, 0), Z.shape)
        if Z.nnz and not np.isfinite(Z.data).all():
            raise ValueError(f"Z contains {int((~np.isfinite(Z.data)).sum())} NaN or Inf "
                             "value(s)")
        return Z, np.asarray(abs(Z).sum(axis=1)).ravel()
    Z = to_numpy(Z, "Z", ndim=2)
    check_problem_shapes((n, 0), (n_atoms, 0), Z.shape)
    return Z, np.abs(Z).sum(axis=1)


def dictionary_objective(X, D, Z, lam: float, *, bias=None, per_sample: bool = False):
    """The objective of codes ``Z`` on dictionary ``D`` for data ``X``, in float64.

    Parameters
    ----------
    X : (n_samples, d) data; numpy array or torch tensor.
    D : (n_atoms, d) dictionary, one atom per row; numpy array or torch tensor.
    Z : (n_samples, n_atoms) codes: numpy array, torch tensor or scipy sparse.
    lam : sparsity penalty, ``lam >= 0``.
    bias : optional (d,) decoder bias.
    per_sample : return the (n_samples,) objective of each sample instead of the sum.

    The residual is built in row blocks (memory stays bounded for any
    ``n_samples``); a sparse ``Z`` is multiplied as sparse.
    """
    X = to_numpy(X, "X", ndim=2)
    D = to_numpy(D, "D", ndim=2)
    lam = check_float(lam, "lam", minimum=0.0)
    check_problem_shapes(X.shape, D.shape)
    Z, l1 = _codes(Z, X.shape[0], D.shape[0])
    b = None
    if bias is not None:
        b = to_numpy(bias, "bias", ndim=1)
        check_problem_shapes(X.shape, D.shape, bias_shape=b.shape)
    n, d = X.shape
    squared = np.empty(n)
    step = max(1, CHECK_CHUNK_ENTRIES // max(d, 1))
    for start in range(0, n, step):
        rows = slice(start, start + step)
        R = X[rows] - Z[rows] @ D
        if b is not None:
            R -= b
        squared[rows] = np.einsum("ij,ij->i", R, R)
    if per_sample:
        return objective_from_parts(squared, l1, lam)
    return float(objective_from_parts(squared.sum(), l1.sum(), lam))
