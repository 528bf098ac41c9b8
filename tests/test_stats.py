"""toysae.stats: the t interval of a mean over seeds, the separation rule, rank correlation,
the check of a seeds list."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from toysae.stats import (
    check_seeds,
    compare,
    mean_interval,
    not_resolved,
    over_seeds,
    pair_interval,
    rank_correlation,
    separated,
)

T_975_DF2 = 4.302652729749464  # Student's t quantile 0.975 at 2 degrees of freedom (tables)


def test_interval_of_three_values_is_the_t_interval_by_hand():
    iv = mean_interval([1.0, 2.0, 3.0])
    half = T_975_DF2 * 1.0 / math.sqrt(3)  # sample sd of 1, 2, 3 is 1
    assert iv.mean == 2.0 and iv.n == 3 and iv.method == "t"
    assert iv.low == pytest.approx(2.0 - half, rel=1e-12)
    assert iv.high == pytest.approx(2.0 + half, rel=1e-12)
    assert str(iv) == f"2.000 [{2 - half:.3f}, {2 + half:.3f}]"


def test_t_interval_covers_the_mean_95_percent_of_the_time_at_three_seeds():
    # A z interval (1.96) would cover about 83% at n = 3; the t interval covers 95%.
    rng = np.random.default_rng(0)
    hits = sum(iv.low <= 0.5 <= iv.high for iv in
               (mean_interval(rng.normal(0.5, 0.2, size=3)) for _ in range(4000)))
    assert 0.935 <= hits / 4000 <= 0.965


def test_one_value_has_no_interval_and_is_never_separated():
    one = mean_interval([0.9])
    assert not one.resolved and one.low is None and one.high is None
    assert str(one) == "0.900 (n=1)"
    assert json.loads(json.dumps(one.to_dict()))["low"] is None
    far = mean_interval([0.1, 0.1001, 0.0999])
    assert not separated(one, far) and compare(one, far) == 0


def test_separation_and_comparison():
    low = mean_interval([0.50, 0.52, 0.51])
    high = mean_interval([0.70, 0.72, 0.71])
    wide = mean_interval([0.40, 0.80, 0.60])
    assert separated(low, high) and separated(high, low)
    assert compare(high, low) == 1 and compare(low, high) == -1
    assert not separated(low, wide) and compare(wide, low) == 0


@pytest.mark.parametrize("values, error", [
    ([], ValueError), ([1.0, float("nan")], ValueError), ([[1.0, 2.0]], ValueError),
    (["a", "b"], TypeError), ([1.0, float("inf")], ValueError)])
def test_bad_values_are_refused(values, error):
    with pytest.raises(error, match="values"):
        mean_interval(values)


def test_bad_level_and_bad_intervals_are_refused():
    with pytest.raises(ValueError, match="level"):
        mean_interval([1.0, 2.0], level=1.0)
    with pytest.raises(TypeError, match="a must be an Interval"):
        separated((0, 1), mean_interval([1.0, 2.0]))


def _pairs(effects, noise=0.0, rng=None):
    """A symmetric matrix of pair values ``effects[i] + effects[j] (+ noise)``."""
    n = len(effects)
    M = np.add.outer(effects, effects)
    if noise:
        E = np.triu(rng.normal(0, noise, size=(n, n)), 1)
        M = M + E + E.T
    return M


def test_pair_interval_is_the_jackknife_over_seeds_by_hand():
    M = _pairs(np.array([0.0, 1.0, 2.0, 4.0]))
    iv = pair_interval(M)
    # pairs: 1, 2, 4, 3, 5, 6 -> mean 3.5; without seed i: the mean of the three pairs left
    loo = np.array([(3 + 5 + 6) / 3, (2 + 4 + 6) / 3, (1 + 4 + 5) / 3, (1 + 2 + 3) / 3])
    half = 3.182446305284263 * math.sqrt(3 / 4 * ((loo - loo.mean()) ** 2).sum())  # t_.975,3
    assert iv.mean == 3.5 and iv.n == 4 and iv.method == "jackknife"
    assert (iv.low, iv.high) == pytest.approx((3.5 - half, 3.5 + half), rel=1e-12)
    assert pair_interval(M * 0 + 0.7).format() == "0.700 [0.700, 0.700]"  # all pairs alike
    np.fill_diagonal(M, np.nan)  # the diagonal is not read
    assert pair_interval(M) == iv
    two = pair_interval([[1.0, 0.8], [0.8, 1.0]])  # one pair: no interval
    assert two.mean == 0.8 and not two.resolved and two.n == 2


def test_pair_interval_covers_where_intervals_over_pairs_do_not():
    """Seeds of random quality (each seed's effect enters its n - 1 pairs): at 5 seeds the
    jackknife covers the true mean 95% of the time (measured 95.5%); a t interval over the
    10 pair values, as if they were independent, about 62%, at a third of the width."""
    rng = np.random.default_rng(0)
    hits = naive = 0
    for _ in range(2000):
        M = _pairs(rng.normal(0.0, 0.1, size=5), noise=0.02, rng=rng)
        iv = pair_interval(M)
        hits += iv.low <= 0.0 <= iv.high
        flat = mean_interval(M[np.triu_indices(5, 1)])
        naive += flat.low <= 0.0 <= flat.high
    assert 0.935 <= hits / 2000 <= 0.975
    assert naive / 2000 < 0.75


@pytest.mark.parametrize("matrix, error, match", [
    ([[1.0]], ValueError, "at least 2 rows"), ([1.0, 2.0], ValueError, "square"),
    ([[1.0, 0.5, 0.2], [0.5, 1.0, 0.3]], ValueError, "square"),
    ([[1.0, 0.5], [0.4, 1.0]], ValueError, "symmetric"),
    ([[1.0, np.nan], [np.nan, 1.0]], ValueError, "finite"),
    ([["a", "b"], ["c", "d"]], TypeError, "matrix must be"),
])
def test_pair_interval_refuses_bad_matrices(matrix, error, match):
    with pytest.raises(error, match=match):
        pair_interval(matrix)


def _ranks(a):
    return np.argsort(np.argsort(a)).astype(float)


def test_rank_correlation_equals_pearson_of_ranks_and_brackets_it():
    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    y = x + rng.normal(scale=0.8, size=40)
    rc = rank_correlation(x, y, seed=3)
    by_hand = np.corrcoef(_ranks(x), _ranks(y))[0, 1]
    assert rc.rho == pytest.approx(by_hand, rel=1e-12)
    assert rc.low < rc.rho < rc.high and rc.resolved and rc.n == 40
    assert rank_correlation(x, y, seed=3) == rc  # seeded
    assert rank_correlation(x, y, seed=4).low != rc.low


def test_rank_correlation_of_a_monotone_and_of_an_unrelated_pair():
    x = np.arange(12.0)
    up = rank_correlation(x, x ** 3)
    down = rank_correlation(x, -np.exp(x))
    assert up.rho == 1.0 and up.low == pytest.approx(1.0) and up.resolved
    assert down.rho == -1.0 and down.high == pytest.approx(-1.0) and down.resolved
    rng = np.random.default_rng(2)
    noise = rank_correlation(rng.normal(size=60), rng.normal(size=60))
    assert noise.low < 0 < noise.high and not noise.resolved


@pytest.mark.parametrize("x, y, match", [
    ([1, 2, 3], [1, 2], "same length"), ([1, 2], [1, 2], "at least 3"),
    ([1, 1, 1, 1], [1, 2, 3, 4], "x is constant"), ([1, 2, 3, 4], [5, 5, 5, 5], "y is constant"),
    ([1, 2, float("nan")], [1, 2, 3], "x must be finite")])
def test_rank_correlation_refuses_bad_input(x, y, match):
    with pytest.raises(ValueError, match=match):
        rank_correlation(x, y)


def test_check_seeds_keeps_distinct_seeds_and_refuses_the_rest():
    assert check_seeds([2, 0, 1]) == (2, 0, 1)
    assert check_seeds((5,), "train_seeds") == (5,)
    with pytest.raises(ValueError, match="seeds must not be empty"):
        check_seeds(())
    with pytest.raises(ValueError, match=r"seeds must not repeat, got \[0, 1, 0\]"):
        check_seeds((0, 1, 0))
    with pytest.raises(ValueError, match=r"panel_seeds\[1\]"):
        check_seeds((0, -1), "panel_seeds")
    with pytest.raises(TypeError, match=r"seeds\[0\]"):
        check_seeds((1.5,))
    with pytest.raises(TypeError, match="seeds must be a sequence"):
        check_seeds(3)


def test_not_resolved_counts_the_seeds():
    assert not_resolved(3) == "not resolved at 3 seeds"
    assert not_resolved(1) == "not resolved at 1 seed"


def test_over_seeds_says_what_the_numbers_are():
    assert over_seeds(3) == "means over 3 seeds, 95% intervals"
    assert over_seeds(1) == "1 seed: no intervals"
