"""``check_optimality``: every first-order condition and the hierarchy certificate at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toysae._config import JsonMixin
from toysae._result import Result
from toysae._validation import check_float, check_int
from toysae.objective import objective_from_parts
from toysae.theory._problem import UNIT_NORM_ATOL, make_problem
from toysae.theory.conditions import (
    ATOM_TOL,
    BIAS_TOL,
    CODE_TOL,
    AtomStationarityReport,
    BiasReport,
    CodeKKTReport,
    CodeKKTSums,
    _atom_stationarity,
    _bias_report,
)
from toysae.theory.hierarchy import HierarchyReport, _hierarchy
from toysae.theory.pairs import PAIR_TOL, PairReport, pair_chunk_rows, pair_sums
from toysae.theory.pairs import pair_report as _pair_report


@dataclass(frozen=True)
class Tolerances(JsonMixin):
    """Explicit tolerances of :func:`check_optimality`, each in its violation's units.

    code: ``|s - 1|`` etc. (units of lam); atom: tangential force / normal
    force; pair: ``|weighted mean of s - c|`` (units of lam); bias:
    ``||mean residual|| / lam``; unit_norm: allowed ``| ||d_k|| - 1 |``.
    """

    code: float = CODE_TOL
    atom: float = ATOM_TOL
    pair: float = PAIR_TOL
    bias: float = BIAS_TOL
    unit_norm: float = UNIT_NORM_ATOL

    def __post_init__(self):
        for name in ("code", "atom", "pair", "bias", "unit_norm"):
            check_float(getattr(self, name), f"tolerances.{name}", minimum=0.0)


@dataclass(repr=False)
class OptimalityReport(Result):
    """Everything :func:`check_optimality` found.

    ``passed``: no condition is violated (code KKT, atom stationarity, the pair
    identity when checked, no certified hierarchy step, the decoder bias when
    trainable). ``message`` has one ``[ok  ]``/``[FAIL]`` line per check, with
    the numbers and the worst offender of each failed one.
    """

    passed: bool
    message: str
    n_samples: int
    n_atoms: int
    lam: float
    nonneg: bool
    objective: float
    tolerances: Tolerances
    code: CodeKKTReport
    atoms: AtomStationarityReport
    pairs: PairReport | None
    hierarchy: HierarchyReport
    bias: BiasReport | None


def _summary(parts: list[Result]) -> str:
    n_failed = sum(not part.passed for part in parts)
    head = (f"all {len(parts)} checks pass" if n_failed == 0
            else f"{n_failed} of {len(parts)} checks fail")
    lines = [f"[{'ok  ' if part.passed else 'FAIL'}] {part.message}" for part in parts]
    return "\n".join([head, *lines])


def check_optimality(X, D, Z, lam, *, nonneg: bool = True, decoder_bias: bool = False,
                     bias=None, tolerances: Tolerances | None = None, pairs="all",
                     normalize: bool = False, max_steps: int = 200,
                     n_worst: int = 10) -> OptimalityReport:
    """Check all first-order optimality conditions of ``(D, Z)`` for data ``X`` at ``lam``.

    Parameters
    ----------
    X : (n_samples, d). D : (n_atoms, d) unit rows. Z : (n_samples, n_atoms).
    lam : > 0. nonneg : nonnegative codes (default) or signed.
    decoder_bias : the model has a trainable decoder bias ``bias`` (then the
        condition ``sum_n r_n = 0`` is checked too). A ``bias`` given with
        ``decoder_bias=False`` is a fixed offset inside the residual.
    tolerances : :class:`Tolerances` (defaults shown there).
    pairs : "all" (every ordered pair), None (skip), or an (n_pairs, 2) array.
    normalize : rescale non-unit rows of D (and code columns) instead of refusing them.
    max_steps : at most this many hierarchy steps are built and verified.
    """
    tolerances = Tolerances() if tolerances is None else tolerances
    if not isinstance(tolerances, Tolerances):
        raise TypeError(f"tolerances must be a Tolerances, got {type(tolerances).__name__}")
    if not isinstance(decoder_bias, (bool, np.bool_)):
        raise TypeError(f"decoder_bias must be a bool, got {decoder_bias!r}")
    if decoder_bias and bias is None:
        raise ValueError("decoder_bias=True needs the bias: pass bias=<(d,) array>")
    if isinstance(pairs, str) and pairs != "all":
        raise ValueError(f"pairs must be 'all', None or an (n_pairs, 2) array, got {pairs!r}")
    max_steps = check_int(max_steps, "max_steps", minimum=0)
    n_worst = check_int(n_worst, "n_worst", minimum=0)
    p = make_problem(X, D, Z, lam, nonneg=nonneg, bias=bias, normalize=normalize,
                     unit_atol=tolerances.unit_norm)
    # one pass over the samples feeds every accumulator: the response product
    # r D^T, the dominant cost, is computed once
    code_sums = CodeKKTSums(p, tolerances.code, None, n_worst)
    psums, pair_list = (None, None)
    rows = p.chunk_rows()
    if pairs is not None:
        psums, pair_list = pair_sums(p, None if isinstance(pairs, str) else pairs)
        rows = pair_chunk_rows(p, len(psums.J))
    R = np.zeros((p.n_atoms, p.X.shape[1]))
    residual_sum = np.zeros(p.X.shape[1])
    sq_residual = 0.0
    for c in p.chunks(rows):
        code_sums.add(c)
        R += c.Z.T @ c.R
        residual_sum += c.R.sum(axis=0)
        sq_residual += float(np.einsum("ij,ij->", c.R, c.R))
        if psums is not None:
            psums.add(c.Z, c.S)
    code = code_sums.result()
    atoms = _atom_stationarity(p, R, tolerances.atom, n_worst)
    pair_report = (None if psums is None
                   else _pair_report(p, psums, pair_list, tolerances.pair, n_worst))
    hierarchy = _hierarchy(p, max_steps)
    bias_report = _bias_report(p, residual_sum, tolerances.bias) if decoder_bias else None
    parts = [code, atoms, *([pair_report] if pair_report is not None else []), hierarchy,
             *([bias_report] if bias_report is not None else [])]
    objective = float(objective_from_parts(sq_residual, float(abs(p.Z).sum()), p.lam))
    return OptimalityReport(
        passed=all(part.passed for part in parts), message=_summary(parts),
        n_samples=p.n_samples, n_atoms=p.n_atoms, lam=p.lam, nonneg=p.nonneg,
        objective=objective, tolerances=tolerances, code=code, atoms=atoms,
        pairs=pair_report, hierarchy=hierarchy, bias=bias_report)
