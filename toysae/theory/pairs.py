"""Pair conditions: atom stationarity of ``i`` projected on ``d_j``, and its convex-hull form.

For an ordered pair ``(i, j)`` with ``t_nij = sign(z_ni) s_nj`` (``= s_nj`` for
nonnegative codes) a stationary point satisfies the pair identity

    sum_n |z_ni| t_nij = c_ij * sum_n |z_ni|,

i.e. the ``|z_i|``-weighted mean of ``t_.ij`` over the support of ``i`` is
``c_ij``. A weighted mean lies between the smallest and largest value, so
``c_ij`` must lie in ``[min_{supp i} t_nij, max_{supp i} t_nij]``, which is
inside ``[min_{supp i} s_nj, 1]`` (docs/theory.md, section 3) because ``s_nj <= 1`` under the
code KKT conditions and ``s_nj = 1`` where ``j`` is co-active.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from toysae._result import Result
from toysae._tuning import CHECK_CHUNK_ENTRIES
from toysae._validation import check_float, check_indices, check_int
from toysae.theory._problem import UNIT_NORM_ATOL, Problem, make_problem
from toysae.theory.conditions import INDENT, holds

PAIR_TOL = 1e-2


@dataclass(repr=False)
class PairReport(Result):
    """Pair identity, hull intervals and the co-active / alone-firing split, per ordered pair.

    All-pairs mode (``pairs is None``): every array is (n_atoms, n_atoms),
    entry ``[i, j]`` for the pair (i, j); diagonal entries are vacuous (0 /
    False). Subset mode: every array is (n_pairs,) in the order of ``pairs``.

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
    max_violation: float
    n_violations: int  # pairs with identity_violation > tol
    n_hull_failures: int  # pairs with cos outside [hull_low - tol, 1]
    n_nested: int  # pairs with supp i inside supp j (see hierarchy_certificate)
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

    _ARRAY_FIELDS = ("cos", "lhs", "rhs", "weighted_mean", "identity_violation", "hull_low",
                     "hull_high", "in_hull", "in_attained_hull", "hull_violation",
                     "attained_hull_violation", "coactive_mass", "alone_mass", "alone_lhs",
                     "coactive_lhs", "split_rhs", "nested")


def _check_pairs(pairs, n_atoms: int) -> np.ndarray:
    """Ordered (i, j) atom pairs as an (n_pairs, 2) int64 array (the atoms' indices)."""
    arr = check_indices(pairs, "pairs", n_atoms, pairs=True)
    if (arr[:, 0] == arr[:, 1]).any():
        raise ValueError("pairs must have i != j; got a pair (i, i)")
    return arr


class _PairSums:
    """Accumulates the (|I|, |J|) sums of the pair conditions over sample chunks."""

    def __init__(self, p: Problem, I: np.ndarray, J: np.ndarray, sel):
        self.p, self.I, self.J, self.sel = p, I, J, sel
        self.all_atoms = len(I) == p.n_atoms and len(J) == p.n_atoms
        shape = (len(I), len(J))
        self.lhs = np.zeros(shape)
        self.co_count = np.zeros(shape)
        self.co_mass = np.zeros(shape)
        self.co_zs = np.zeros(shape)
        self.low = np.full(shape, np.inf)
        self.high = np.full(shape, -np.inf)

    def add(self, Zc: sp.csr_matrix, S: np.ndarray) -> None:
        ZI = Zc if self.all_atoms else Zc[:, self.I]
        SJ = S if self.all_atoms else S[:, self.J]
        rows = np.repeat(np.arange(Zc.shape[0]), np.diff(Zc.indptr))
        SA = sp.csr_matrix((S[rows, Zc.indices], Zc.indices, Zc.indptr), shape=Zc.shape)
        A = sp.csr_matrix((np.ones_like(Zc.data), Zc.indices, Zc.indptr), shape=Zc.shape)
        if not self.all_atoms:
            SA, A = SA[:, self.J], A[:, self.J]
        AI = sp.csr_matrix((np.ones_like(ZI.data), ZI.indices, ZI.indptr), shape=ZI.shape)
        self.lhs += np.asarray(ZI.T @ SJ)
        self.co_count += (AI.T @ A).toarray()
        self.co_mass += (abs(ZI).T @ A).toarray()
        self.co_zs += (ZI.T @ SA).toarray()
        self._hull(ZI.tocsc(), SJ)

    def _hull(self, ZI: sp.csc_matrix, SJ: np.ndarray) -> None:
        # min/max of t_nij over the support of i: gather the response rows of
        # every (n, i) in the support, grouped by atom i, and reduce per group.
        counts = np.diff(ZI.indptr)
        atoms = np.flatnonzero(counts)
        if atoms.size == 0:
            return
        T = SJ[ZI.indices] * np.sign(ZI.data)[:, None]
        starts = ZI.indptr[atoms]
        self.low[atoms] = np.minimum(self.low[atoms], np.minimum.reduceat(T, starts, axis=0))
        self.high[atoms] = np.maximum(self.high[atoms], np.maximum.reduceat(T, starts, axis=0))


def pair_chunk_rows(p: Problem, width: int) -> int:
    """Samples per chunk so the gathered (nnz in chunk, width) hull block stays small."""
    per_row = 1 + p.Z.nnz / p.n_samples
    return int(max(16, min(p.n_samples, CHECK_CHUNK_ENTRIES // max(1, int(width * per_row)))))


def pair_sums(p: Problem, pairs) -> tuple[_PairSums, np.ndarray | None]:
    """Empty accumulators for all pairs (``pairs=None``) or the given ordered pairs."""
    k = p.n_atoms
    if pairs is None:
        return _PairSums(p, np.arange(k), np.arange(k), None), None
    pairs = _check_pairs(pairs, k)
    I, inv_i = np.unique(pairs[:, 0], return_inverse=True)
    J, inv_j = np.unique(pairs[:, 1], return_inverse=True)
    return _PairSums(p, I, J, (inv_i, inv_j)), pairs


def _pair_conditions(p: Problem, pairs, tol: float, n_worst: int) -> PairReport:
    sums, pairs = pair_sums(p, pairs)
    for c in p.chunks(pair_chunk_rows(p, len(sums.J))):
        sums.add(c.Z, c.S)
    return pair_report(p, sums, pairs, tol, n_worst)


def pair_report(p: Problem, sums: _PairSums, pairs, tol: float, n_worst: int) -> PairReport:
    k = p.n_atoms
    I, J, sel = sums.I, sums.J, sums.sel
    mass = np.asarray(abs(p.Z).sum(axis=0)).ravel()
    count = np.diff(p.Z.tocsc().indptr).astype(float)
    alive = mass > 0

    def pick(block: np.ndarray) -> np.ndarray:
        return block if sel is None else block[sel]

    cos = pick(p.D[I] @ p.D[J].T)
    lhs, co_count = pick(sums.lhs), pick(sums.co_count)
    co_mass, co_zs = pick(sums.co_mass), pick(sums.co_zs)
    low, high = pick(sums.low), pick(sums.high)
    ii = I[sel[0]] if sel is not None else np.arange(k)[:, None]
    mass_i = np.broadcast_to(mass[ii], cos.shape)
    live = np.broadcast_to(alive[ii], cos.shape).copy()
    if sel is None:
        np.fill_diagonal(live, False)
    safe = np.where(live, mass_i, 1.0)
    mean = np.where(live, lhs / safe, cos)
    low = np.where(live, low, cos)
    high = np.where(live, high, cos)
    lhs = np.where(live, lhs, 0.0)
    rhs = np.where(live, cos * mass_i, 0.0)
    nested = live & (co_count == np.broadcast_to(count[ii], cos.shape))
    co_mass = np.where(live, co_mass, 0.0)
    alone_mass = np.where(live & ~nested, mass_i - co_mass, 0.0)
    co_zs = np.where(live, co_zs, 0.0)
    coactive_lhs = co_mass - co_zs
    alone_lhs = np.where(live, mass_i - lhs, 0.0) - coactive_lhs
    split_rhs = np.where(live, (1.0 - cos) * mass_i, 0.0)
    violation = np.abs(mean - cos)
    hull_violation = np.maximum(low - cos, 0.0)
    attained = np.maximum(hull_violation, np.maximum(cos - high, 0.0))
    order = np.argsort(-violation, axis=None, kind="stable")[:n_worst]
    worst = []
    for flat in order:
        if violation.flat[flat] <= 0:
            break
        if sel is None:
            i, j = divmod(int(flat), k)
        else:
            i, j = (int(v) for v in pairs[flat])
        worst.append((i, j, float(violation.flat[flat]), float(cos.flat[flat]),
                      float(low.flat[flat]), float(mean.flat[flat])))
    max_v = float(violation.max()) if violation.size else 0.0
    passed = max_v <= tol
    n_viol, n_hull = int((violation > tol).sum()), int((hull_violation > tol).sum())
    n_pairs = k * (k - 1) if sel is None else len(pairs)
    message = (f"pair identity {holds(passed)}: max violation {max_v:.3g} "
               f"{'<=' if passed else '>'} tol {tol:g} (units of lam); {n_viol} of {n_pairs} "
               f"pair(s) above tol, {n_hull} with c_ij outside [min s_nj, 1]")
    if worst and not passed:
        i, j, _, c, lo, m = worst[0]
        message += (f"\n{INDENT}worst pair ({i}, {j}): mean s_nj over supp z_{i} is {m:.3f}, "
                    f"c_ij = {c:.3f}, hull [{lo:.3f}, 1]")
    return PairReport(
        passed=passed, message=message, max_violation=max_v, n_violations=n_viol,
        n_hull_failures=n_hull, n_nested=int(nested.sum()), tol=tol,
        worst=tuple(worst), pairs=pairs, cos=cos, lhs=lhs, rhs=rhs, weighted_mean=mean,
        identity_violation=violation, hull_low=low, hull_high=high,
        in_hull=hull_violation <= tol, in_attained_hull=attained <= tol,
        hull_violation=hull_violation, attained_hull_violation=attained,
        coactive_mass=co_mass, alone_mass=alone_mass, alone_lhs=alone_lhs,
        coactive_lhs=coactive_lhs, split_rhs=split_rhs, nested=nested, mass=mass,
        alive=alive)


def pair_conditions(X, D, Z, lam, *, pairs=None, nonneg: bool = True, tol: float = PAIR_TOL,
                    bias=None, normalize: bool = False, unit_atol: float = UNIT_NORM_ATOL,
                    n_worst: int = 10) -> PairReport:
    """Pair identity and convex-hull conditions for all ordered pairs, or for ``pairs``.

    Parameters as :func:`toysae.theory.code_kkt`, plus ``pairs``: an
    (n_pairs, 2) integer array of ordered pairs (i, j), i != j, to check only
    those (for large dictionaries). Cost: one pass over the samples, sparse
    products with the support of ``Z``; memory O(n_atoms^2) for all pairs.
    """
    p = make_problem(X, D, Z, lam, nonneg=nonneg, bias=bias, normalize=normalize,
                     unit_atol=unit_atol)
    tol = check_float(tol, "tol", minimum=0.0)
    return _pair_conditions(p, pairs, tol, check_int(n_worst, "n_worst", minimum=0))
