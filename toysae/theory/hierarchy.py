"""Hierarchy certificates: an explicit, exactly verified descent step for nested supports.

If atom ``i`` (child) fires only where atom ``j`` (parent) fires, rotate the
child toward the parent and hand it part of the parent's code:

    d_i' = (d_i + s eps d_j) / rho,   rho = ||d_i + s eps d_j||,
    z_i' = rho z_i,                   z_j' = z_j - s eps z_i,

with ``s = sign(z_nj z_ni)`` (constant on supp i; ``s = 1`` for nonnegative
codes). The reconstruction ``z_ni' d_i' + z_nj' d_j = z_ni d_i + z_nj d_j`` is
unchanged exactly; ``|z_nj'| = |z_nj| - eps |z_ni|`` for ``eps <= eps* = min
|z_nj| / |z_ni|`` over supp i, so the loss changes by the L1 term only:

    drop = lam * sum_n |z_ni| * (1 + eps - rho) > 0   whenever s c_ij < 1,

(``1 + eps`` is the L1 mass removed from ``|z_i| + |z_j|``, ``rho`` the mass
added back by the rescaled child). The drop grows with ``eps``, so the step
uses ``eps*``, where the parent switches off on at least one sample where the
child is on: the start of absorption.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toysae._result import Result
from toysae._validation import check_int
from toysae.objective import dictionary_objective
from toysae.theory._problem import UNIT_NORM_ATOL, Problem, make_problem
from toysae.theory.conditions import INDENT


@dataclass(repr=False)
class HierarchyStep(Result):
    """One descent step for a nested pair (child ``i`` inside parent ``j``), built and verified.

    ``passed``: the step passed its verification, i.e. recomputing the objective
    after applying it confirms a strict drop (``verified_drop > 0``). A step
    that passes is a certificate that ``(D, Z)`` is not a local optimum.
    """

    passed: bool
    message: str
    child: int
    parent: int
    sign: int  # s in d_i + s eps d_j
    cos: float  # c_ij
    eps: float  # eps*
    norm: float  # rho = ||d_i + s eps d_j||
    predicted_drop: float  # lam sum |z_i| (1 + eps - rho)
    verified_drop: float  # objective before - after, recomputed with dictionary_objective
    n_child_samples: int
    absorbed_samples: np.ndarray  # samples where the parent switches off at eps*
    rows: np.ndarray  # supp z_i (sample indices)
    new_atom: np.ndarray  # (d,) d_i'
    new_child_codes: np.ndarray  # z_i' on rows
    new_parent_codes: np.ndarray  # z_j' on rows

    _ARRAY_FIELDS = ("rows", "new_atom", "new_child_codes", "new_parent_codes")

    def apply(self, D, Z) -> tuple[np.ndarray, np.ndarray]:
        """The new ``(D', Z')`` (float64 copies) after the step; ``Z`` dense."""
        D2 = np.array(D, dtype=np.float64, copy=True)
        Z2 = Z.toarray() if hasattr(Z, "toarray") else np.array(Z, dtype=np.float64, copy=True)
        D2[self.child] = self.new_atom
        Z2[self.rows, self.child] = self.new_child_codes
        Z2[self.rows, self.parent] = self.new_parent_codes
        return D2, Z2


@dataclass(repr=False)
class HierarchyReport(Result):
    """All nested pairs and their certified steps (largest drop first).

    ``passed`` is True when no pair has a nested support with ``s c_ij < 1``:
    then this check has no descent step to offer (it does not prove optimality).
    """

    passed: bool
    message: str
    n_nested: int  # ordered pairs (i, j), i != j, with supp i inside supp j
    n_certified: int  # nested pairs whose step strictly lowers the recomputed loss
    n_candidates: int  # nested pairs with a positive predicted drop
    duplicates: tuple  # nested pairs with s c_ij = 1 (identical atoms): no strict drop
    mixed_sign: tuple  # nested signed pairs whose sign(z_ni z_nj) varies: no step
    max_drop: float
    steps: tuple  # HierarchyStep, verified, largest drop first (at most max_steps)


def nested_pairs(p: Problem) -> np.ndarray:
    """(n_pairs, 2) ordered pairs (i, j), i != j, with supp z_i a non-empty subset of supp z_j."""
    A = p.Z.copy()
    A.data[:] = 1.0
    co = (A.T @ A).tocoo()
    count = np.asarray(A.sum(axis=0)).ravel()
    mask = (co.row != co.col) & (co.data == count[co.row])
    out = np.stack([co.row[mask], co.col[mask]], axis=1).astype(np.int64)
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def _candidate(p: Problem, i: int, j: int, rows: np.ndarray, zi: np.ndarray, zj: np.ndarray):
    sgn = np.sign(zi * zj)
    if not (sgn == sgn[0]).all():
        return None
    s = int(sgn[0])
    ratio = np.abs(zj) / np.abs(zi)
    eps = float(ratio.min())
    c = float(p.D[i] @ p.D[j])
    u = p.D[i] + s * eps * p.D[j]
    rho = float(np.linalg.norm(u))
    # 1 + eps - rho = ((1 + eps)^2 - rho^2) / (1 + eps + rho), without cancellation
    gain = 2.0 * eps * (1.0 - s * c) / (1.0 + eps + rho)
    predicted = p.lam * float(np.abs(zi).sum()) * gain
    return s, c, eps, u, rho, predicted, ratio == eps


def _verify(p: Problem, i: int, j: int, rows, zi, zj, s, c, eps, u, rho, predicted,
            at_min) -> HierarchyStep:
    if rho > 1e-12:
        new_atom, new_zi = u / rho, zi * rho
    else:  # d_j = -s d_i and eps = 1: the child cancels out entirely
        new_atom, new_zi = p.D[i].copy(), np.zeros_like(zi)
    new_zj = zj - s * eps * zi
    new_zj[at_min] = 0.0  # exactly off where the ratio attains eps*
    X = p.X[rows]
    Zr = p.dense_rows(rows)
    # atoms silent on these samples contribute exactly nothing: leave them out
    used = np.flatnonzero(Zr.any(axis=0))
    ci, cj = int(np.searchsorted(used, i)), int(np.searchsorted(used, j))
    Zr, D = Zr[:, used], p.D[used]
    before = dictionary_objective(X, D, Zr, p.lam, bias=p.bias)
    D2 = D.copy()
    D2[ci] = new_atom
    Zr[:, ci], Zr[:, cj] = new_zi, new_zj
    after = dictionary_objective(X, D2, Zr, p.lam, bias=p.bias)
    drop = before - after
    absorbed = rows[at_min]
    message = (f"atom {i} fires only with atom {j}: rotating it toward atom {j} by "
               f"eps* = {eps:.3g} {'lowers' if drop > 0 else 'does not lower'} the loss "
               f"(verified drop {drop:.4g}, predicted {predicted:.4g}); atom {j} switches "
               f"off on {len(absorbed)} of atom {i}'s {len(rows)} sample(s)")
    return HierarchyStep(
        passed=bool(drop > 0), message=message, child=i, parent=j, sign=s, cos=c, eps=eps,
        norm=rho, predicted_drop=predicted, verified_drop=drop, n_child_samples=len(rows),
        absorbed_samples=absorbed, rows=rows, new_atom=new_atom,
        new_child_codes=new_zi, new_parent_codes=new_zj)


def _hierarchy(p: Problem, max_steps: int) -> HierarchyReport:
    pairs = nested_pairs(p)
    Zc = p.Z.tocsc()
    candidates, duplicates, mixed = [], [], []
    for i in np.unique(pairs[:, 0]):
        js = pairs[pairs[:, 0] == i, 1]
        rows = Zc.indices[Zc.indptr[i]:Zc.indptr[i + 1]]
        zi = Zc.data[Zc.indptr[i]:Zc.indptr[i + 1]]
        Zj = p.Z[rows][:, js].toarray()
        for col, j in enumerate(js):
            cand = _candidate(p, int(i), int(j), rows, zi, Zj[:, col])
            if cand is None:
                mixed.append((int(i), int(j)))
            elif cand[5] <= 0:
                duplicates.append((int(i), int(j)))
            else:
                candidates.append((cand[5], int(i), int(j), rows, zi, Zj[:, col], cand))
    candidates.sort(key=lambda t: -t[0])
    steps = [_verify(p, i, j, rows, zi, zj, *cand)
             for _, i, j, rows, zi, zj, cand in candidates[:max_steps]]
    certified = [s for s in steps if s.passed]
    max_drop = max((s.verified_drop for s in steps), default=0.0)
    passed = not candidates
    if passed:
        message = "hierarchy holds: no nested pair offers a descent step"
        if len(pairs):
            message += (f" ({len(pairs)} nested pair(s): {len(duplicates)} of duplicate "
                        f"atoms, {len(mixed)} with mixed code signs)")
    else:
        message = (f"hierarchy fails: {len(pairs)} nested pair(s), {len(candidates)} with a "
                   f"descent step, {len(certified)} of {len(steps)} built step(s) verified; "
                   f"max verified drop {max_drop:.4g}")
        if steps:
            message += f"\n{INDENT}{steps[0].message}"
    return HierarchyReport(
        passed=passed, message=message, n_nested=len(pairs), n_certified=len(certified),
        n_candidates=len(candidates), duplicates=tuple(duplicates), mixed_sign=tuple(mixed),
        max_drop=max_drop, steps=tuple(steps))


def hierarchy_certificate(X, D, Z, lam, *, nonneg: bool = True, bias=None,
                          normalize: bool = False, unit_atol: float = UNIT_NORM_ATOL,
                          max_steps: int = 200) -> HierarchyReport:
    """Find pairs whose supports are nested and certify a descent step for each.

    Every returned step is applied and the objective recomputed with
    :func:`toysae.objective.dictionary_objective` on the affected samples
    (the others are unchanged), so ``verified_drop`` is the exact change of
    the full objective. Only the ``max_steps`` largest predicted drops are
    built and verified; ``n_candidates`` counts them all.
    """
    p = make_problem(X, D, Z, lam, nonneg=nonneg, bias=bias, normalize=normalize,
                     unit_atol=unit_atol)
    max_steps = check_int(max_steps, "max_steps", minimum=0)
    return _hierarchy(p, max_steps)
