"""Baseline dictionaries from scikit-learn, in the package layout (n_atoms, d), unit rows.

These are reference points, not solvers of the sparse objective:

- :func:`pca_dictionary`: the top principal directions (at most ``min(n, d)``
  of them exist; ask for more and you get a ValueError);
- :func:`ica_dictionary`: FastICA mixing directions (columns of the mixing
  matrix), at most ``d`` of them;
- :func:`kmeans_dictionary`: k-means centroids of the normalised data
  (spherical-k-means-like: each sample votes with its direction), so any
  number of atoms is possible.
"""

from __future__ import annotations

import warnings

import numpy as np

from toysae._validation import check_int, check_seed, to_numpy


def _data(X, n_atoms: int, *, max_atoms: int | None, what: str) -> tuple[np.ndarray, int]:
    X = to_numpy(X, "X", ndim=2)
    if X.shape[0] < 2:
        raise ValueError(f"X must have at least 2 samples, got shape {X.shape}")
    n_atoms = check_int(n_atoms, "n_atoms", minimum=1)
    if max_atoms is not None and n_atoms > max_atoms:
        raise ValueError(f"n_atoms={n_atoms} is larger than the {max_atoms} directions "
                         f"{what} can give for X of shape {X.shape}")
    return X, n_atoms


def _unit_rows(D: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(D, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("a baseline produced a zero atom; the data have too few directions "
                         "for this many atoms")
    return (D / norms).astype(np.float32)


def _sign_to_data(D: np.ndarray, X: np.ndarray) -> np.ndarray:
    # Directions from PCA/ICA have arbitrary sign: point each atom where the data
    # project positively on average, which is what nonnegative codes can use.
    signs = np.sign((X @ D.T).sum(axis=0))
    signs[signs == 0] = 1.0
    return D * signs[:, None]


def pca_dictionary(X, n_atoms: int) -> np.ndarray:
    """Top ``n_atoms`` principal directions of X (n, d), as (n_atoms, d) unit rows."""
    from sklearn.decomposition import PCA

    X, n_atoms = _data(X, n_atoms, max_atoms=min(*to_numpy(X, "X", ndim=2).shape),
                       what="PCA")
    pca = PCA(n_components=n_atoms, svd_solver="full").fit(X)
    return _unit_rows(_sign_to_data(pca.components_, X))


def ica_dictionary(X, n_atoms: int, seed: int = 0, *, max_iter: int = 1000) -> np.ndarray:
    """FastICA mixing directions of X (n, d), as (n_atoms, d) unit rows (``n_atoms <= d``)."""
    from sklearn.decomposition import FastICA
    from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning

    X, n_atoms = _data(X, n_atoms, max_atoms=min(*to_numpy(X, "X", ndim=2).shape),
                       what="ICA")
    seed = check_seed(seed)
    ica = FastICA(n_components=n_atoms, random_state=seed, whiten="unit-variance",
                  max_iter=check_int(max_iter, "max_iter", minimum=1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SkConvergenceWarning)
        ica.fit(X)
    for w in caught:
        if issubclass(w.category, SkConvergenceWarning):
            warnings.warn(f"ica_dictionary: FastICA did not converge in {max_iter} iterations; "
                          "the directions are approximate", RuntimeWarning, stacklevel=2)
    return _unit_rows(_sign_to_data(ica.mixing_.T, X))


def kmeans_dictionary(X, n_atoms: int, seed: int = 0) -> np.ndarray:
    """k-means centroids of the normalised nonzero rows of X, as (n_atoms, d) unit rows."""
    from sklearn.cluster import KMeans

    X, n_atoms = _data(X, n_atoms, max_atoms=None, what="k-means")
    seed = check_seed(seed)
    norms = np.linalg.norm(X, axis=1)
    U = X[norms > 0] / norms[norms > 0, None]
    if U.shape[0] < n_atoms:
        raise ValueError(f"n_atoms={n_atoms} is more than the {U.shape[0]} nonzero samples "
                         "of X k-means can cluster")
    km = KMeans(n_clusters=n_atoms, random_state=seed, n_init=1).fit(U)
    return _unit_rows(km.cluster_centers_)
