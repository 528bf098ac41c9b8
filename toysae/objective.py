"""The dictionary-learning objective, one definition for the whole package.

``L(D, Z) = 1/2 * sum_n ||x_n - z_n D||^2 + lam * sum_n ||z_n||_1``
(the scikit-learn scaling; DESIGN.md, Conventions), optionally with a decoder
bias ``b`` so that ``x_hat = Z @ D + b``.
"""

from __future__ import annotations

import numpy as np

from toysae._validation import check_float, to_numpy


def dictionary_objective(X, D, Z, lam: float, *, bias=None) -> float:
    """Objective value in float64.

    Parameters
    ----------
    X : (n_samples, d) data.
    D : (n_atoms, d) dictionary, one atom per row.
    Z : (n_samples, n_atoms) codes.
    lam : sparsity penalty, ``lam >= 0``.
    bias : optional (d,) decoder bias.
    """
    X = to_numpy(X, "X", ndim=2)
    D = to_numpy(D, "D", ndim=2)
    Z = to_numpy(Z, "Z", ndim=2)
    lam = check_float(lam, "lam", minimum=0.0)
    if D.shape[1] != X.shape[1]:
        raise ValueError(f"D has {D.shape[1]} columns but X has {X.shape[1]}; they must match")
    if Z.shape != (X.shape[0], D.shape[0]):
        raise ValueError(f"Z must have shape {(X.shape[0], D.shape[0])}, got {Z.shape}")
    R = X - Z @ D
    if bias is not None:
        b = to_numpy(bias, "bias", ndim=1)
        if b.shape != (X.shape[1],):
            raise ValueError(f"bias must have shape {(X.shape[1],)}, got {b.shape}")
        R -= b
    return float(0.5 * np.einsum("ij,ij->", R, R) + lam * np.abs(Z).sum())
