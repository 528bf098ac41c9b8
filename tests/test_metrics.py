"""Metrics on hand-made cases, hypothesis properties, and bad input."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from toysae.metrics import (
    absorption_rate,
    best_matching_features,
    cosine_matrix,
    dead_latents,
    detection_scores,
    explained_variance,
    fvu,
    hedging_degree,
    l0,
    matched_cosines,
    max_cosines,
    mcc,
    mmcs,
    mmcs_with_larger,
    pairwise_mcc,
    shrinkage,
    uniqueness,
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


def test_mcc_over_the_smaller_set():
    truth = np.eye(3)
    assert mcc(truth, truth[:1]) == pytest.approx(1 / 3)  # unmatched truth counts 0
    assert mcc(truth, truth[:1], over="smaller") == pytest.approx(1.0)  # one pair, matched
    A, B = _unit(30, 6, 1), _unit(8, 6, 2)
    assert mcc(A, B, over="smaller") == pytest.approx(mcc(B, A, over="smaller"), abs=1e-12)
    assert mcc(A, B, over="smaller") == pytest.approx(mcc(A, B) * 30 / 8, rel=1e-12)
    assert mcc(B, A, over="smaller") == mcc(B, A)  # more learned than reference: the same
    for bad in ("larger", None, 1):
        with pytest.raises(ValueError, match="over"):
            mcc(A, B, over=bad)


def test_signed_mcc_tells_an_atom_from_its_negation():
    E = np.eye(4)
    assert mcc(E, -E) == 1.0  # |cosine|, the default
    # signed: every negated atom has cosine -1 with its own and 0 with the others, so the
    # best matching pairs each with another row: 0
    assert mcc(E, -E, absolute=False) == 0.0
    half = E * np.array([[-1.0], [-1.0], [1.0], [1.0]])  # rows 0 and 1 negated
    assert mcc(E, half, absolute=False) == 0.5  # 2 of 4 rows matched with cosine 1
    with pytest.raises(TypeError, match="absolute must be a bool"):
        mcc(E, E, absolute=1)


def test_matched_cosines_are_the_matching_of_mcc_row_by_row():
    A = np.eye(3)
    B = np.array([[0.0, 1.0, 0.0], [0.6, 0.0, 0.8]])
    # |cos|: row 1 takes B[0] (1); B[1] goes to row 2 (0.8) over row 0 (0.6); row 0 left
    assert matched_cosines(A, B).tolist() == pytest.approx([0.0, 1.0, 0.8], abs=1e-15)
    assert mcc(A, B) == pytest.approx(matched_cosines(A, B).mean(), abs=1e-15)
    assert matched_cosines(B, A).tolist() == pytest.approx([1.0, 0.8], abs=1e-15)
    E = np.eye(4)
    half = E * np.array([[-1.0], [-1.0], [1.0], [1.0]])  # rows 0 and 1 negated
    assert matched_cosines(E, half).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert matched_cosines(E, half, absolute=False).tolist() == [0.0, 0.0, 1.0, 1.0]
    L = _unit(12, 5, 3)
    assert matched_cosines(L, L[::-1]) == pytest.approx(np.ones(12), abs=1e-12)


def test_pairwise_mcc_on_hand_made_dictionaries():
    D = _unit(10, 6, 4)
    perm = np.random.default_rng(5).permutation(10)
    assert pairwise_mcc([D, D, D]) == pytest.approx(1.0, abs=1e-12)  # identical
    assert pairwise_mcc([D, D[perm], D[perm[::-1]]]) == pytest.approx(1.0, abs=1e-12)
    # sign-flipped: the same directions with |cosine| (Song et al.'s), not when signed
    signs = np.where(np.arange(10) % 2 == 0, -1.0, 1.0)[:, None]
    assert pairwise_mcc([D, signs * D]) == pytest.approx(1.0, abs=1e-12)
    assert pairwise_mcc([D, signs * D], absolute=False) < 0.9
    E = np.eye(8)
    assert pairwise_mcc([E, -E], absolute=False) == 0.0  # no positive cosine to match
    assert pairwise_mcc([E[:4], E[4:]]) == 0.0  # disjoint orthogonal subspaces
    # partial overlap: A and B share e0, e1; A and C share e0; B and C share e0, e4
    A, B, C = E[[0, 1, 2, 3]], E[[0, 1, 4, 5]], E[[0, 6, 7, 4]]
    assert pairwise_mcc([A, B]) == 0.5
    assert pairwise_mcc([A, B, C]) == pytest.approx((2 / 4 + 1 / 4 + 2 / 4) / 3, abs=1e-15)
    # a known cosine: one atom rotated to cos 0.6 with its partner, the rest shared
    R = E[:3].copy()
    R[2] = 0.6 * E[2] + 0.8 * E[5]
    assert pairwise_mcc([E[:3], R]) == pytest.approx((1 + 1 + 0.6) / 3, abs=1e-15)
    # sizes may differ: the mean is over the smaller dictionary, so order does not matter
    assert pairwise_mcc([E[:2], E]) == pairwise_mcc([E, E[:2]]) == 1.0
    assert pairwise_mcc([torch.from_numpy(D), D]) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("dictionaries, error, match", [
    ([np.eye(3)], ValueError, "dictionaries must hold at least 2, got 1"),
    ([], ValueError, "dictionaries must hold at least 2, got 0"),
    ([np.eye(3), np.eye(4)], ValueError, r"dictionaries\[1\] has dimension 4 but "
     r"dictionaries\[0\] has 3"),
    ([np.eye(3), np.zeros((2, 3))], ValueError, r"dictionaries\[1\] has 2 zero row"),
    ("abc", TypeError, "dictionaries must be a sequence"),
    (np.eye(3), TypeError, "dictionaries must be a sequence"),
])
def test_pairwise_mcc_refuses_bad_input(dictionaries, error, match):
    with pytest.raises(error, match=match):
        pairwise_mcc(dictionaries)


def test_pairwise_mcc_refuses_a_non_bool_absolute():
    with pytest.raises(TypeError, match="absolute must be a bool"):
        pairwise_mcc([np.eye(2), np.eye(2)], absolute="yes")


def test_synthsaebench_conventions_match_saelens():
    """``mcc(..., over="smaller")`` is SAELens's mean_correlation_coefficient, and the
    |cosine| matching gives its F1, precision, recall and uniqueness, on SAE-like atoms
    (some near a feature or its negation, the rest random)."""
    pytest.importorskip("sae_lens", reason="sae-lens is a dev dependency")
    from sae_lens.synthetic import ClassificationMetricsCalculator, feature_uniqueness
    from sae_lens.synthetic import mean_correlation_coefficient as saelens_mcc

    rng = np.random.default_rng(4)
    features = _unit(40, 12, 3)
    atoms = np.vstack([features[:6] + 0.2 * rng.standard_normal((6, 12)),
                       -features[6:9] + 0.2 * rng.standard_normal((3, 12)), _unit(7, 12, 5)])
    true = (rng.random((500, 40)) < 0.1) * rng.random((500, 40))
    codes = np.maximum(true @ features @ atoms.T - 0.2, 0)  # a ReLU encoder, never negative
    F, D = torch.tensor(features, dtype=torch.float32), torch.tensor(atoms, dtype=torch.float32)
    for a, b in ((F, D), (D, F)):
        assert mcc(a, b, over="smaller") == pytest.approx(saelens_mcc(a, b), abs=1e-6)
    calc = ClassificationMetricsCalculator(D, F)
    calc.add_batch(torch.tensor(codes, dtype=torch.float32), torch.tensor(true))
    ref = calc.compute()
    precision, recall, f1 = detection_scores(codes, true, features, atoms, absolute=True)
    for ours, theirs in ((precision, ref.precision), (recall, ref.recall), (f1, ref.f1_score)):
        assert ours.mean() == pytest.approx(theirs, abs=1e-6)
    assert uniqueness(features, atoms, absolute=True) == pytest.approx(
        feature_uniqueness(D, F), abs=1e-12)
    # the negated atoms make the signed matching differ, so the test can tell them apart
    signed = best_matching_features(features, atoms)
    assert (signed != best_matching_features(features, atoms, absolute=True)).any()
    assert detection_scores(codes, true, features, atoms)[2].mean() != pytest.approx(
        ref.f1_score, abs=1e-6)


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


# -- the benchmark's metrics: detectors, uniqueness, explained variance, absorption ----
def test_explained_variance_relative_to_the_mean():
    x = RNG.standard_normal((50, 4)) + 3.0
    mean = np.broadcast_to(x.mean(0), x.shape)
    assert explained_variance(x, x) == pytest.approx(1.0)
    assert explained_variance(x, mean) == pytest.approx(0.0, abs=1e-12)
    assert explained_variance(x, mean + 0.5 * (x - mean)) == pytest.approx(0.75)
    assert explained_variance(torch.tensor(x), torch.tensor(x)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="x_hat"):
        explained_variance(x, x[:3])
    with pytest.raises(ValueError, match="zero variance"):
        explained_variance(np.ones((3, 2)), np.ones((3, 2)))


def test_best_matching_features_are_signed_and_many_to_one():
    features = np.eye(3)
    dictionary = np.array([[0.9, 0.1, 0], [1.0, 0, 0.2], [0, -1.0, 0.1], [0, 0, 2.0]])
    assert best_matching_features(features, dictionary).tolist() == [0, 0, 2, 2]
    assert best_matching_features(features, dictionary, absolute=True).tolist() == [0, 0, 1, 2]


def test_detection_scores_one_zero_and_a_fraction():
    features = np.eye(3)
    true = np.array([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]])
    for score in detection_scores(true * 3.0, true, features, 2 * np.eye(3)):
        assert score.dtype == np.float64 and score.tolist() == [1.0, 1.0, 1.0]
    # every latent fires exactly where its feature is absent
    for score in detection_scores((true == 0) * 1.0, true, features, np.eye(3)):
        assert score.tolist() == [0.0, 0.0, 0.0]
    # latent 0 (feature 0, present on samples 0-3) fires on samples 0, 1, 4: TP = 2;
    # latent 1 is matched to feature 0 too and never fires; latent 2 matches feature 2
    true = np.zeros((6, 3))
    true[:4, 0] = 1.0
    true[5, 2] = 1.0
    codes = np.zeros((6, 3))
    codes[[0, 1, 4], 0] = 0.5
    codes[[5, 2], 2] = 1.0
    codes[3, 1] = -1.0  # negative is not firing
    dictionary = np.array([[1.0, 0, 0], [1.0, 0.3, 0], [0, 0, 1.0]])
    precision, recall, f1 = detection_scores(codes, true, features, dictionary)
    np.testing.assert_allclose(precision, [2 / 3, 0.0, 1 / 2])
    np.testing.assert_allclose(recall, [1 / 2, 0.0, 1.0])
    np.testing.assert_allclose(f1, [4 / 7, 0.0, 2 / 3])


def test_uniqueness_one_lowest_and_a_fraction():
    assert uniqueness(np.eye(3), 5 * np.eye(3)[[2, 0, 1]]) == 1.0
    assert uniqueness(np.eye(4), np.eye(4)[[3]]) == 1.0  # one latent, its own feature
    # every latent on one feature: the lowest value, 1 / width (0 is unreachable)
    assert uniqueness(np.eye(2), np.eye(2)[[1, 1, 1, 1]]) == pytest.approx(0.25)
    # features 0, 1, 2 matched; latent 1 duplicates latent 0
    assert uniqueness(np.eye(4), np.eye(4)[[0, 0, 1, 2]]) == pytest.approx(0.75)
    # signed matching: an atom anti-aligned with feature 0 is matched to feature 1
    assert uniqueness(np.eye(2), np.array([[1.0, 0.1], [-1.0, 0.1]])) == 1.0
    # by |cosine| (SynthSAEBench) both latents track feature 0
    assert uniqueness(np.eye(2), np.array([[1.0, 0.1], [-1.0, 0.1]]), absolute=True) == 0.5
    with pytest.raises(TypeError, match="absolute"):
        uniqueness(np.eye(2), np.eye(2), absolute=1)


def _absorption_case():
    # parent 0 with children 1 and 2; latent 1 carries the parent, latent 2 does not
    features = np.eye(3)
    dictionary = np.array([[1.0, 0, 0], [1.0, 1.0, 0], [0, 0, 1.0]])
    true = np.array([[1.0, 1.0, 0], [1.0, 1.0, 0], [1.0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 0]])
    return features, dictionary, true, [(0, 1), (0, 2)]


def test_absorption_rate_one_zero_and_a_fraction():
    features, dictionary, true, hierarchy = _absorption_case()
    codes = np.array([[0, 1.0, 0],    # absorbed: parent silent, carrying child latent fires
                      [1.0, 1.0, 0],  # the parent's latent fires: not absorbed
                      [0, 0, 1.0],    # child 2's latent does not carry the parent
                      [1.0, 0, 0],
                      [0, 1.0, 0]])   # parent absent: not counted
    rate = absorption_rate(codes, true, features, dictionary, hierarchy)
    assert rate.dtype == np.float64 and rate.tolist() == [0.25]
    # a threshold above cos = 0.71 and latent 1 no longer carries the parent
    assert absorption_rate(codes, true, features, dictionary, hierarchy,
                           min_cosine=0.8).tolist() == [0.0]
    everywhere = np.tile([0, 1.0, 0], (5, 1))
    assert absorption_rate(everywhere, true, features, dictionary, hierarchy).tolist() == [1.0]
    assert absorption_rate(np.tile([1.0, 1.0, 1.0], (5, 1)), true, features, dictionary,
                           hierarchy).tolist() == [0.0]
    # parents in ascending order; one never present gets NaN
    rate = absorption_rate(codes, true * [1, 1, 0], features, dictionary,
                           np.array([[2, 1], [0, 1]]))
    assert rate[0] == 0.25 and np.isnan(rate[1])


def test_absorption_needs_a_separate_child_latent():
    # the child's best latent IS the parent's: nothing can be absorbed
    features = np.eye(2)
    dictionary = np.array([[1.0, 0.9], [-1.0, 0.2]])
    true = np.array([[1.0, 1.0], [1.0, 0]])
    assert best_matching_features(features, dictionary).tolist() == [0, 1]  # latent -> feature
    # but feature -> latent: both features' best latent is latent 0
    codes = np.array([[0, 0], [0, 1.0]])
    assert absorption_rate(codes, true, features, dictionary, [(0, 1)]).tolist() == [0.0]


@pytest.mark.parametrize("call, error, match", [
    (lambda f, D, T, h: detection_scores(T[:, :2], T, f, D), ValueError,
     "codes has 2 latents but dictionary has 3"),
    (lambda f, D, T, h: detection_scores(T, T[:4], f, D), ValueError,
     "codes has 5 samples but true_codes has 4"),
    (lambda f, D, T, h: detection_scores(T, T[:, :2], f, D), ValueError,
     "true_codes has 2 features"),
    (lambda f, D, T, h: detection_scores(T, T, np.ones((3, 2)), D), ValueError,
     "features have dimension 2 but dictionary"),
    (lambda f, D, T, h: detection_scores(T, T, f, D * [[1], [0], [1]]), ValueError,
     "dictionary has 1 zero row"),
    (lambda f, D, T, h: detection_scores(T[:0], T[:0], f, D), ValueError, "no samples"),
    (lambda f, D, T, h: detection_scores("codes", T, f, D), TypeError, "codes must be"),
    (lambda f, D, T, h: detection_scores(T, T * np.nan, f, D), ValueError, "true_codes contains"),
    (lambda f, D, T, h: uniqueness(f, np.ones((4, 2))), ValueError, "dimension"),
    (lambda f, D, T, h: uniqueness(np.zeros((0, 3)), D), ValueError, "features has no rows"),
    (lambda f, D, T, h: best_matching_features(f, None), TypeError, "dictionary must be"),
    (lambda f, D, T, h: absorption_rate(T, T, f, D, [(0, 3)]), ValueError,
     r"hierarchy index 3 is out of range \[0, 3\)"),
    (lambda f, D, T, h: absorption_rate(T, T, f, D, [(0, 0)]), ValueError, "hierarchy"),
    (lambda f, D, T, h: absorption_rate(T, T, f, D, [0, 1]), ValueError, "hierarchy must be"),
    (lambda f, D, T, h: absorption_rate(T, T, f, D, []), ValueError, "hierarchy has no"),
    (lambda f, D, T, h: absorption_rate(T, T, f, D, [(0.0, 1.0)]), TypeError, "hierarchy"),
    (lambda f, D, T, h: absorption_rate(T, T, f, D, "01"), TypeError, "hierarchy"),
    (lambda f, D, T, h: absorption_rate(T, T, f, D, h, min_cosine=1.5), ValueError,
     "min_cosine"),
    (lambda f, D, T, h: absorption_rate(T, T, f, D, h, min_cosine="a"), TypeError,
     "min_cosine"),
    (lambda f, D, T, h: absorption_rate(T, T[:, :2], f, D, h), ValueError, "true_codes"),
])
def test_benchmark_metrics_bad_input_names_argument(call, error, match):
    features, dictionary, true, hierarchy = _absorption_case()
    with pytest.raises(error, match=match):
        call(features, dictionary, true, hierarchy)


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


# -- hostile input: complex, empty, huge and tiny entries ----------------------------
@pytest.mark.parametrize("call", [
    lambda: mmcs(_unit(3, 2) + 1j, _unit(3, 2)),
    lambda: cosine_matrix(_unit(3, 2), torch.ones(3, 2, dtype=torch.complex64)),
    lambda: l0(np.ones((2, 3)) * 1j),
    lambda: dead_latents([[1j, 0.0]]),
    lambda: fvu(np.ones((3, 2)) + 0j, np.ones((3, 2))),
    lambda: shrinkage(np.ones((3, 2)), np.ones((3, 2)) + 2j),
])
def test_complex_input_is_refused(call):
    with pytest.raises(TypeError, match="must be real"):
        call()


@pytest.mark.parametrize("call, match", [
    (lambda: l0(np.zeros((0, 5))), "codes has no samples"),
    (lambda: dead_latents(np.zeros((0, 5))), "codes has no samples"),
    (lambda: l0(np.zeros((4, 0))), "codes has no latents"),
    (lambda: dead_latents(torch.zeros(4, 0)), "codes has no latents"),
    (lambda: fvu(np.zeros((0, 3)), np.zeros((0, 3))), "x has no samples"),
    (lambda: explained_variance(np.zeros((0, 3)), np.zeros((0, 3))), "x has no samples"),
    (lambda: shrinkage(np.zeros((0, 3)), np.zeros((0, 3))), "x has no samples"),
    (lambda: fvu(np.zeros((3, 0)), np.zeros((3, 0))), "x has no columns"),
    (lambda: mmcs(np.zeros((3, 0)), np.zeros((2, 0))), "reference has no columns"),
    (lambda: cosine_matrix(np.eye(2), np.zeros((0, 2))), "learned has no rows"),
])
def test_empty_input_is_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("scale", [1e200, 1e-200, 1e300, 1e-300])
def test_huge_and_tiny_entries_neither_overflow_nor_underflow(scale):
    import warnings

    A, B = _unit(6, 4, 1), _unit(9, 4, 2)
    x = RNG.standard_normal((50, 4))
    x_hat = 0.8 * x + 0.1 * RNG.standard_normal((50, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow/underflow/invalid-value warning either
        np.testing.assert_allclose(cosine_matrix(scale * A, scale * B), cosine_matrix(A, B),
                                   rtol=1e-12, atol=1e-15)
        assert mmcs(scale * A, B) == pytest.approx(mmcs(A, B), rel=1e-12)
        assert mcc(A, scale * B) == pytest.approx(mcc(A, B), rel=1e-12)
        assert fvu(scale * x, scale * x_hat) == pytest.approx(fvu(x, x_hat), rel=1e-12)
        assert shrinkage(scale * x, scale * x_hat) == pytest.approx(shrinkage(x, x_hat),
                                                                   rel=1e-12)


def test_bfloat16_and_float16_tensors_are_scored_as_their_exact_values():
    D = torch.randn(6, 4).to(torch.bfloat16)
    L = torch.randn(9, 4).to(torch.bfloat16)
    assert mmcs(D, L) == mmcs(D.double(), L.double())  # was a TypeError naming no argument
    assert mcc(D, L) == mcc(D.double(), L.double())
    codes = torch.relu(torch.randn(20, 6)).to(torch.bfloat16)
    assert l0(codes) == l0(codes.double())
    x, x_hat = torch.randn(20, 4).half(), torch.randn(20, 4).to(torch.bfloat16)
    assert fvu(x, x_hat) == fvu(x.double(), x_hat.double())


# -- the hedging degree (arXiv 2505.11756) -------------------------------------------------------
def _extended(control, delta, new):
    return np.vstack([control + delta, new])


def _span_norms(delta, V):
    """||P delta_i|| for P the projector onto the rows of a full-rank V, by least squares."""
    coef, *_ = np.linalg.lstsq(V.T, delta.T, rcond=None)
    return np.linalg.norm((V.T @ coef).T, axis=1)


def test_identical_original_latents_hedge_not_at_all():
    control = _unit(12, 16, 1)
    result = hedging_degree(control, np.vstack([control, _unit(3, 16, 2)]))
    assert (result.degree, result.proj_portion, result.baseline_portion, result.delta_norm,
            result.baseline_std) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert result.n_new == 3


def test_a_move_inside_the_new_span_is_hedging_beyond_the_random_baseline():
    """In d = 400 a delta of norm t inside the span of the 5 added rows has portion t; the
    baseline is the mean over the draws of its projection on 5 Gaussian rows, which in high
    dimension is about t sqrt(5 / d)."""
    d, width, k, t = 400, 30, 5, 0.3
    rng = np.random.default_rng(3)
    control, new = _unit(width, d, 4), rng.standard_normal((k, d))
    inside = rng.standard_normal((width, k)) @ new
    delta = t * inside / np.linalg.norm(inside, axis=1, keepdims=True)
    result = hedging_degree(control, _extended(control, delta, new), n_baselines=20, seed=7)
    assert result.proj_portion == pytest.approx(t, rel=1e-12)
    assert result.delta_norm == pytest.approx(t, rel=1e-12)
    draws = np.random.default_rng(7)  # the documented stream: one (k, d) block per draw
    by_hand = [_span_norms(delta, draws.standard_normal((k, d))).mean() for _ in range(20)]
    b = result.baseline_portion
    assert b == pytest.approx(np.mean(by_hand), rel=1e-10)
    assert result.baseline_std == pytest.approx(np.std(by_hand, ddof=1), rel=1e-8)
    assert b == pytest.approx(t * np.sqrt(k / d), rel=0.15)
    assert result.degree == pytest.approx((t - b) / (1 - b), rel=1e-12)
    other = hedging_degree(control, _extended(control, delta, new), n_baselines=20, seed=8)
    assert other.baseline_portion != b and other.proj_portion == result.proj_portion


def test_a_move_orthogonal_to_the_new_rows_is_no_hedging():
    d, width = 40, 10
    new = np.eye(d)[:4]
    control = _unit(width, d, 5)
    delta = 0.2 * _unit(width, d, 6)
    delta[:, :4] = 0.0  # nothing along the added rows
    result = hedging_degree(control, _extended(control, delta, new))
    assert result.proj_portion == pytest.approx(0.0, abs=1e-15)
    assert result.baseline_portion > 0 and result.degree == 0.0


def test_the_degree_depends_on_the_new_span_and_the_moves_not_on_how_they_are_written():
    """Unchanged by: a common scale of both decoders (the portions are ratios); negating
    or reordering the added rows, or adding one that is a combination of them (the same
    span; the projected portion, which reads only the span, is unchanged even though the
    baseline then draws one more row); negating a latent in both decoders or reordering
    the latents alike (the same moves, up to the order of a sum)."""
    d, width, k = 24, 8, 3
    rng = np.random.default_rng(9)
    control, new = _unit(width, d, 10), rng.standard_normal((k, d))
    delta = 0.1 * rng.standard_normal((width, k)) @ new + 0.05 * rng.standard_normal((width, d))
    extended = _extended(control, delta, new)
    base = hedging_degree(control, extended)
    assert base.degree > 0
    for scale in (3.7, 1e-150, 1e150):
        scaled = hedging_degree(scale * control, scale * extended)
        assert scaled.degree == pytest.approx(base.degree, rel=1e-10)
        assert scaled.delta_norm == pytest.approx(scale * base.delta_norm, rel=1e-10)
    flipped = hedging_degree(control, _extended(control, delta, -new[::-1]))
    assert flipped.degree == pytest.approx(base.degree, rel=1e-12)
    for dependent in (np.vstack([new, new[0] + 2 * new[2]]), np.vstack([new[:1], new])):
        # a dependent row first is where an unpivoted QR's first columns would miss the span
        assert hedging_degree(control, _extended(control, delta, dependent)).proj_portion \
            == pytest.approx(base.proj_portion, rel=1e-10)
    signs = np.where(np.arange(width) % 2, -1.0, 1.0)[:, None]
    order = rng.permutation(width)
    moved = hedging_degree((signs * control)[order],
                           _extended((signs * control)[order], (signs * delta)[order], new))
    assert moved.degree == pytest.approx(base.degree, rel=1e-12)


def test_the_hedging_degree_refuses_bad_shapes_and_an_undefined_baseline():
    control = _unit(4, 6, 11)
    extended = np.vstack([control, _unit(2, 6, 12)])
    assert hedging_degree(torch.from_numpy(control), torch.from_numpy(extended)).n_new == 2
    with pytest.raises(ValueError, match="control_decoder must have 2 dimension"):
        hedging_degree(control[0], extended)
    with pytest.raises(ValueError, match="extended_decoder must have d = 6 columns"):
        hedging_degree(control, extended[:, :5])
    with pytest.raises(ValueError, match="extended_decoder must have more rows than "
                                         "control_decoder \\(4\\)"):
        hedging_degree(control, control)
    with pytest.raises(ValueError, match="extended_decoder adds 6 rows in d = 6"):
        hedging_degree(control, np.vstack([control, np.eye(6)]))
    with pytest.raises(ValueError, match="n_baselines must be >= 2"):
        hedging_degree(control, extended, n_baselines=1)
    with pytest.raises(TypeError, match="n_baselines must be an int"):
        hedging_degree(control, extended, n_baselines=50.0)
    with pytest.raises(ValueError, match="seed"):
        hedging_degree(control, extended, seed=-1)
    with pytest.raises(ValueError, match="extended_decoder contains 1 NaN"):
        hedging_degree(control, _with_nan(extended))
    with pytest.raises(ValueError, match="control_decoder has only zero rows"):
        hedging_degree(np.zeros((4, 6)), extended)
    # every original latent reversed: moves of norm 2 that random spans of 5 in d = 6 catch
    # mostly, a baseline portion above 1
    reversed_ = np.vstack([-control, _unit(5, 6, 13)])
    with pytest.raises(ValueError, match="the random baseline's portion is .* >= 1"):
        hedging_degree(control, reversed_)


def _with_nan(A):
    A = A.copy()
    A[0, 0] = np.nan
    return A
