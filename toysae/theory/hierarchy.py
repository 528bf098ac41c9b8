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
from toysae.theory._problem import UNIT_NORM_ATOL, Chunk, Problem, make_problem
from toysae.theory._support import NestingTracker, SampleSums, csc_sorted
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
    rows: np.ndarray | None  # supp z_i (sample indices); None in a streamed check
    new_atom: np.ndarray  # (d,) d_i'
    new_child_codes: np.ndarray | None  # z_i' on rows
    new_parent_codes: np.ndarray | None  # z_j' on rows

    _ARRAY_FIELDS = ("rows", "new_atom", "new_child_codes", "new_parent_codes")

    def apply(self, D, Z) -> tuple[np.ndarray, np.ndarray]:
        """The new ``(D', Z')`` (float64 copies) after the step; ``Z`` dense."""
        if self.rows is None:
            raise ValueError("this step was built by a streamed check that keeps no rows "
                             "(check_sae_files); rebuild it with hierarchy_certificate on "
                             "the samples in memory to apply it")
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


@dataclass
class HierarchyPlan:
    """The nested pairs sorted into duplicates, mixed signs and steps to build."""

    n_nested: int
    duplicates: tuple
    mixed_sign: tuple
    n_candidates: int
    child: np.ndarray  # (n_steps,) the steps to build, largest predicted drop first
    parent: np.ndarray
    sign: np.ndarray
    cos: np.ndarray
    eps: np.ndarray
    atom: np.ndarray  # (n_steps, d) u = d_i + s eps d_j
    norm: np.ndarray  # rho = ||u||
    predicted: np.ndarray
    n_samples: np.ndarray  # |supp z_i|


def hierarchy_plan(p: Problem, sums: SampleSums, tracker: NestingTracker,
                   max_steps: int) -> HierarchyPlan:
    """Every nested pair's step from the pass's sums alone: sign, ``eps*``, predicted drop."""
    pairs, sign, eps = tracker.pairs(), tracker.sign.astype(float), tracker.ratio
    i, j = pairs[:, 0], pairs[:, 1]
    c = np.einsum("pd,pd->p", p.D[i], p.D[j])
    u = p.D[i] + (sign * eps)[:, None] * p.D[j]
    rho = np.linalg.norm(u, axis=1)
    # 1 + eps - rho = ((1 + eps)^2 - rho^2) / (1 + eps + rho), without cancellation
    gain = 2.0 * eps * (1.0 - sign * c) / (1.0 + eps + rho)
    predicted = p.lam * sums.mass[i] * gain
    mixed = sign == 0
    duplicate = ~mixed & (predicted <= 0)
    candidate = np.flatnonzero(~mixed & (predicted > 0))
    build = candidate[np.argsort(-predicted[candidate], kind="stable")[:max_steps]]

    def listed(mask):
        return tuple((int(a), int(b)) for a, b in pairs[mask])

    return HierarchyPlan(
        n_nested=len(pairs), duplicates=listed(duplicate), mixed_sign=listed(mixed),
        n_candidates=int(candidate.size), child=i[build], parent=j[build],
        sign=sign[build].astype(int), cos=c[build], eps=eps[build], atom=u[build],
        norm=rho[build], predicted=predicted[build], n_samples=sums.count[i[build]])


class StepVerifier:
    """Applies each planned step to the samples of its child as they pass and recomputes the
    objective there with :func:`toysae.objective.dictionary_objective`, before and after.

    ``keep_rows``: keep each step's rows and new codes (what :meth:`HierarchyStep.apply`
    needs); a streamed check of a file leaves them out.
    """

    def __init__(self, p: Problem, plan: HierarchyPlan, keep_rows: bool = True):
        self.p, self.plan, self.keep_rows = p, plan, keep_rows
        m = len(plan.child)
        self.new_atom = np.where(plan.norm[:, None] > 1e-12,
                                 plan.atom / np.maximum(plan.norm, 1e-300)[:, None],
                                 p.D[plan.child])
        self.drop = np.zeros(m)
        self.parts: list[list[tuple]] = [[] for _ in range(m)]

    def add(self, c: Chunk) -> None:
        if len(self.plan.child) == 0:
            return
        C = csc_sorted(c.Z)
        plan, lam, bias = self.plan, self.p.lam, self.p.bias
        for k, (i, j) in enumerate(zip(plan.child, plan.parent, strict=True)):
            rows = C.indices[C.indptr[i]:C.indptr[i + 1]]
            if rows.size == 0:
                continue
            Zr = c.Z[rows].toarray()
            zi, zj = Zr[:, i].copy(), Zr[:, j].copy()
            at_min = np.abs(zj) / np.abs(zi) == plan.eps[k]
            if plan.norm[k] > 1e-12:
                new_zi = zi * plan.norm[k]
            else:  # d_j = -s d_i and eps = 1: the child cancels out entirely
                new_zi = np.zeros_like(zi)
            new_zj = zj - plan.sign[k] * plan.eps[k] * zi
            new_zj[at_min] = 0.0  # exactly off where the ratio attains eps*
            # atoms silent on these samples contribute exactly nothing: leave them out
            used = np.flatnonzero(Zr.any(axis=0))
            ci, cj = int(np.searchsorted(used, i)), int(np.searchsorted(used, j))
            X, Zr, D = c.X[rows], Zr[:, used], self.p.D[used]
            before = dictionary_objective(X, D, Zr, lam, bias=bias)
            D2 = D.copy()
            D2[ci] = self.new_atom[k]
            Zr[:, ci], Zr[:, cj] = new_zi, new_zj
            self.drop[k] += before - dictionary_objective(X, D2, Zr, lam, bias=bias)
            kept = (rows + c.start, new_zi, new_zj) if self.keep_rows else ()
            self.parts[k].append((rows[at_min] + c.start, *kept))

    def result(self) -> HierarchyReport:
        plan = self.plan
        steps = []
        for k, (i, j) in enumerate(zip(plan.child, plan.parent, strict=True)):
            i, j = int(i), int(j)
            absorbed = np.concatenate([part[0] for part in self.parts[k]])
            rows = new_zi = new_zj = None
            if self.keep_rows:
                rows, new_zi, new_zj = (np.concatenate([part[m] for part in self.parts[k]])
                                        for m in (1, 2, 3))
            drop, eps, predicted = float(self.drop[k]), float(plan.eps[k]), float(
                plan.predicted[k])
            n_rows = int(plan.n_samples[k])
            message = (f"atom {i} fires only with atom {j}: rotating it toward atom {j} by "
                       f"eps* = {eps:.3g} {'lowers' if drop > 0 else 'does not lower'} the "
                       f"loss (verified drop {drop:.4g}, predicted {predicted:.4g}); atom {j} "
                       f"switches off on {len(absorbed)} of atom {i}'s {n_rows} sample(s)")
            steps.append(HierarchyStep(
                passed=bool(drop > 0), message=message, child=i, parent=j,
                sign=int(plan.sign[k]), cos=float(plan.cos[k]), eps=eps,
                norm=float(plan.norm[k]), predicted_drop=predicted, verified_drop=drop,
                n_child_samples=n_rows, absorbed_samples=absorbed, rows=rows,
                new_atom=self.new_atom[k], new_child_codes=new_zi, new_parent_codes=new_zj))
        certified = [s for s in steps if s.passed]
        max_drop = max((s.verified_drop for s in steps), default=0.0)
        passed = plan.n_candidates == 0
        if passed:
            message = "hierarchy holds: no nested pair offers a descent step"
            if plan.n_nested:
                message += (f" ({plan.n_nested} nested pair(s): {len(plan.duplicates)} of "
                            f"duplicate atoms, {len(plan.mixed_sign)} with mixed code signs)")
        else:
            message = (f"hierarchy fails: {plan.n_nested} nested pair(s), {plan.n_candidates} "
                       f"with a descent step, {len(certified)} of {len(steps)} built step(s) "
                       f"verified; max verified drop {max_drop:.4g}")
            if steps:
                message += f"\n{INDENT}{steps[0].message}"
        return HierarchyReport(
            passed=passed, message=message, n_nested=plan.n_nested,
            n_certified=len(certified), n_candidates=plan.n_candidates,
            duplicates=plan.duplicates, mixed_sign=plan.mixed_sign, max_drop=max_drop,
            steps=tuple(steps))


def _hierarchy(p: Problem, max_steps: int) -> HierarchyReport:
    sums, tracker = SampleSums(p.n_atoms, p.X.shape[1]), NestingTracker(p.n_atoms)
    for c in p.chunks(responses=False):
        sums.add(c.Z, c.R)
        tracker.add(c.Z)
    verifier = StepVerifier(p, hierarchy_plan(p, sums, tracker, max_steps))
    for c in p.chunks(responses=False):
        verifier.add(c)
    return verifier.result()


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
