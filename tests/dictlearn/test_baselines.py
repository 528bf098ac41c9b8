"""``toysae.dictlearn.baselines``: the PCA, ICA and k-means dictionaries: unit rows of the
right shape, structure found, bad input refused."""

from __future__ import annotations

import numpy as np
import pytest
from problems import planted

from toysae.dictlearn import ica_dictionary, kmeans_dictionary, pca_dictionary
from toysae.metrics import mmcs


@pytest.mark.parametrize("make", [
    lambda X: pca_dictionary(X, 5),
    lambda X: ica_dictionary(X, 5, seed=0),
    lambda X: kmeans_dictionary(X, 12, seed=0),
])
def test_baselines_unit_rows_right_shape(make):
    X, _, _ = planted(9, n=400, noise=0.01)
    D = make(X)
    assert D.shape[1] == 10 and D.shape[0] in (5, 12)
    assert D.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(D, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(D).all()


def test_baselines_find_structure_and_refuse_bad_input():
    # Two clusters of directions: k-means with 2 atoms finds both.
    rng = np.random.default_rng(10)
    a, b = np.eye(4)[0], np.eye(4)[1]
    X = np.vstack([a * rng.uniform(0.5, 1, (50, 1)), b * rng.uniform(0.5, 1, (50, 1))])
    X += 0.01 * rng.standard_normal(X.shape)
    km = kmeans_dictionary(X, 2, seed=0)
    assert mmcs(np.vstack([a, b]), km) > 0.99
    pca = pca_dictionary(X, 1)
    assert abs(pca[0] @ (a - b)) / np.sqrt(2) > 0.99  # the direction of largest variance
    with pytest.raises(ValueError, match="n_atoms"):
        pca_dictionary(X, 5)
    with pytest.raises(ValueError, match="n_atoms"):
        ica_dictionary(X, 0)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="X"):
        kmeans_dictionary(bad, 2)
