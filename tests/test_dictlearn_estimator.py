"""DictionaryLearner as a scikit-learn estimator: the contract, and the threads argument."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse
import sklearn
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from toysae._result import History
from toysae.dictlearn import DictionaryLearner, sparse_code

SMALL = dict(n_atoms=3, lam=0.1, max_epochs=2, progress=False)

# Every check of the installed scikit-learn runs; none is expected to fail. (The
# array-API check skips itself unless SCIPY_ARRAY_API is set.)
EXPECTED_FAILED: dict[str, str] = {}


def _data(seed=0, n=60, d=5):
    rng = np.random.default_rng(seed)
    return np.abs(rng.standard_normal((n, d)))


@parametrize_with_checks(
    [DictionaryLearner(**SMALL), DictionaryLearner(**SMALL, update="ksvd", n_nonzero=2),
     DictionaryLearner(**SMALL, nonneg=False, dtype="float64")],
    expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_sklearn_version_supports_the_checks():
    major, minor = (int(p) for p in sklearn.__version__.split(".")[:2])
    assert (major, minor) >= (1, 6)  # expected_failed_checks, validate_data


def test_init_stores_parameters_unchanged_and_validates_nothing():
    init = np.zeros((4, 5))  # invalid (zero rows), but __init__ must not look at it
    est = DictionaryLearner(-3, -1.0, update="nope", batch_size=0, init=init, threads=0,
                            dtype="float16", device="no-such-device", callback=5)
    assert est.n_atoms == -3 and est.lam == -1.0 and est.update == "nope"
    assert est.init is init and est.threads == 0 and est.callback == 5
    assert not [k for k in vars(est) if k.endswith("_")]  # nothing fitted
    with pytest.raises(ValueError, match="n_atoms"):
        est.fit(_data())


@pytest.mark.parametrize(("kwargs", "error", "name"), [
    ({"nonneg": 1}, TypeError, "nonneg"),
    ({"progress": "yes"}, TypeError, "progress"),
    ({"callback": 5}, TypeError, "callback"),
    ({"threads": 0}, ValueError, "threads"),
    ({"threads": 1.5}, TypeError, "threads"),
    ({"dtype": "float16"}, ValueError, "dtype"),
    ({"device": "no-such-device"}, ValueError, "device"),
    ({"seed": -1}, ValueError, "seed"),
    ({"coding_tol": 0.0}, ValueError, "coding_tol"),
    ({"dead_after": 0}, ValueError, "dead_after"),
    ({"callback_every": 0}, ValueError, "callback_every"),
    ({"lam": 0.0}, ValueError, "lam"),
])
def test_fit_validates_before_any_work(kwargs, error, name):
    est = DictionaryLearner(**{**SMALL, **kwargs})
    with pytest.raises(error, match=name):
        est.fit(_data())
    assert not hasattr(est, "components_") and not hasattr(est, "history_")


def test_get_params_set_params_clone_round_trip():
    init = _data(1, n=4, d=5)
    est = DictionaryLearner(4, 0.2, update="mod", batch_size=32, init=init, seed=3,
                            threads=1, progress=False)
    params = est.get_params()
    assert params["n_atoms"] == 4 and params["init"] is init and params["threads"] == 1
    twin = clone(est)
    assert twin is not est and twin.get_params().keys() == params.keys()
    assert all(twin.get_params()[k] is v or twin.get_params()[k] == v
               for k, v in params.items() if k != "init")
    np.testing.assert_array_equal(twin.init, init)
    assert est.set_params(lam=0.3, batch_size=16) is est
    assert est.get_params()["lam"] == 0.3 and est.batch_size == 16
    X = _data(2)
    a = clone(est).fit(X)
    b = DictionaryLearner(**est.get_params()).fit(X)
    np.testing.assert_array_equal(a.components_, b.components_)
    assert "lam=0.3" in repr(est) and "update='mod'" in repr(est)


def test_fitted_attributes_and_fit_transform():
    X = _data(3)
    est = DictionaryLearner(**SMALL, batch_size=20)
    Z = est.fit_transform(X)
    assert Z.shape == (60, 3) and Z.dtype == np.float32
    np.testing.assert_array_equal(Z, est.transform(X))
    D = est.components_
    assert D.shape == (3, 5) and D.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(D, axis=1), 1.0, atol=1e-5)
    assert est.dictionary is D
    with pytest.raises(AttributeError):
        est.dictionary = D  # read-only
    assert est.n_features_in_ == 5
    assert est.n_iter_ == est.n_steps_ == 6 == len(est.history_)
    assert est.n_samples_seen_ == 120
    assert isinstance(est.history_, History) and est.history_.last["step"] == 6
    with pytest.raises(NotFittedError):
        _ = DictionaryLearner(**SMALL).dictionary
    assert isinstance(pickle.loads(pickle.dumps(est)).transform(X), np.ndarray)


def test_learner_works_in_a_pipeline():
    X = _data(4)
    pipe = make_pipeline(StandardScaler(), DictionaryLearner(**{**SMALL, "nonneg": False}))
    assert pipe.fit_transform(X).shape == (60, 3)


def test_threads_argument_runs_the_call_on_that_many_threads_and_restores_the_count():
    X = _data(5)
    before = torch.get_num_threads()
    seen = []
    est = DictionaryLearner(**SMALL, threads=1,
                            callback=lambda _: seen.append(torch.get_num_threads()))
    est.fit(X)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before
    D = est.components_
    for threads in (1, 2):
        res = sparse_code(X, D, 0.1, threads=threads)
        assert res.success and torch.get_num_threads() == before
    np.testing.assert_allclose(sparse_code(X, D, 0.1, threads=1).codes,
                               sparse_code(X, D, 0.1, threads=2).codes, atol=1e-6)
    for bad, error in ((0, ValueError), (-1, ValueError), (2.0, TypeError), (True, TypeError),
                       ("2", TypeError)):
        with pytest.raises(error, match="threads"):
            sparse_code(X, D, 0.1, threads=bad)
    with pytest.raises(TypeError, match="workspace"):
        sparse_code(X, D, 0.1, workspace={})


@pytest.mark.parametrize(("make", "match"), [
    (lambda X: scipy.sparse.csr_matrix(X), "[Ss]parse"),
    (lambda X: X.astype(complex), "[Cc]omplex"),
    (lambda X: X[:, 0], "2D array"),
    (lambda X: X[:0], "0 sample"),
    (lambda X: X[:, :0], "0 feature"),
    (lambda X: np.where(X > 1.5, np.nan, X), "NaN"),
    (lambda X: np.where(X > 1.5, np.inf, X), "infinity"),
])
def test_bad_data_raises_what_scikit_learn_expects(make, match):
    X = _data(6)
    est = DictionaryLearner(**SMALL)
    with pytest.raises((TypeError, ValueError), match=match):
        est.fit(make(X))
    with pytest.raises((TypeError, ValueError), match=match):
        est.partial_fit(make(X))
    est.fit(X)
    if make(X).ndim == 2 and make(X).shape[1] == X.shape[1]:
        with pytest.raises((TypeError, ValueError), match=match):
            est.transform(make(X))
