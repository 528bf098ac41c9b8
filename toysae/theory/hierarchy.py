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
from toysae._tuning import CHECK_CHUNK_ENTRIES
from toysae._validation import check_int
from toysae.dictionary_objective import objective_from_parts
from toysae.theory.conditions import INDENT
from toysae.theory.problem import UNIT_NORM_ATOL, Chunk, Problem, make_problem
from toysae.theory.support import (
    NestingTracker,
    SampleSums,
    csc_sorted,
    pair_rows,
    row_dots,
)


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
    verified_drop: float  # objective before - after, evaluated at the new point
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
    c = row_dots(p.D, p.D, i, j)

    def drop(eps, rho, sign, c, i):
        # 1 + eps - rho = ((1 + eps)^2 - rho^2) / (1 + eps + rho), without cancellation
        return p.lam * sums.mass[i] * 2.0 * eps * (1.0 - sign * c) / (1.0 + eps + rho)

    # rank every nested pair by its drop with rho^2 = 1 + 2 s eps c + eps^2 (unit rows);
    # only the steps built get u = d_i + s eps d_j itself, and rho = ||u||
    rho = np.sqrt(np.maximum(1.0 + 2.0 * sign * eps * c + eps * eps, 0.0))
    predicted = drop(eps, rho, sign, c, i)
    mixed = sign == 0
    duplicate = ~mixed & (predicted <= 0)
    candidate = np.flatnonzero(~mixed & (predicted > 0))
    build = candidate[np.argsort(-predicted[candidate], kind="stable")[:max_steps]]
    u = p.D[i[build]] + (sign[build] * eps[build])[:, None] * p.D[j[build]]
    rho_built = np.linalg.norm(u, axis=1)

    def listed(mask):
        return tuple((int(a), int(b)) for a, b in pairs[mask])

    return HierarchyPlan(
        n_nested=len(pairs), duplicates=listed(duplicate), mixed_sign=listed(mixed),
        n_candidates=int(candidate.size), child=i[build], parent=j[build],
        sign=sign[build].astype(int), cos=c[build], eps=eps[build], atom=u, norm=rho_built,
        predicted=drop(eps[build], rho_built, sign[build], c[build], i[build]),
        n_samples=sums.count[i[build]])


class StepVerifier:
    """Applies each planned step to the samples of its child as they pass and evaluates the
    objective of those samples before and after it.

    On sample ``n`` of the child the step changes codes ``z_ni, z_nj`` and atom
    ``d_i``; the new residual is ``x_n - z_n' D' - b = r_n + (z_ni d_i + z_nj d_j) -
    (z_ni' d_i' + z_nj' d_j)``, evaluated as written (it equals ``r_n`` only up to
    rounding: the reconstruction is unchanged in exact arithmetic, which this
    confirms rather than assumes), and the L1 term from the new codes; both go
    through :func:`toysae.dictionary_objective.objective_from_parts`. Samples where the child is
    silent do not change. ``keep_rows``: keep each step's rows and new codes (what
    :meth:`HierarchyStep.apply` needs); a streamed check of a file leaves them out.
    """

    def __init__(self, p: Problem, plan: HierarchyPlan, keep_rows: bool = True):
        self.p, self.plan, self.keep_rows = p, plan, keep_rows
        m = len(plan.child)
        self.new_atom = np.where(plan.norm[:, None] > 1e-12,
                                 plan.atom / np.maximum(plan.norm, 1e-300)[:, None],
                                 p.D[plan.child])
        self.drop = np.zeros(m)
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, c: Chunk) -> None:
        plan, D = self.plan, self.p.D
        if len(plan.child) == 0:
            return
        g = pair_rows(plan.child, csc_sorted(c.Z))
        if g.n_entries == 0:
            return
        step = g.pair
        i, j = plan.child[step], plan.parent[step]
        zi, zj = g.z, c.codes_at(g.rows, j)
        at_min = np.abs(zj) / np.abs(zi) == plan.eps[step]
        new_zi = np.where(plan.norm[step] > 1e-12, zi * plan.norm[step], 0.0)
        new_zj = zj - plan.sign[step] * plan.eps[step] * zi
        new_zj[at_min] = 0.0  # exactly off where the ratio attains eps*
        row_l1 = np.asarray(abs(c.Z).sum(axis=1)).ravel()[g.rows]
        new_l1 = row_l1 - np.abs(zi) - np.abs(zj) + np.abs(new_zi) + np.abs(new_zj)
        slab = max(1, CHECK_CHUNK_ENTRIES // D.shape[1])  # entries x d stays bounded
        for a in range(0, g.n_entries, slab):
            e = slice(a, a + slab)
            R = c.R[g.rows[e]]
            before = objective_from_parts(np.einsum("ij,ij->i", R, R), row_l1[e], self.p.lam)
            R += ((zi[e, None] * D[i[e]] + (zj[e] - new_zj[e])[:, None] * D[j[e]])
                  - new_zi[e, None] * self.new_atom[step[e]])
            after = objective_from_parts(np.einsum("ij,ij->i", R, R), new_l1[e], self.p.lam)
            self.drop += np.bincount(step[e], weights=before - after, minlength=self.drop.size)
        rows = g.rows + c.start
        kept = (new_zi, new_zj) if self.keep_rows else ()
        self.parts.append((step, at_min, rows, *kept))

    def result(self) -> HierarchyReport:
        plan = self.plan
        steps = []
        if self.parts:  # every planned step's child fires somewhere, so parts exist
            step, at_min, *columns = (np.concatenate(col)
                                      for col in zip(*self.parts, strict=True))
            # entries arrive chunk by chunk, step by step within a chunk: a stable sort
            # by step leaves each step's samples in sample order
            order = np.argsort(step, kind="stable")
            bounds = np.searchsorted(step[order], np.arange(len(plan.child) + 1))
        for k, (i, j) in enumerate(zip(plan.child, plan.parent, strict=True)):
            i, j = int(i), int(j)
            mine = order[bounds[k]:bounds[k + 1]]
            absorbed = columns[0][mine[at_min[mine]]]
            rows = new_zi = new_zj = None
            if self.keep_rows:
                rows, new_zi, new_zj = (col[mine] for col in columns)
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

    The nested pairs come from one pass over the codes (the candidate parents of
    an atom are the atoms of its first sample; later samples only remove some),
    so no (n_atoms, n_atoms) co-occurrence matrix is formed. Every returned step
    is applied and the objective of the affected samples evaluated at the new
    point (the others are unchanged; see :class:`StepVerifier`), so
    ``verified_drop`` is the change of the full objective, up to rounding. Only
    the ``max_steps`` largest predicted drops are built and verified;
    ``n_candidates`` counts them all.
    """
    p = make_problem(X, D, Z, lam, nonneg=nonneg, bias=bias, normalize=normalize,
                     unit_atol=unit_atol)
    max_steps = check_int(max_steps, "max_steps", minimum=0)
    return _hierarchy(p, max_steps)
