"""Pair conditions: atom stationarity of ``i`` projected on ``d_j``, and its convex-hull form.

For an ordered pair ``(i, j)`` with ``t_nij = sign(z_ni) s_nj`` (``= s_nj`` for
nonnegative codes) a stationary point satisfies the pair identity

    sum_n |z_ni| t_nij = c_ij * sum_n |z_ni|,

i.e. the ``|z_i|``-weighted mean of ``t_.ij`` over the support of ``i`` is
``c_ij``. A weighted mean lies between the smallest and largest value, so
``c_ij`` must lie in ``[min_{supp i} t_nij, max_{supp i} t_nij]``, which is
inside ``[min_{supp i} s_nj, 1]`` (docs/theory.md, section 3) because ``s_nj <= 1`` under the
code KKT conditions and ``s_nj = 1`` where ``j`` is co-active.

Large dictionaries (docs/theory.md, "Large dictionaries"). The left side is
``d_j . R_i / lam`` with ``R_i = sum_n z_ni r_n``, so the identity's deviation is
``w_i . d_j`` with ``w_i = R_i / (lam sum_n |z_ni|) - d_i``: every pair's identity
comes from the (n_atoms, d) residual moments, in blocks of atoms, exactly. Only
the hull and the co-active split need the samples of ``supp z_i`` pair by pair,
and the hull can fail only where the identity does (the mean lies in the hull),
and the supports can be nested only for pairs that co-fire; so with
``pairs="candidates"`` those records are built for the identity's violators
(the largest first, at most ``max_pairs``) and the nested pairs, not for all
``n_atoms**2`` pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from toysae._result import Result
from toysae._tuning import CHECK_CHUNK_ENTRIES, PAIR_GATHER_ENTRIES
from toysae._validation import check_float, check_indices, check_int
from toysae.theory.conditions import INDENT, holds
from toysae.theory.problem import UNIT_NORM_ATOL, Chunk, Problem, make_problem
from toysae.theory.support import (
    NestingTracker,
    SampleSums,
    csc_sorted,
    pair_rows,
    row_dots,
)

PAIR_TOL = 1e-2
#: ``pairs="auto"`` checks every ordered pair up to this many atoms (the all-pairs
#: report holds about twenty (n_atoms, n_atoms) arrays: 170 MB at 1,024 atoms) and
#: the candidate pairs above it.
ALL_PAIRS_MAX_ATOMS = 1024
#: Default ``max_pairs``: candidate pairs given a full record (hull, co-active split).
MAX_PAIRS = 200_000
PAIR_MODES = ("auto", "all", "candidates")


@dataclass(repr=False)
class PairReport(Result):
    """Pair identity, hull intervals and the co-active / alone-firing split, per ordered pair.

    ``scope`` says which pairs have a record. ``"all"``: every array is
    (n_atoms, n_atoms), entry ``[i, j]`` for the pair (i, j), diagonal entries
    vacuous (0 / False). ``"given"``: arrays are (n_pairs,) in the order of
    ``pairs``. ``"candidates"`` (large dictionaries): arrays are (n_pairs,) for the
    pairs in ``pairs``, sorted by (i, j): the pairs whose identity fails (the
    ``max_pairs`` largest violations when there are more) and the nested pairs.
    ``max_violation``, ``n_violations``, ``worst`` and ``n_nested`` always cover
    every one of the ``n_pairs_checked`` ordered pairs; ``n_hull_failures`` covers
    the pairs with a record, which is every pair whose hull can fail when
    ``complete`` is True (docs/theory.md, "Large dictionaries").

    ``identity_violation = |weighted_mean - cos|`` in units of ``lam`` (0 =
    holds); it bounds ``attained_hull_violation``. The split is exact for any
    ``(D, Z)``: ``alone_lhs + coactive_lhs = mass_i - lhs`` and the identity
    holds iff ``alone_lhs + coactive_lhs = split_rhs``; at code-KKT codes
    ``coactive_lhs = 0`` (nonnegative codes), which leaves the alone-firing form
    ``sum_{n in E} z_ni (1 - s_nj) = (1 - c_ij) sum_n z_ni`` (docs/theory.md, section 3).
    Pairs of a dead atom ``i`` are vacuous: lhs = rhs = 0, mean = hull = cos.
    ``passed``: every pair identity holds within ``tol`` (then every hull holds too).
    """

    passed: bool
    message: str
    scope: str  # "all", "given" or "candidates"
    max_violation: float
    n_violations: int  # pairs with identity_violation > tol
    n_hull_failures: int  # recorded pairs with cos outside [hull_low - tol, 1]
    n_nested: int  # pairs with supp i inside supp j (see hierarchy_certificate)
    n_pairs_checked: int  # ordered pairs the identity was checked on
    complete: bool  # every pair whose hull can fail has a record
    tol: float
    worst: tuple  # ((i, j, violation, cos, hull_low, weighted_mean), ...)
    pairs: np.ndarray | None  # (n_pairs, 2) or None for all pairs
    cos: np.ndarray  # c_ij
    lhs: np.ndarray  # sum_n z_ni s_nj
    rhs: np.ndarray  # c_ij sum_n |z_ni|
    weighted_mean: np.ndarray  # lhs / sum_n |z_ni|
    identity_violation: np.ndarray
    hull_low: np.ndarray  # min over supp i of t_nij
    hull_high: np.ndarray  # max over supp i of t_nij (1 if ever co-active at KKT)
    in_hull: np.ndarray  # bool: cos in [hull_low, 1] (the hull form), within tol
    in_attained_hull: np.ndarray  # bool: cos in [hull_low, hull_high], within tol
    hull_violation: np.ndarray  # (hull_low - cos)_+
    attained_hull_violation: np.ndarray  # distance of cos from [hull_low, hull_high]
    coactive_mass: np.ndarray  # sum over supp i and supp j of |z_ni|
    alone_mass: np.ndarray  # sum over E = supp i minus supp j of |z_ni|
    alone_lhs: np.ndarray  # sum over E of |z_ni| (1 - t_nij)
    coactive_lhs: np.ndarray  # sum over co-active n of |z_ni| (1 - t_nij)
    split_rhs: np.ndarray  # (1 - c_ij) sum_n |z_ni|
    nested: np.ndarray  # bool: E empty, supp i inside supp j
    mass: np.ndarray  # (n_atoms,) sum_n |z_nk|
    alive: np.ndarray  # (n_atoms,) bool

    _ARRAY_FIELDS = ("pairs", "cos", "lhs", "rhs", "weighted_mean", "identity_violation",
                     "hull_low", "hull_high", "in_hull", "in_attained_hull", "hull_violation",
                     "attained_hull_violation", "coactive_mass", "alone_mass", "alone_lhs",
                     "coactive_lhs", "split_rhs", "nested")


def _check_pairs(pairs, n_atoms: int) -> np.ndarray:
    """Ordered (i, j) atom pairs as an (n_pairs, 2) int64 array (the atoms' indices)."""
    arr = check_indices(pairs, "pairs", n_atoms, pairs=True)
    if (arr[:, 0] == arr[:, 1]).any():
        raise ValueError("pairs must have i != j; got a pair (i, i)")
    return arr


def check_pair_mode(pairs, name: str = "pairs"):
    """``pairs`` as given (an array is checked later, against the atoms); a bad string or
    type is a ValueError naming ``name``."""
    if pairs is None or not isinstance(pairs, str):
        return pairs
    if pairs not in PAIR_MODES:
        raise ValueError(f"{name} must be one of {list(PAIR_MODES)}, None or an (n_pairs, 2) "
                         f"array, got {pairs!r}")
    return pairs


def identity_deviation(p: Problem, sums: SampleSums) -> np.ndarray:
    """(n_atoms, d) ``w_i = R_i / (lam sum_n |z_ni|) - d_i`` (0 for a dead atom): the
    identity's signed deviation of pair (i, j) is ``w_i . d_j`` (docs/theory.md)."""
    alive = sums.mass > 0
    W = sums.R / (p.lam * np.where(alive, sums.mass, 1.0))[:, None] - p.D
    W[~alive] = 0.0
    return W


class AllPairSums:
    """Accumulates the (n_atoms, n_atoms) co-activity sums and hull extremes of every pair."""

    def __init__(self, p: Problem):
        k = p.n_atoms
        self.co_count = np.zeros((k, k))
        self.co_mass = np.zeros((k, k))
        self.co_zs = np.zeros((k, k))
        self.low = np.full((k, k), np.inf)
        self.high = np.full((k, k), -np.inf)

    def rows(self, p: Problem) -> int:
        """Samples per chunk so the gathered (nnz in chunk, n_atoms) hull block stays small."""
        per_row = 1 + p.Z.nnz / p.n_samples
        return int(max(16, min(p.chunk_rows(),
                               CHECK_CHUNK_ENTRIES // max(1, int(p.n_atoms * per_row)))))

    def add(self, c: Chunk) -> None:
        Z, S = c.Z, c.S
        rows = np.repeat(np.arange(Z.shape[0]), np.diff(Z.indptr))
        SA = sp.csr_matrix((S[rows, Z.indices], Z.indices, Z.indptr), shape=Z.shape)
        A = sp.csr_matrix((np.ones_like(Z.data), Z.indices, Z.indptr), shape=Z.shape)
        self.co_count += (A.T @ A).toarray()
        self.co_mass += (abs(Z).T @ A).toarray()
        self.co_zs += (Z.T @ SA).toarray()
        # min/max of t_nij over the support of i: gather the response rows of
        # every (n, i) in the support, grouped by atom i, and reduce per group.
        C = Z.tocsc()
        counts = np.diff(C.indptr)
        atoms = np.flatnonzero(counts)
        if atoms.size == 0:
            return
        T = S[C.indices] * np.sign(C.data)[:, None]
        starts = C.indptr[atoms]
        self.low[atoms] = np.minimum(self.low[atoms], np.minimum.reduceat(T, starts, axis=0))
        self.high[atoms] = np.maximum(self.high[atoms], np.maximum.reduceat(T, starts, axis=0))


class PairListSums:
    """The same sums for a list of ordered pairs, from the samples of ``supp z_i`` alone.

    Per chunk the work is the pairs' support sizes in the chunk (one gather of
    responses and codes, five ``reduceat``), memory O(n_pairs); no (n_atoms,
    n_atoms) array is made. ``pairs`` (n_pairs, 2) must be sorted by (i, j) only for
    speed, not for correctness.
    """

    def __init__(self, p: Problem, pairs: np.ndarray, count: np.ndarray):
        self.first, self.second = pairs[:, 0], pairs[:, 1]
        self.nonneg = p.nonneg
        m = len(pairs)
        self.co_count = np.zeros(m)
        self.co_mass = np.zeros(m)
        self.co_zs = np.zeros(m)
        self.low = np.full(m, np.inf)
        self.high = np.full(m, -np.inf)
        self.entries = int(count[self.first].sum())  # over all samples

    def rows(self, p: Problem) -> int:
        """Samples per chunk so one chunk's gather has about ``PAIR_GATHER_ENTRIES`` entries."""
        per_sample = self.entries / max(1, p.n_samples)
        return int(max(16, min(p.chunk_rows(), PAIR_GATHER_ENTRIES / max(per_sample, 1e-12))))

    def add(self, c: Chunk) -> None:
        g = pair_rows(self.first, csc_sorted(c.Z))
        if g.n_entries == 0:
            return
        j = self.second[g.pair]
        s = c.S[g.rows, j]
        t = s if self.nonneg else np.sign(g.z) * s
        co = (c.codes_at(g.rows, j) != 0).astype(float)
        act, starts = g.active, g.starts
        self.low[act] = np.minimum(self.low[act], np.minimum.reduceat(t, starts))
        self.high[act] = np.maximum(self.high[act], np.maximum.reduceat(t, starts))
        self.co_count[act] += np.add.reduceat(co, starts)
        co *= g.z
        self.co_zs[act] += np.add.reduceat(co * s, starts)
        np.abs(co, out=co)
        self.co_mass[act] += np.add.reduceat(co, starts)


@dataclass
class IdentityScan:
    """The pair identity over every ordered pair, from the residual moments alone."""

    n_violations: int
    max_violation: float
    worst: np.ndarray  # (n_worst, 2) pairs, largest violation first
    flagged: np.ndarray  # (n_kept, 2) violating pairs kept for records, sorted by (i, j)
    n_pairs: int  # ordered pairs scanned


def scan_identity(p: Problem, W: np.ndarray, tol: float, n_worst: int,
                  max_pairs: int) -> IdentityScan:
    """Every ordered pair's identity deviation ``|w_i . d_j|`` in blocks of atoms: the count
    above ``tol``, the maximum, the ``n_worst`` largest and the ``max(max_pairs, n_worst)``
    largest violators; memory O(block * n_atoms + max_pairs)."""
    k = p.n_atoms
    block = max(1, CHECK_CHUNK_ENTRIES // k)
    keep = max(max_pairs, n_worst)
    n_viol, max_v = 0, 0.0
    pool_i, pool_j, pool_v = [], [], []
    pooled = 0
    floor = tol  # once ``keep`` are pooled, a pair must beat the smallest kept to enter
    for start in range(0, k, block):
        stop = min(k, start + block)
        V = np.abs(W[start:stop] @ p.D.T)
        V[np.arange(stop - start), np.arange(start, stop)] = 0.0
        max_v = max(max_v, float(V.max()))
        n_viol += int(np.count_nonzero(V > tol))
        flat = V.ravel()
        hit = np.flatnonzero(flat > floor)
        if hit.size > keep:  # no more than ``keep`` of one block can be among the kept
            hit = hit[np.argpartition(-flat[hit], keep - 1)[:keep]]
        if hit.size == 0:
            continue
        pool_i.append(hit // k + start)
        pool_j.append(hit % k)
        pool_v.append(flat[hit])
        pooled += hit.size
        if pooled > 2 * keep:
            pool_i, pool_j, pool_v = _largest(pool_i, pool_j, pool_v, keep)
            pooled = pool_i[0].size
            floor = max(tol, float(pool_v[0].min()))
    if pooled:
        (fi,), (fj,), (fv,) = _largest(pool_i, pool_j, pool_v, keep)
    else:
        fi = fj = np.zeros(0, dtype=np.int64)
        fv = np.zeros(0)
    order = np.argsort(-fv, kind="stable")
    worst = np.stack([fi[order[:n_worst]], fj[order[:n_worst]]], axis=1)
    flagged = np.stack([fi, fj], axis=1)  # the largest max(max_pairs, n_worst)
    flagged = flagged[np.lexsort((flagged[:, 1], flagged[:, 0]))]
    return IdentityScan(n_violations=n_viol, max_violation=max_v, worst=worst,
                        flagged=flagged.astype(np.int64), n_pairs=k * (k - 1))


def _largest(pool_i, pool_j, pool_v, keep: int):
    i, j, v = (np.concatenate(x) for x in (pool_i, pool_j, pool_v))
    if v.size > keep:
        top = np.argpartition(-v, keep - 1)[:keep]
        i, j, v = i[top], j[top], v[top]
    return [i], [j], [v]


@dataclass
class PairPlan:
    """Which pairs get records, and the accumulator that collects them over the samples."""

    scope: str
    pairs: np.ndarray | None  # None: all pairs
    sums: AllPairSums | PairListSums
    W: np.ndarray  # identity deviations (n_atoms, d)
    scan: IdentityScan | None  # candidates scope: the identity over every pair

    def panel_pairs(self, p: Problem, count: np.ndarray, n_panels: int,
                    min_support: int) -> np.ndarray:
        """(m, 2) up to ``n_panels`` recorded pairs with the largest identity violations among
        those whose atom ``i`` fires on at least ``min_support`` samples (any support when
        none does): the pairs worth a hull panel, known before the responses pass."""
        if self.pairs is not None:
            cand = self.pairs
        else:
            k = p.n_atoms
            i, j = np.divmod(np.arange(k * k), k)
            cand = np.stack([i[i != j], j[i != j]], axis=1)
        v = np.abs(row_dots(self.W, p.D, cand[:, 0], cand[:, 1]))
        ok = v > 0
        supported = ok & (count[cand[:, 0]] >= min_support)
        ok = supported if supported.any() else ok
        idx = np.flatnonzero(ok)
        return cand[idx[np.argsort(-v[idx], kind="stable")[:n_panels]]]


def plan_pairs(p: Problem, sums: SampleSums, nesting: NestingTracker | None, pairs, tol: float,
               n_worst: int, max_pairs: int = MAX_PAIRS) -> PairPlan:
    """Decide the pairs of a pair check (``pairs``: "auto", "all", "candidates" or an
    array) from the residual moments and, for candidates, the nested pairs."""
    W = identity_deviation(p, sums)
    if isinstance(pairs, str) and pairs == "auto":
        pairs = "all" if p.n_atoms <= ALL_PAIRS_MAX_ATOMS else "candidates"
    if isinstance(pairs, str) and pairs == "all":
        return PairPlan("all", None, AllPairSums(p), W, None)
    if isinstance(pairs, str):
        scan = scan_identity(p, W, tol, n_worst, max_pairs)
        chosen = scan.flagged
        if nesting is not None and nesting.child.size:
            chosen = np.unique(np.concatenate([chosen, nesting.pairs()]), axis=0)
        return PairPlan("candidates", chosen, PairListSums(p, chosen, sums.count), W, scan)
    pairs = _check_pairs(pairs, p.n_atoms)
    return PairPlan("given", pairs, PairListSums(p, pairs, sums.count), W, None)


def pair_report(p: Problem, sums: SampleSums, plan: PairPlan, tol: float,
                n_worst: int) -> PairReport:
    """The :class:`PairReport` of a plan whose accumulator has seen every sample."""
    k = p.n_atoms
    mass, count = sums.mass, sums.count.astype(float)
    alive = mass > 0
    acc = plan.sums
    if plan.pairs is None:
        first = np.arange(k)[:, None]
        cos = p.D @ p.D.T
        delta = plan.W @ p.D.T
        live = np.broadcast_to(alive[first], cos.shape).copy()
        np.fill_diagonal(live, False)
    else:
        first, second = plan.pairs[:, 0], plan.pairs[:, 1]
        cos = row_dots(p.D, p.D, first, second)
        delta = row_dots(plan.W, p.D, first, second)
        live = alive[first]
    mass_i = np.broadcast_to(mass[first], cos.shape)
    mean = np.where(live, cos + delta, cos)
    low = np.where(live, acc.low, cos)
    high = np.where(live, acc.high, cos)
    lhs = np.where(live, mean * mass_i, 0.0)
    rhs = np.where(live, cos * mass_i, 0.0)
    nested = live & (acc.co_count == np.broadcast_to(count[first], cos.shape))
    co_mass = np.where(live, acc.co_mass, 0.0)
    alone_mass = np.where(live & ~nested, mass_i - co_mass, 0.0)
    co_zs = np.where(live, acc.co_zs, 0.0)
    coactive_lhs = co_mass - co_zs
    alone_lhs = np.where(live, mass_i - lhs, 0.0) - coactive_lhs
    split_rhs = np.where(live, (1.0 - cos) * mass_i, 0.0)
    violation = np.abs(mean - cos)
    hull_violation = np.maximum(low - cos, 0.0)
    attained = np.maximum(hull_violation, np.maximum(cos - high, 0.0))
    n_hull = int((hull_violation > tol).sum())

    def record(flat: int) -> tuple:
        if plan.pairs is None:
            i, j = divmod(int(flat), k)
        else:
            i, j = (int(v) for v in plan.pairs[flat])
        return (i, j, float(violation.flat[flat]), float(cos.flat[flat]),
                float(low.flat[flat]), float(mean.flat[flat]))

    if plan.scan is None:
        order = np.argsort(-violation, axis=None, kind="stable")[:n_worst]
        worst = [record(f) for f in order if violation.flat[f] > 0]
        max_v = float(violation.max()) if violation.size else 0.0
        n_viol = int((violation > tol).sum())
        n_pairs = k * (k - 1) if plan.pairs is None else len(plan.pairs)
        n_nested = int(nested.sum())
        complete = True
    else:
        scan = plan.scan
        keys = plan.pairs[:, 0] * k + plan.pairs[:, 1]  # sorted: the pairs are in (i, j) order
        at = np.searchsorted(keys, scan.worst[:, 0] * k + scan.worst[:, 1])
        worst = [record(int(f)) for f in at]
        max_v, n_viol, n_pairs = scan.max_violation, scan.n_violations, scan.n_pairs
        n_nested = int(nested.sum())  # every nested pair has a record
        complete = len(scan.flagged) == scan.n_violations
    passed = max_v <= tol
    given = "given " if plan.scope == "given" else ""
    message = (f"pair identity {holds(passed)}: max violation {max_v:.3g} "
               f"{'<=' if passed else '>'} tol {tol:g} (units of lam); {n_viol} of {n_pairs} "
               f"{given}pair(s) above tol, ")
    if complete:
        message += f"{n_hull} with c_ij outside [min s_nj, 1]"
    else:
        message += (f"at least {n_hull} with c_ij outside [min s_nj, 1] (hull checked on the "
                    f"{len(scan.flagged)} largest violations; it can fail only where the "
                    f"identity does)")
    if worst and not passed:
        i, j, _, c, lo, m = worst[0]
        message += (f"\n{INDENT}worst pair ({i}, {j}): mean s_nj over supp z_{i} is {m:.3f}, "
                    f"c_ij = {c:.3f}, hull [{lo:.3f}, 1]")
    return PairReport(
        passed=passed, message=message, scope=plan.scope, max_violation=max_v,
        n_violations=n_viol, n_hull_failures=n_hull, n_nested=n_nested,
        n_pairs_checked=n_pairs, complete=complete, tol=tol,
        worst=tuple(worst), pairs=plan.pairs, cos=cos, lhs=lhs, rhs=rhs, weighted_mean=mean,
        identity_violation=violation, hull_low=low, hull_high=high,
        in_hull=hull_violation <= tol, in_attained_hull=attained <= tol,
        hull_violation=hull_violation, attained_hull_violation=attained,
        coactive_mass=co_mass, alone_mass=alone_mass, alone_lhs=alone_lhs,
        coactive_lhs=coactive_lhs, split_rhs=split_rhs, nested=nested, mass=mass,
        alive=alive)


@dataclass(repr=False)
class HullSample(Result):
    """The responses of one pair over the support of its first atom, for a hull panel.

    ``t`` holds ``t_nij`` for the first ``len(t)`` samples of ``supp z_i`` (at most
    the sampler's ``max_points``), ``coactive`` whether ``j`` fires there too; the
    hull, mean and violation are the report's, over all of ``supp z_i``. ``passed``:
    ``cos`` lies in the attained hull ``[hull_low, hull_high]`` within ``tol``.
    """

    passed: bool
    message: str
    i: int
    j: int
    cos: float
    hull_low: float
    hull_high: float
    weighted_mean: float
    identity_violation: float
    n_support: int
    t: np.ndarray
    coactive: np.ndarray

    _ARRAY_FIELDS = ("t", "coactive")


class HullSampler:
    """Keeps the first ``max_points`` responses of each pair in ``pairs`` (m, 2) over the
    support of its first atom, as the samples pass (an accumulator of ``run_checks``)."""

    def __init__(self, pairs: np.ndarray, max_points: int = 2000):
        self.pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        self.max_points = max_points
        self.t: list[list[np.ndarray]] = [[] for _ in range(len(self.pairs))]
        self.coactive: list[list[np.ndarray]] = [[] for _ in range(len(self.pairs))]
        self.kept = np.zeros(len(self.pairs), dtype=np.int64)

    def add(self, c: Chunk) -> None:
        if len(self.pairs) == 0 or (self.kept >= self.max_points).all():
            return
        g = pair_rows(self.pairs[:, 0], csc_sorted(c.Z))
        if g.n_entries == 0:
            return
        j = self.pairs[g.pair, 1]
        t = np.sign(g.z) * c.S[g.rows, j]
        co = c.codes_at(g.rows, j) != 0
        ends = np.append(g.starts[1:], g.n_entries)
        for a, start, stop in zip(g.active, g.starts, ends, strict=True):
            take = min(stop - start, self.max_points - self.kept[a])
            if take > 0:
                self.t[a].append(t[start:start + take])
                self.coactive[a].append(co[start:start + take])
                self.kept[a] += take

    def result(self, report: PairReport, count: np.ndarray) -> tuple[HullSample, ...]:
        """One :class:`HullSample` per pair, with the report's numbers for it (``count``:
        each atom's number of samples, :attr:`SampleSums.count`)."""
        out = []
        for a, (i, j) in enumerate(self.pairs):
            i, j = int(i), int(j)
            if report.pairs is None:
                at = (i, j)
            else:
                hit = np.flatnonzero((report.pairs[:, 0] == i) & (report.pairs[:, 1] == j))
                at = int(hit[0])
            ok = bool(report.in_attained_hull[at])
            cos, low, high = (float(report.cos[at]), float(report.hull_low[at]),
                              float(report.hull_high[at]))
            message = (f"pair ({i}, {j}): c_ij = {cos:.3f} {'in' if ok else 'outside'} the "
                       f"hull [{low:.3f}, {high:.3f}] of s_nj over supp z_{i}; mean "
                       f"{float(report.weighted_mean[at]):.3f}")
            out.append(HullSample(
                passed=ok, message=message, i=i, j=j, cos=cos, hull_low=low, hull_high=high,
                weighted_mean=float(report.weighted_mean[at]),
                identity_violation=float(report.identity_violation[at]),
                n_support=int(count[i]),
                t=np.concatenate(self.t[a]) if self.t[a] else np.zeros(0),
                coactive=(np.concatenate(self.coactive[a]) if self.coactive[a]
                          else np.zeros(0, dtype=bool))))
        return tuple(out)


def pair_conditions(X, D, Z, lam, *, pairs="auto", nonneg: bool = True, tol: float = PAIR_TOL,
                    bias=None, normalize: bool = False, unit_atol: float = UNIT_NORM_ATOL,
                    n_worst: int = 10, max_pairs: int = MAX_PAIRS) -> PairReport:
    """Pair identity and convex-hull conditions for all ordered pairs, or for ``pairs``.

    Parameters as :func:`toysae.theory.code_kkt`, plus

    pairs : "all" (every ordered pair; memory O(n_atoms^2)), "candidates" (the
        identity on every pair from the residual moments, records for the pairs
        whose identity fails and the nested pairs; memory O(n_atoms * d +
        max_pairs)), "auto" (default: "all" up to ``ALL_PAIRS_MAX_ATOMS`` = 1,024
        atoms, else "candidates"), or an (n_pairs, 2) integer array of ordered
        pairs (i, j), i != j, to check only those.
    max_pairs : with "candidates", at most this many violating pairs (the largest)
        get a record; the identity's counts always cover every pair.

    Cost: a pass over the samples for the residual moments, a blocked
    (n_atoms, d) x (d, n_atoms) product for the identity, and a pass with the
    responses for the hull sums, whose gathers touch only the supports of the
    recorded pairs (docs/theory.md, "Large dictionaries").
    """
    pairs = check_pair_mode(pairs)
    if pairs is None:
        raise ValueError("pairs must be 'auto', 'all', 'candidates' or an (n_pairs, 2) "
                         "array, got None")
    max_pairs = check_int(max_pairs, "max_pairs", minimum=1)
    n_worst = check_int(n_worst, "n_worst", minimum=0)
    p = make_problem(X, D, Z, lam, nonneg=nonneg, bias=bias, normalize=normalize,
                     unit_atol=unit_atol)
    tol = check_float(tol, "tol", minimum=0.0)
    n_worst = check_int(n_worst, "n_worst", minimum=0)
    sums, nesting = SampleSums(p.n_atoms, p.X.shape[1]), NestingTracker(p.n_atoms)
    for c in p.chunks(responses=False):
        sums.add(c.Z, c.R)
        nesting.add(c.Z)
    plan = plan_pairs(p, sums, nesting, pairs, tol, n_worst, max_pairs)
    for c in p.chunks(plan.sums.rows(p)):
        plan.sums.add(c)
    return pair_report(p, sums, plan, tol, n_worst)

