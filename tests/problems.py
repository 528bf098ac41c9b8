"""Random sparse-coding problems shared by the dictlearn tests."""

from __future__ import annotations

import numpy as np


def random_problem(seed: int, d: int = 16, k: int = 32, n: int = 20, density: float = 0.1,
                   noise: float = 0.02, signed: bool = False):
    rng = np.random.default_rng(seed)
    D = rng.standard_normal((k, d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    Z = (rng.random((n, k)) < density) * rng.uniform(0.5, 1.5, (n, k))
    if signed:
        Z *= rng.choice([-1.0, 1.0], size=(n, k))
    X = Z @ D + noise * rng.standard_normal((n, d))
    return X, D, Z
