"""DictionaryLearner (bcd / mod / ksvd), the update rules, dead atoms, and baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toysae.dictionary_objective import dictionary_objective
from toysae.dictlearn import (
    DictionaryLearner,
    ica_dictionary,
    kmeans_dictionary,
    pca_dictionary,
    sparse_code,
)
from toysae.dictlearn.updates import bcd_update, ksvd_update, mod_update
from toysae.metrics import mmcs


def planted(seed=0, d=10, k=8, n=1500, signed=False, max_active=2, noise=0.0):
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


def learner(update, n_atoms=8, **kw):
    defaults = dict(batch_size=256, max_epochs=8, progress=False, seed=0)
    if update == "ksvd":
        defaults["n_nonzero"] = 2
    return DictionaryLearner(n_atoms, kw.pop("lam", 0.05), update=update,
                             **{**defaults, **kw})


# Full-batch MOD replaces its statistics each epoch (forget_rate large).
RECOVERY = {"bcd": {}, "mod": {"batch_size": 1500, "forget_rate": 50.0, "max_epochs": 20},
            "ksvd": {}}


@pytest.mark.parametrize("nonneg", [True, False])
@pytest.mark.parametrize("update", ["bcd", "mod", "ksvd"])
def test_update_rule_recovers_planted_dictionary_and_lowers_objective(update, nonneg):
    # 8 planted atoms, 12 learned (mild overcompleteness avoids the merged-atom minima).
    X, F, _ = planted(1, signed=not nonneg)
    est = learner(update, n_atoms=12, lam=0.1, nonneg=nonneg, **RECOVERY[update]).fit(X)
    D = est.dictionary
    assert D.shape == (12, 10)
    np.testing.assert_allclose(np.linalg.norm(D, axis=1), 1.0, atol=1e-5)
    assert mmcs(F, D, absolute=not nonneg) >= 0.97
    # The optimal-code objective of the learned dictionary beats that of its start.
    init = learner(update, n_atoms=12, nonneg=nonneg, max_epochs=1)
    init._check_params()
    init._reset(np.asarray(X))
    start = sparse_code(X, init._D, 0.1, nonneg=nonneg).objective
    end = sparse_code(X, D, 0.1, nonneg=nonneg).objective
    assert end < 0.7 * start
    hist = est.history_["objective"]
    assert hist[-1] < hist[0]


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


def test_dead_atom_is_reinitialised():
    # Data in the first 9 coordinates; an atom along the 10th can never be used
    # (its correlation with every sample and every other atom is exactly zero).
    X9, F9, _ = planted(4, d=9)
    X = np.hstack([X9, np.zeros((X9.shape[0], 1))])
    F = np.hstack([F9, np.zeros((8, 1))])
    unused = np.eye(10)[9]
    init = np.vstack([F[:7], unused])
    kw = dict(init=init, dead_after=300, max_epochs=2)
    on = learner("bcd", **kw).fit(X)
    off = learner("bcd", resample_dead=False, **kw).fit(X)
    assert on.history_["resampled"].sum() >= 1
    assert off.history_["resampled"].sum() == 0
    assert abs(on.dictionary[7] @ unused) < 0.5
    np.testing.assert_allclose(off.dictionary[7], unused, atol=1e-6)
    # The re-initialised atom found the missing feature.
    assert mmcs(F, on.dictionary) > mmcs(F, off.dictionary) + 0.05
    assert sparse_code(X, on.dictionary, 0.05).objective < \
        sparse_code(X, off.dictionary, 0.05).objective


def test_partial_fit_transform_and_reproducibility():
    X, F, _ = planted(5)
    a = learner("bcd")
    for chunk in np.array_split(X, 6):
        a.partial_fit(chunk)
    assert len(a.history_) == 6
    assert a.history_["samples"][-1] == X.shape[0]
    Z = a.transform(X[:20])
    assert Z.shape == (20, 8) and (Z >= 0).all()
    b = learner("bcd")
    for chunk in np.array_split(X, 6):
        b.partial_fit(torch.tensor(chunk))
    np.testing.assert_array_equal(a.dictionary, b.dictionary)
    c = learner("bcd", seed=1).fit(X)
    d = learner("bcd", seed=1).fit(X)
    np.testing.assert_array_equal(c.dictionary, d.dictionary)


def test_callback_values_land_in_history():
    X, F, _ = planted(6)
    seen = []

    def callback(l):
        seen.append((l.n_steps_, l.dictionary.copy()))
        return {"mmcs": mmcs(F, l.dictionary)}

    est = learner("bcd", callback=callback, callback_every=2, max_epochs=2).fit(X)
    values = est.history_["mmcs"]
    assert np.isnan(values[0]) and np.isfinite(values[1])
    assert values[-1] >= values[1]
    # every second step's row holds what the callback returned at that step, computed on the
    # dictionary that step produced (the last one: the fitted dictionary); no other row does
    steps = est.history_["step"]
    assert len(steps) == est.n_steps_ == 12 and [s for s, _ in seen] == list(range(2, 13, 2))
    np.testing.assert_array_equal(np.isfinite(values), steps % 2 == 0)
    np.testing.assert_array_equal(values[steps % 2 == 0], [mmcs(F, D) for _, D in seen])
    np.testing.assert_array_equal(seen[-1][1], est.dictionary)
    assert len({round(v, 12) for v in values[steps % 2 == 0]}) > 1  # values, not one copied


def test_objective_in_history_matches_package_objective():
    X, F, _ = planted(7, n=256)
    est = learner("bcd", batch_size=256, max_epochs=1, init=F, coding_tol=1e-6)
    est.fit(X)
    codes = sparse_code(X, F, 0.05, tol=1e-10, dtype=torch.float64).codes
    expected = dictionary_objective(X, F, codes, 0.05) / 256
    assert est.history_["objective"][0] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lam": -1.0}, "lam"),
        ({"n_atoms": 0}, "n_atoms"),
        ({"update": "sgd"}, "update"),
        ({"update": "ksvd"}, "n_nonzero"),
        ({"update": "ksvd", "n_nonzero": 9}, "n_nonzero"),
        ({"n_nonzero": 2}, "n_nonzero"),
        ({"batch_size": 0}, "batch_size"),
        ({"init": np.zeros((8, 10))}, "init"),
        ({"init": np.ones((7, 10))}, "init"),
        ({"init": "pca"}, "init"),
        ({"forget_rate": -1.0}, "forget_rate"),
    ],
)
def test_learner_bad_arguments(kwargs, name):
    # scikit-learn's contract: __init__ stores, fit and partial_fit validate (before work).
    X, _, _ = planted(8, n=50)
    kw = {"lam": 0.1, "n_atoms": 8, "progress": False, **kwargs}
    est = DictionaryLearner(kw.pop("n_atoms"), kw.pop("lam"), **kw)
    with pytest.raises(ValueError, match=name):
        est.fit(X)
    with pytest.raises(ValueError, match=name):
        est.partial_fit(X)
    assert not hasattr(est, "components_")


def test_learner_bad_data():
    X, _, _ = planted(8, n=50)
    est = learner("bcd")
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="X"):
        est.fit(bad)
    bad[3, 2] = np.inf
    with pytest.raises(ValueError, match="X"):
        est.partial_fit(bad)
    with pytest.raises(ValueError, match="not fitted"):
        est.transform(X)
    est.partial_fit(X)
    with pytest.raises(ValueError, match="columns"):
        est.transform(X[:, :5])
    with pytest.raises(ValueError, match="columns"):
        est.partial_fit(X[:, :5])


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
