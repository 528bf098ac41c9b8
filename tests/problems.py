"""Random sparse-coding problems shared by the dictlearn tests (tests/dictlearn/) and the
scratch-buffer tests (tests/test_buffers.py)."""

from __future__ import annotations

import numpy as np
import torch

from toysae.dictlearn.lasso._fista import prox_grad


def support(Z, thresh=1e-7):
    """The entries of codes ``Z`` that count as nonzero: ``|z| > thresh``."""
    return np.abs(Z) > thresh


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


def planted(seed=0, d=10, k=8, n=1500, signed=False, max_active=2, noise=0.0):
    """``(X, F, Z)``: ``n`` samples, each 1 to ``max_active`` of ``k`` random unit features
    ``F`` with magnitudes in [0.5, 1.5] (signed if asked), plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((k, d))
    F /= np.linalg.norm(F, axis=1, keepdims=True)
    Z = np.zeros((n, k))
    for i in range(n):
        idx = rng.choice(k, rng.integers(1, max_active + 1), replace=False)
        Z[i, idx] = rng.uniform(0.5, 1.5, idx.size)
        if signed:
            Z[i, idx] *= rng.choice([-1.0, 1.0], idx.size)
    X = Z @ F + noise * rng.standard_normal((n, d))
    return X, F, Z


def gram_problem(seed, density=0.02, signed=False):
    """(C, G) in float64 for 40 samples on 256 atoms in 48 dimensions (the working-set path)."""
    X, D, _ = random_problem(seed, d=48, n_atoms=256, n=40, density=density, signed=signed)
    Xt, Dt = torch.tensor(X), torch.tensor(D)
    return Xt @ Dt.T, Dt @ Dt.T


def wide_tensors(seed, **kw):
    """``(X, D, G)`` as float64 tensors: 60 samples on 256 atoms in 48 dimensions."""
    X, D, _ = random_problem(seed, d=48, n_atoms=256, n=60, **kw)
    Xt, Dt = torch.tensor(X), torch.tensor(D)
    return Xt, Dt, Dt @ Dt.T


def dense_reference(X, D, G, lam, nonneg):
    """The dense FISTA solve to a tight tolerance: the reference the set solvers match."""
    return prox_grad(X @ D.T, G, lam, nonneg=nonneg, accelerate=True, max_iter=100_000,
                     tol=1e-12, init=None, scale=lam)
