"""``toysae.dictlearn.learner``: ``DictionaryLearner`` as a scikit-learn estimator (the
contract, the threads argument), and as a learner: each update rule (bcd / mod / ksvd)
recovers a planted dictionary, dead atoms, history, bad arguments and data."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse
import sklearn
import torch
from problems import planted
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from toysae._result import History
from toysae.dictionary_objective import dictionary_objective
from toysae.dictlearn import DictionaryLearner, sparse_code
from toysae.metrics import mmcs

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


def test_a_duplicate_atom_is_replaced_by_a_residual():
    """Eight atoms for eight planted features, two of them the same feature. After one
    step the copy is still parallel to its twin without replacement (the update moves a
    parallel pair together), and with ``replace_duplicates`` it has moved off the twin to
    the worst-reconstructed residual, which holds the missed feature."""
    X, F, _ = planted(4)
    init = np.vstack([F[:7], F[0]])
    steps = {}
    for value in (0.95, None):
        est = learner("bcd", replace_duplicates=value, init=init, dead_after=10**6)
        steps[value] = est.partial_fit(X[:256])
    on, off = steps[0.95], steps[None]
    assert on.history_["resampled"].sum() == 1 and off.history_["resampled"].sum() == 0
    assert off.dictionary[0] @ off.dictionary[7] > 0.95
    assert abs(on.dictionary[0] @ on.dictionary[7]) < 0.5
    assert abs(F[7] @ on.dictionary[7]) > 5 * abs(F[7] @ off.dictionary[7])


@pytest.mark.parametrize("value", [0.0, 1.5, "high"])
def test_replace_duplicates_is_checked(value):
    X, _, _ = planted(4)
    with pytest.raises((ValueError, TypeError), match="replace_duplicates"):
        learner("bcd", replace_duplicates=value).fit(X)


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


def test_dictionary_learner_refuses_data_with_zero_features():
    for X in (np.zeros((10, 0)), torch.zeros(10, 0)):
        with pytest.raises(ValueError, match="0 feature"):
            DictionaryLearner(4, 0.1, progress=False).fit(X)
        with pytest.raises(ValueError, match="0 feature"):
            DictionaryLearner(4, 0.1, progress=False).partial_fit(X)


def test_empty_data_and_data_past_the_range_are_refused_naming_x():
    for shape in ((5, 0), (0, 8)):
        with pytest.raises(ValueError, match=r"^X \(the data\): Found array with 0"):
            DictionaryLearner(4, 0.1, progress=False).fit(np.zeros(shape))
    X = np.random.default_rng(0).normal(size=(40, 6))
    with pytest.raises(ValueError, match=r"X: row \d+ has norm .*update='bcd'.*float32"):
        DictionaryLearner(4, 0.1, progress=False, dtype="float64").fit(X * 1e20)
    # bfloat16 tensors are read as their exact values.
    Xb = torch.as_tensor(X).to(torch.bfloat16)
    a = DictionaryLearner(4, 0.1, progress=False, max_epochs=1).fit(Xb)
    b = DictionaryLearner(4, 0.1, progress=False, max_epochs=1).fit(Xb.double().numpy())
    assert np.array_equal(a.components_, b.components_)
