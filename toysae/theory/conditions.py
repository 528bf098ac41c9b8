"""Code KKT conditions, atom stationarity and the decoder-bias condition.

Notation (docs/theory.md): ``r_n = x_n - z_n D (- b)``, ``g_nk = d_k . r_n``,
``s_nk = g_nk / lam``. Every violation is scaled so that 0 means "holds".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from toysae._result import Result
from toysae._tuning import CHECK_CHUNK_ENTRIES, KEEP_MATRIX_ENTRIES
from toysae._validation import check_float, check_int
from toysae.theory.problem import (
    UNIT_NORM_ATOL,
    Chunk,
    Problem,
    make_problem,
    scratch_rows,
)
from toysae.theory.support import SampleSums

#: Default tolerances, in the units of each violation (see the reports).
CODE_TOL = 1e-3
ATOM_TOL = 1e-2
BIAS_TOL = 1e-3

#: Continuation lines of a report's ``message`` are indented this far, so that they
#: line up under the text after ``check_optimality``'s ``[FAIL] `` marks.
INDENT = " " * 7


def holds(passed: bool) -> str:
    return "holds" if passed else "fails"


@dataclass(repr=False)
class CodeKKTReport(Result):
    """Per-sample, per-atom violation of the code optimality conditions, in units of ``lam``.

    Nonnegative codes: ``|s_nk - 1|`` where ``z_nk > 0`` and ``(s_nk - 1)_+``
    where ``z_nk = 0``. Signed: ``|s_nk - sign z_nk|`` and ``(|s_nk| - 1)_+``.
    Moving the codes by ``E`` (feasibly) lowers the loss at a rate of at most
    ``lam * sum_nk violation_nk * |E_nk|``. ``passed``: every entry is within
    ``tol``, i.e. the codes are the optimal codes for ``D`` (the lasso is convex).
    """

    passed: bool
    message: str
    max_violation: float
    mean_violation: float
    n_violations: int  # entries above tol
    n_entries: int
    tol: float
    nonneg: bool
    on_support_max: float  # a code that is on but not at the optimal scale
    off_support_max: float  # an atom that is off but would lower the loss by switching on
    worst: tuple  # ((sample, atom, violation), ...) largest first
    per_atom: np.ndarray  # (n_atoms,) max over samples
    per_sample: np.ndarray | None  # (n_samples,) max over atoms (None in a streamed check)
    violation: np.ndarray | None = field(default=None)  # (n_samples, n_atoms) or None

    _ARRAY_FIELDS = ("per_sample", "violation")


@dataclass(repr=False)
class AtomStationarityReport(Result):
    """Feature-residual condition: ``R_k = sum_n z_nk r_n`` must equal ``lam (sum_n |z_nk|) d_k``.

    ``violation_k = ||R_k - (R_k . d_k) d_k|| / (lam sum_n |z_nk|)``: the
    tangential (rotational) part of the atom's gradient relative to the
    normal force. Rotating ``d_k`` by a small angle ``t`` toward
    ``direction_k`` lowers the loss by ``t * gradient_norm_k`` to first order.
    ``nearest_atom_k`` is the other atom closest to that direction: the
    "labrador" a "dog" atom leaves in its residuals. Dead atoms (no code
    mass) satisfy the condition vacuously and have violation 0. ``passed``:
    every atom's violation is within ``tol``.
    """

    passed: bool
    message: str
    max_violation: float
    n_violations: int
    tol: float
    worst: tuple  # ((atom, violation, nearest_atom, cos), ...)
    violation: np.ndarray  # (n_atoms,)
    gradient_norm: np.ndarray  # (n_atoms,) ||tangential part of R_k||
    normal_violation: np.ndarray  # (n_atoms,) (R_k . d_k - lam mass_k) / (lam mass_k)
    mass: np.ndarray  # (n_atoms,) sum_n |z_nk|
    alive: np.ndarray  # (n_atoms,) bool
    direction: np.ndarray  # (n_atoms, d) unit tangential residual direction (0 if none)
    nearest_atom: np.ndarray  # (n_atoms,) int, -1 if none
    nearest_cos: np.ndarray  # (n_atoms,) cos(direction_k, d_nearest)

    _ARRAY_FIELDS = ("direction",)


@dataclass(repr=False)
class BiasReport(Result):
    """Decoder-bias stationarity ``sum_n r_n = 0``; ``violation = ||mean_n r_n|| / lam``.

    ``passed``: ``violation <= tol``.
    """

    passed: bool
    message: str
    violation: float
    tol: float
    mean_residual: np.ndarray  # (d,)


def _top(values: np.ndarray, count: int) -> np.ndarray:
    """Flat indices of the ``count`` largest entries of nonnegative ``values``, largest
    first. Mostly-zero arrays are common (violations that hold are 0) and numpy's
    argpartition is pathologically slow on them (2 s for 4e6 entries): the nonzero
    entries go first when there are enough of them."""
    flat = values.ravel()
    count = min(count, flat.size)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.flatnonzero(flat)
    if idx.size < count:
        idx = np.arange(flat.size)
    part = np.argpartition(flat[idx], idx.size - count)[idx.size - count:]
    idx = idx[part]
    return idx[np.argsort(-flat[idx], kind="stable")]


def _top_entries(V: np.ndarray, row_max: np.ndarray, count: int) -> np.ndarray:
    """Flat indices of the ``count`` largest entries of ``V`` (m, k) >= 0, largest first,
    looked for only in the ``count`` rows with the largest maxima."""
    rows = _top(row_max, count)
    if rows.size == 0:
        return rows
    k = V.shape[1]
    sub = _top(V[rows], count)
    return rows[sub // k] * k + sub % k


class CodeKKTSums:
    """Accumulates the code-KKT violations over sample chunks (see :class:`CodeKKTReport`).

    ``keep_matrix``: keep the (n_samples, n_atoms) violation matrix (None: only when it
    has at most ``KEEP_MATRIX_ENTRIES`` entries). ``keep_per_sample``: keep the
    (n_samples,) per-sample maxima (a streamed check of a file leaves them out, so its
    memory does not grow with the file).
    """

    def __init__(self, n_samples: int, n_atoms: int, nonneg: bool, tol: float,
                 keep_matrix: bool | None, n_worst: int, keep_per_sample: bool = True):
        n, k = n_samples, n_atoms
        keep = (n * k <= KEEP_MATRIX_ENTRIES) if keep_matrix is None else bool(keep_matrix)
        self.n_samples, self.n_atoms, self.nonneg = n, k, nonneg
        self.tol, self.n_worst = tol, n_worst
        self.matrix = np.zeros((n, k)) if keep else None
        self.per_sample = np.zeros(n) if keep_per_sample else None
        self.per_atom = np.zeros(k)
        self.max = 0.0
        self.total = 0.0
        self.n_viol = 0
        self.on_max = self.off_max = 0.0
        self.cand: list[tuple[np.ndarray, ...]] = []
        self._scratch: dict[str, np.ndarray] = {}  # per-chunk temporaries, kept

    def add(self, c: Chunk) -> None:
        S, k = c.S, self.n_atoms
        rows = np.repeat(np.arange(c.Z.shape[0]), np.diff(c.Z.indptr))
        cols = c.Z.indices
        V = scratch_rows(self._scratch, "violation", S.shape[0], k)
        if self.nonneg:
            np.subtract(S, 1.0, out=V)
            on = np.abs(V[rows, cols])
        else:
            np.abs(S, out=V)
            V -= 1.0
            on = np.abs(S[rows, cols] - np.sign(c.Z.data))
        np.maximum(V, 0.0, out=V)
        self.off_max = max(self.off_max, float(V.max()))
        V[rows, cols] = on
        if on.size:
            self.on_max = max(self.on_max, float(on.max()))
        per_sample = V.max(axis=1)
        self.max = max(self.max, float(per_sample.max()))
        if self.per_sample is not None:
            self.per_sample[c.start:c.stop] = per_sample
        np.maximum(self.per_atom, V.max(axis=0), out=self.per_atom)
        self.total += float(V.sum())
        above = scratch_rows(self._scratch, "above", S.shape[0], k, dtype=bool)
        self.n_viol += int(np.count_nonzero(np.greater(V, self.tol, out=above)))
        top = _top_entries(V, per_sample, self.n_worst)
        r, a = top // k, top % k
        on_support = np.asarray(c.Z[r, a]).ravel() != 0 if top.size else np.zeros(0, bool)
        self.cand.append((V.ravel()[top], r + c.start, a, on_support))
        if self.matrix is not None:
            self.matrix[c.start:c.stop] = V

    def result(self) -> CodeKKTReport:
        vals, rows, cols, on_support = (np.concatenate(parts) for parts in zip(*self.cand,
                                                                                strict=True))
        order = _top(vals, self.n_worst)
        worst = tuple((int(rows[i]), int(cols[i]), float(vals[i])) for i in order)
        max_v = self.max
        n_entries = self.n_samples * self.n_atoms
        passed = max_v <= self.tol
        message = (f"code KKT {holds(passed)}: max violation {max_v:.3g} "
                   f"{'<=' if passed else '>'} tol {self.tol:g} (units of lam); "
                   f"{self.n_viol} of {n_entries} entries above tol")
        if worst and not passed:
            n, k, _ = worst[0]
            where = "on its support" if on_support[order[0]] else "off its support"
            message += (f"\n{INDENT}worst: sample {n}, atom {k} ({where}); largest "
                        f"on-support {self.on_max:.3g}, off-support {self.off_max:.3g}")
        return CodeKKTReport(
            passed=passed, message=message, max_violation=max_v,
            mean_violation=self.total / n_entries,
            n_violations=self.n_viol, n_entries=n_entries, tol=self.tol, nonneg=self.nonneg,
            on_support_max=self.on_max, off_support_max=self.off_max, worst=worst,
            per_atom=self.per_atom, per_sample=self.per_sample, violation=self.matrix)


def code_kkt_sums(p: Problem, tol: float, keep_matrix: bool | None, n_worst: int,
                  keep_per_sample: bool = True) -> CodeKKTSums:
    """Empty :class:`CodeKKTSums` for the samples and atoms of ``p``."""
    return CodeKKTSums(p.n_samples, p.n_atoms, p.nonneg, tol, keep_matrix, n_worst,
                       keep_per_sample)


def _code_kkt(p: Problem, tol: float, keep_matrix: bool | None, n_worst: int) -> CodeKKTReport:
    sums = code_kkt_sums(p, tol, keep_matrix, n_worst)
    for c in p.chunks():
        sums.add(c)
    return sums.result()


def code_kkt(X, D, Z, lam, *, nonneg: bool = True, tol: float = CODE_TOL, bias=None,
             normalize: bool = False, unit_atol: float = UNIT_NORM_ATOL,
             keep_matrix: bool | None = None, n_worst: int = 10) -> CodeKKTReport:
    """Check the KKT conditions of the codes ``Z`` for the dictionary ``D``.

    Parameters
    ----------
    X : (n_samples, d) data. D : (n_atoms, d) unit-row dictionary.
    Z : (n_samples, n_atoms) codes (array, tensor or scipy sparse matrix).
    lam : penalty, > 0. nonneg : codes constrained to be >= 0 (default).
    tol : violation (in units of ``lam``) still counted as "holds".
    bias : optional (d,) decoder bias inside the residual.
    keep_matrix : keep the (n_samples, n_atoms) violation matrix; default only
        when it has at most 5e6 entries.
    """
    p = make_problem(X, D, Z, lam, nonneg=nonneg, bias=bias, normalize=normalize,
                     unit_atol=unit_atol)
    return _code_kkt(p, _tol(tol, "tol"), keep_matrix, check_int(n_worst, "n_worst", minimum=0))


def _tol(value, name: str) -> float:
    return check_float(value, name, minimum=0.0)


def sample_sums(p: Problem) -> SampleSums:
    """:class:`SampleSums` of ``p``: one pass over the residuals, no responses."""
    sums = SampleSums(p.n_atoms, p.X.shape[1])
    for c in p.chunks(responses=False):
        sums.add(c.Z, c.R)
    return sums


def atom_stationarity_from_sums(p: Problem, sums: SampleSums, tol: float,
                                n_worst: int) -> AtomStationarityReport:
    """:func:`atom_stationarity` of ``p`` from its pass over the samples (``sums``, whose
    ``R`` (n_atoms, d) and ``mass`` (n_atoms,) it reads), so that
    :func:`~toysae.theory.check_optimality` shares one pass among its checks."""
    D, R, mass = p.D, sums.R, sums.mass
    alive = mass > 0
    normal = np.einsum("kd,kd->k", R, D)
    T = R - normal[:, None] * D
    gnorm = np.linalg.norm(T, axis=1)
    force = p.lam * np.where(alive, mass, 1.0)
    violation = np.where(alive, gnorm / force, 0.0)
    normal_violation = np.where(alive, (normal - p.lam * mass) / force, 0.0)
    direction = np.divide(T, gnorm[:, None], out=np.zeros_like(T), where=gnorm[:, None] > 0)
    nearest = np.full(p.n_atoms, -1)
    nearest_cos = np.zeros(p.n_atoms)
    has_dir = np.flatnonzero(gnorm > 0)
    block = max(1, CHECK_CHUNK_ENTRIES // p.n_atoms)  # (block, n_atoms) cosines at a time
    for start in range(0, has_dir.size if p.n_atoms > 1 else 0, block):
        atoms = has_dir[start:start + block]
        cos = direction[atoms] @ D.T
        cos[np.arange(atoms.size), atoms] = -np.inf
        nearest[atoms] = cos.argmax(axis=1)
        nearest_cos[atoms] = cos.max(axis=1)
    order = _top(violation, n_worst)
    worst = tuple((int(a), float(violation[a]), int(nearest[a]), float(nearest_cos[a]))
                  for a in order if violation[a] > 0)
    max_v = float(violation.max())
    passed = max_v <= tol
    n_viol = int((violation > tol).sum())
    message = (f"atom stationarity {holds(passed)}: max relative tangential force "
               f"{max_v:.3g} {'<=' if passed else '>'} tol {tol:g}; {n_viol} of "
               f"{p.n_atoms} atom(s) above tol ({int(alive.sum())} alive)")
    if worst and not passed:
        a, _, near, cos = worst[0]
        toward = f": its residual points toward atom {near} (cos {cos:.3f})" if near >= 0 else ""
        message += f"\n{INDENT}worst atom {a}{toward}"
    return AtomStationarityReport(
        passed=passed, message=message, max_violation=max_v, n_violations=n_viol,
        tol=tol, worst=worst, violation=violation, gradient_norm=gnorm,
        normal_violation=normal_violation, mass=mass, alive=alive, direction=direction,
        nearest_atom=nearest, nearest_cos=nearest_cos)


def atom_stationarity(X, D, Z, lam, *, nonneg: bool = True, tol: float = ATOM_TOL, bias=None,
                      normalize: bool = False, unit_atol: float = UNIT_NORM_ATOL,
                      n_worst: int = 10) -> AtomStationarityReport:
    """Check the feature-residual condition of every atom (see :class:`AtomStationarityReport`).

    Parameters as :func:`code_kkt`; ``tol`` bounds the relative tangential force.
    """
    p = make_problem(X, D, Z, lam, nonneg=nonneg, bias=bias, normalize=normalize,
                     unit_atol=unit_atol)
    tol, n_worst = _tol(tol, "tol"), check_int(n_worst, "n_worst", minimum=0)
    return atom_stationarity_from_sums(p, sample_sums(p), tol, n_worst)


def bias_condition_from_sum(p: Problem, residual_sum: np.ndarray, tol: float) -> BiasReport:
    """:func:`bias_condition` of ``p`` from the (d,) sum of its residuals over the samples."""
    mean = residual_sum / p.n_samples
    violation = float(np.linalg.norm(mean) / p.lam)
    passed = violation <= tol
    message = (f"decoder bias condition {holds(passed)}: ||mean residual|| / lam = "
               f"{violation:.3g} {'<=' if passed else '>'} tol {tol:g}")
    return BiasReport(passed=passed, message=message, violation=violation, tol=tol,
                      mean_residual=mean)


def bias_condition(X, D, Z, lam, bias, *, nonneg: bool = True, tol: float = BIAS_TOL,
                   normalize: bool = False, unit_atol: float = UNIT_NORM_ATOL) -> BiasReport:
    """Check the decoder-bias condition ``sum_n r_n = 0`` (scaled: ``||mean r|| / lam``)."""
    if bias is None:
        raise ValueError("bias must be the (d,) decoder bias, got None")
    p = make_problem(X, D, Z, lam, nonneg=nonneg, bias=bias, normalize=normalize,
                     unit_atol=unit_atol)
    return bias_condition_from_sum(p, sample_sums(p).residual_sum, _tol(tol, "tol"))
