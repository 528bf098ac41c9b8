"""Random sparse-coding problems shared by the dictlearn tests."""

from __future__ import annotations

import numpy as np


def random_problem(seed: int, d: int = 16, n_atoms: int = 32, n: int = 20,
                   density: float = 0.1, noise: float = 0.02, signed: bool = False):
    """``(X, D, Z)``: ``n`` samples in ``d`` dimensions, each a sparse nonnegative (or
    signed) mix of ``n_atoms`` random unit atoms plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    D = rng.standard_normal((n_atoms, d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    Z = (rng.random((n, n_atoms)) < density) * rng.uniform(0.5, 1.5, (n, n_atoms))
    if signed:
        Z *= rng.choice([-1.0, 1.0], size=(n, n_atoms))
    X = Z @ D + noise * rng.standard_normal((n, d))
    return X, D, Z
