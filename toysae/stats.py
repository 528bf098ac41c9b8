"""Intervals over seeds and rank correlations: the statistics the experiments' verdicts use.

The rule of the experiments (docs/design.md, "Seeds and intervals"): a number compared
between groups is reported as its mean over seeds with a 95% interval, and a difference
is called only where the two intervals do not overlap. With few seeds (3-5) the
interval of the mean is Student's t interval, ``mean +- t_{n-1} * sd / sqrt(n)``: a
bootstrap over three values can only return values among them, so it would be too
narrow. One seed gives no interval at all (``low`` and ``high`` are None, null in
JSON): nothing measured once is called different from anything.

A rank correlation between two measured quantities (a theory number and a truth metric
over architectures x seeds) gets a percentile bootstrap interval over the pairs.

A statistic of pairs of seeds (how alike two seeds' dictionaries are) gets a jackknife
interval over the seeds (``pair_interval``): its pairs share seeds, so they are not
independent values.

``check_seeds`` is the check of an experiment's ``seeds`` (non-empty, no repeat) and
``not_resolved`` and ``over_seeds`` the words its findings use.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from toysae._validation import check_float, check_int, check_seed, check_tuple

#: The coverage every experiment reports.
LEVEL = 0.95


def check_seeds(values, name: str = "seeds") -> tuple[int, ...]:
    """The seeds a group runs over: a non-empty sequence of seeds (``check_seed``) with no
    repeat (a repeated seed would count one run twice and narrow the interval)."""
    seeds = check_tuple(values, name, check_seed)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{name} must not repeat, got {list(seeds)}")
    return seeds


def not_resolved(n: int) -> str:
    """The words for a difference the intervals do not settle: ``"not resolved at 3
    seeds"`` (``"... at 1 seed"``)."""
    return f"not resolved at {n} seed{'' if n == 1 else 's'}"


def over_seeds(n: int) -> str:
    """What a comparison's numbers are: ``"means over 3 seeds, 95% intervals"`` (``"1 seed:
    no intervals"``)."""
    return "1 seed: no intervals" if n == 1 else f"means over {n} seeds, 95% intervals"


def _values(values, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}") from err
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers, got shape "
                         f"{arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def _level(level) -> float:
    return check_float(level, "level", minimum=0.0, maximum=1.0, min_inclusive=False,
                       max_inclusive=False)


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values and its ``level`` interval ``[low, high]``.

    ``resolved``: there is an interval (``n >= 2``; with one value the bounds are None).
    ``str`` gives ``"0.812 [0.790, 0.834]"``; with one value, ``"0.812 (n=1)"``.
    """

    mean: float
    low: float | None
    high: float | None
    n: int
    level: float
    method: str  # "t" (Student's t interval of the mean), "jackknife" (of a pair mean)

    @property
    def resolved(self) -> bool:
        return self.low is not None and self.high is not None

    def format(self, digits: int = 3) -> str:
        if not self.resolved:
            return f"{self.mean:.{digits}f} (n={self.n})"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def __str__(self) -> str:
        return self.format()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def mean_interval(values, *, level: float = LEVEL) -> Interval:
    """The mean of ``values`` (one per seed) and its Student's t interval.

    values : 1-D, finite, at least one value; level : coverage in (0, 1).
    """
    arr = _values(values, "values")
    level = _level(level)
    mean = float(arr.mean())
    if arr.size == 1:
        return Interval(mean=mean, low=None, high=None, n=1, level=level, method="t")
    half = float(sps.t.ppf(0.5 + level / 2, arr.size - 1) * arr.std(ddof=1)
                 / math.sqrt(arr.size))
    return Interval(mean=mean, low=mean - half, high=mean + half, n=int(arr.size),
                    level=level, method="t")


def pair_interval(matrix, *, level: float = LEVEL) -> Interval:
    """The mean of a statistic of every PAIR of ``n`` seeds and its jackknife interval.

    matrix : (n, n), ``matrix[i, j]`` the statistic of seeds ``i`` and ``j`` (the pairwise
        MCC of their dictionaries, say); symmetric, finite off the diagonal, which is
        not read; n >= 2.

    The mean is over the ``n (n - 1) / 2`` pairs. The pairs are not independent (each
    seed is in ``n - 1`` of them), so a t interval over the pairs, or over each seed's
    mean with the others, is far too narrow (at ``n = 5``, where each seed's quality
    enters its pairs, a t interval over the pairs is about a third of the width and
    covers about 60%; the test measures it). The interval is the jackknife over seeds:
    ``theta_(i)``, the mean over the pairs without seed ``i``, gives the variance
    ``(n - 1) / n * sum_i (theta_(i) - mean theta)^2`` (in expectation too large rather
    than too small), and the interval is ``mean +- t_{n-1} * sqrt(variance)``; it covers
    95% in that test. ``n`` is the number of seeds;
    two seeds make one pair and no interval (bounds None), like one value in
    :func:`mean_interval`. ``method`` is ``"jackknife"``.
    """
    try:
        M = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"matrix must be a square array of numbers, got {matrix!r}") from err
    if M.ndim != 2 or M.shape[0] != M.shape[1] or M.shape[0] < 2:
        raise ValueError(f"matrix must be square with at least 2 rows (one per seed), got "
                         f"shape {M.shape}")
    level = _level(level)
    n = M.shape[0]
    off = ~np.eye(n, dtype=bool)
    if not np.isfinite(M[off]).all():
        raise ValueError("matrix must be finite off the diagonal")
    if not np.allclose(M[off], M.T[off], rtol=1e-12, atol=0.0):
        raise ValueError("matrix must be symmetric: matrix[i, j] is the pair (i, j)'s value")
    upper = np.triu(off)
    mean = float(M[upper].mean())
    if n == 2:
        return Interval(mean=mean, low=None, high=None, n=2, level=level, method="jackknife")
    # every pair without seed i: the total less seed i's row, over the pairs left
    row_sums = np.where(off, M, 0.0).sum(axis=1)
    total = M[upper].sum()
    loo = (total - row_sums) / ((n - 1) * (n - 2) / 2)
    variance = (n - 1) / n * float(((loo - loo.mean()) ** 2).sum())
    half = float(sps.t.ppf(0.5 + level / 2, n - 1) * math.sqrt(variance))
    return Interval(mean=mean, low=mean - half, high=mean + half, n=n, level=level,
                    method="jackknife")


def separated(a: Interval, b: Interval) -> bool:
    """Whether two intervals are disjoint (both resolved and not overlapping)."""
    for name, value in (("a", a), ("b", b)):
        if not isinstance(value, Interval):
            raise TypeError(f"{name} must be an Interval, got {type(value).__name__}")
    return a.resolved and b.resolved and (a.high < b.low or b.high < a.low)


def compare(a: Interval, b: Interval) -> int:
    """``+1`` if ``a`` lies above ``b`` with disjoint intervals, ``-1`` if below, ``0`` if
    the difference is not resolved."""
    if not separated(a, b):
        return 0
    return 1 if a.mean > b.mean else -1


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rank correlation ``rho`` of ``n`` pairs, with a percentile bootstrap
    interval over the pairs.

    ``resolved``: the interval excludes 0 (the sign of the association is called).
    ``n_boot`` counts the bootstrap resamples that had a defined correlation (a resample
    whose values are all tied has none and is left out).
    """

    rho: float
    low: float
    high: float
    n: int
    level: float
    n_boot: int
    p_value: float

    @property
    def resolved(self) -> bool:
        return self.low > 0 or self.high < 0

    def format(self, digits: int = 2) -> str:
        return f"{self.rho:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"

    def __str__(self) -> str:
        return f"rho = {self.format()} (n={self.n})"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(sps.spearmanr(x, y).statistic)


def rank_correlation(x, y, *, n_boot: int = 2000, level: float = LEVEL,
                     seed: int = 0) -> RankCorrelation:
    """Spearman's rho of ``x`` and ``y`` (1-D, same length >= 3, neither constant) and its
    percentile bootstrap interval from ``n_boot`` resamples of the pairs."""
    x, y = _values(x, "x"), _values(y, "y")
    if x.size != y.size:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if x.size < 3:
        raise ValueError(f"x and y need at least 3 pairs for a rank correlation, got {x.size}")
    for name, arr in (("x", x), ("y", y)):
        if np.ptp(arr) == 0:
            raise ValueError(f"{name} is constant ({arr[0]!r}): its rank correlation is "
                             f"undefined")
    n_boot = check_int(n_boot, "n_boot", minimum=100)
    level = _level(level)
    rng = np.random.default_rng(check_seed(seed))
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    boots = np.array([_spearman(x[i], y[i]) for i in idx])
    boots = boots[np.isfinite(boots)]
    if boots.size < n_boot // 2:
        raise ValueError(f"only {boots.size} of {n_boot} bootstrap resamples had a defined "
                         f"rank correlation: too many tied values in x or y")
    res = sps.spearmanr(x, y)
    low, high = np.quantile(boots, [0.5 - level / 2, 0.5 + level / 2])
    return RankCorrelation(rho=float(res.statistic), low=float(low), high=float(high),
                           n=int(x.size), level=level, n_boot=int(boots.size),
                           p_value=float(res.pvalue))
