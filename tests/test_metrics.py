"""Metrics on hand-made cases, hypothesis properties, and bad input."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from toysae.metrics import (
    cosine_matrix,
    dead_latents,
    fvu,
    l0,
    max_cosines,
    mcc,
    mmcs,
    mmcs_with_larger,
    shrinkage,
)

RNG = np.random.default_rng(0)


def _unit(n, d, seed=0):
    A = np.random.default_rng(seed).standard_normal((n, d))
    return A / np.linalg.norm(A, axis=1, keepdims=True)


def test_identical_dictionaries_score_one():
    D = _unit(20, 8)
    assert mmcs(D, D) == pytest.approx(1.0)
    assert mcc(D, D) == pytest.approx(1.0)


def test_permuted_and_rescaled_atoms_score_one():
    D = _unit(20, 8)
    P = D[RNG.permutation(20)] * RNG.uniform(0.1, 10, size=(20, 1))
    assert mmcs(D, P) == pytest.approx(1.0)
    assert mcc(D, P) == pytest.approx(1.0)


def test_sign_flips_count_only_with_absolute():
    D = _unit(6, 3)
    D = np.vstack([np.eye(3), -np.eye(3)])[:3]  # orthogonal, so a flip cannot be matched
    assert mmcs(D, -D) == pytest.approx(0.0, abs=1e-12)
    assert mmcs(D, -D, absolute=True) == pytest.approx(1.0)
    assert mcc(D, -D) == pytest.approx(1.0)  # mcc uses |cosine|


def test_random_dictionaries_score_low():
    truth, learned = _unit(512, 256, 1), _unit(1024, 256, 2)
    score = mmcs(truth, learned)
    # max of 1024 cosines of random directions in 256-d: about sqrt(2 log 1024 / 256) = 0.23
    assert 0.15 < score < 0.26
    assert mcc(truth, learned) < mmcs(truth, learned, absolute=True)


def test_mcc_is_one_to_one():
    truth = np.eye(3)
    learned = np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]])  # feature 1 is missing
    assert mmcs(truth, learned) == pytest.approx(2 / 3)
    assert mcc(truth, learned) == pytest.approx(2 / 3)
    assert mcc(truth, learned[[0, 0, 0]]) == pytest.approx(1 / 3)  # duplicates match once
    assert mmcs(truth, learned[[0, 0, 0]]) == pytest.approx(1 / 3)
    assert mcc(truth, learned[:1]) == pytest.approx(1 / 3)  # fewer atoms than features


def test_directions_differ():
    truth = np.eye(4)
    learned = np.vstack([np.eye(4), _unit(4, 4, 5)])  # 4 real atoms + 4 spurious
    assert mmcs(truth, learned) == pytest.approx(1.0)
    assert mmcs(learned, truth) < 1.0


def test_max_cosines_and_cosine_matrix():
    A = np.array([[1.0, 0.0], [0.0, 2.0]])
    B = np.array([[1.0, 1.0]])
    assert np.allclose(cosine_matrix(A, B), [[2**-0.5], [2**-0.5]])
    assert np.allclose(max_cosines(A, np.vstack([B, [[0, -1.0]]]), absolute=True), [2**-0.5, 1])


def test_mmcs_with_larger():
    truth = _unit(8, 6, 3)
    small, mid, big = truth[:4], truth[:6], np.vstack([truth, _unit(4, 6, 9)])
    scores = mmcs_with_larger([small, mid, big])
    assert scores[0] == pytest.approx(1.0) and scores[1] == pytest.approx(1.0)
    assert scores[2] is None
    noisy = mmcs_with_larger([_unit(4, 6, 11), mid, big])
    assert noisy[0] < 0.99
    with pytest.raises(ValueError, match="ordered by size"):
        mmcs_with_larger([big, small])
    with pytest.raises(ValueError, match="dimension"):
        mmcs_with_larger([small, _unit(8, 5)])


def test_codes_metrics():
    codes = np.array([[0, 1.0, 0, 0], [0, 2.0, 0.5, 0], [0, 0, 0, 0]])
    assert dead_latents(codes).tolist() == [True, False, False, True]
    assert l0(codes) == pytest.approx(1.0)
    assert l0(torch.tensor(codes)) == pytest.approx(1.0)


def test_fvu_and_shrinkage():
    x = RNG.standard_normal((100, 5))
    assert fvu(x, x) == pytest.approx(0.0)
    assert fvu(x, np.broadcast_to(x.mean(0), x.shape)) == pytest.approx(1.0)
    assert shrinkage(x, 0.7 * x) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="zero variance"):
        fvu(np.ones((3, 2)), np.ones((3, 2)))


@pytest.mark.parametrize("call", [
    lambda: mmcs(np.array([[np.nan, 1.0]]), np.eye(2)),
    lambda: mcc(np.eye(2), np.array([[np.inf, 0.0]])),
    lambda: mmcs(np.eye(3), np.eye(2)),
    lambda: mmcs(np.zeros((2, 3)), np.eye(3)),
    lambda: l0(np.array([[np.nan]])),
    lambda: fvu(np.ones((2, 2)), np.ones((3, 2))),
    lambda: mmcs(np.ones(3), np.eye(3)),
])
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_bad_input_names_argument():
    with pytest.raises(ValueError, match="learned contains 1 NaN"):
        mmcs(np.eye(2), np.array([[np.nan, 1.0], [0, 1.0]]))
    with pytest.raises(ValueError, match="reference atoms have dimension 3 but learned"):
        mcc(np.eye(3), np.eye(2))
    with pytest.raises(TypeError, match="reference must be an array"):
        mmcs("abc", np.eye(2))


finite = st.floats(-10, 10, allow_nan=False, width=64)


@st.composite
def dictionary_pairs(draw):
    d = draw(st.integers(1, 6))
    n_ref = draw(st.integers(1, 8))
    n_learned = draw(st.integers(1, 8))
    A = draw(arrays(np.float64, (n_ref, d), elements=finite))
    B = draw(arrays(np.float64, (n_learned, d), elements=finite))
    A[np.linalg.norm(A, axis=1) < 1e-3] += 1.0
    B[np.linalg.norm(B, axis=1) < 1e-3] += 1.0
    return A, B


@settings(max_examples=60, deadline=None)
@given(dictionary_pairs())
def test_scores_in_unit_interval_and_mcc_below_mmcs(pair):
    A, B = pair
    s_abs, c = mmcs(A, B, absolute=True), mcc(A, B)
    assert 0.0 <= c <= s_abs + 1e-12 <= 1.0 + 1e-12
    assert -1.0 <= mmcs(A, B) <= s_abs + 1e-12


@settings(max_examples=60, deadline=None)
@given(dictionary_pairs(), st.randoms(use_true_random=False),
       st.floats(0.01, 100), st.booleans())
def test_invariances(pair, random, scale, flip):
    A, B = pair
    perm = list(range(len(B)))
    random.shuffle(perm)
    B2 = B[perm] * scale * (-1 if flip else 1)
    assert mmcs(A, B2, absolute=True) == pytest.approx(mmcs(A, B, absolute=True), abs=1e-9)
    assert mcc(A, B2) == pytest.approx(mcc(A, B), abs=1e-9)
    Q, _ = np.linalg.qr(np.random.default_rng(len(A)).standard_normal((A.shape[1],) * 2))
    assert mmcs(A @ Q, B @ Q) == pytest.approx(mmcs(A, B), abs=1e-9)  # rotations
