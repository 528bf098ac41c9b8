"""``check_optimality``: every first-order condition and the hierarchy certificate at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from toysae._config import JsonMixin
from toysae._result import Result
from toysae._validation import check_float, check_int
from toysae.dictionary_objective import objective_from_parts
from toysae.theory.conditions import (
    ATOM_TOL,
    BIAS_TOL,
    CODE_TOL,
    AtomStationarityReport,
    BiasReport,
    CodeKKTReport,
    atom_stationarity_from_sums,
    bias_condition_from_sum,
    code_kkt_sums,
)
from toysae.theory.hierarchy import HierarchyReport, StepVerifier, hierarchy_plan
from toysae.theory.pairs import (
    MAX_PAIRS,
    PAIR_TOL,
    PairPlan,
    PairReport,
    check_pair_mode,
    pair_report,
    plan_pairs,
)
from toysae.theory.problem import UNIT_NORM_ATOL, Problem, make_problem
from toysae.theory.support import NestingTracker, SampleSums


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
                     bias=None, tolerances: Tolerances | None = None, pairs="auto",
                     normalize: bool = False, max_steps: int = 200, n_worst: int = 10,
                     max_pairs: int = MAX_PAIRS) -> OptimalityReport:
    """Check all first-order optimality conditions of ``(D, Z)`` for data ``X`` at ``lam``.

    Parameters
    ----------
    X : (n_samples, d). D : (n_atoms, d) unit rows. Z : (n_samples, n_atoms).
    lam : > 0. nonneg : nonnegative codes (default) or signed.
    decoder_bias : the model has a trainable decoder bias ``bias`` (then the
        condition ``sum_n r_n = 0`` is checked too). A ``bias`` given with
        ``decoder_bias=False`` is a fixed offset inside the residual.
    tolerances : :class:`Tolerances` (defaults shown there).
    pairs : "auto" (default: every ordered pair up to 1,024 atoms, the candidate
        pairs above), "all", "candidates", None (skip), or an (n_pairs, 2) array;
        see :func:`toysae.theory.pair_conditions`.
    normalize : rescale non-unit rows of D (and code columns) instead of refusing them.
    max_steps : at most this many hierarchy steps are built and verified.
    max_pairs : with candidate pairs, at most this many violating pairs get a record.

    Two passes over the samples: the residual moments and nested supports (no
    responses), then the responses ``r D^T / lam`` once, which feed the code KKT
    conditions, the hull sums and the hierarchy steps' verification together.
    Memory is O(chunk * n_atoms + n_atoms * d) besides the all-pairs arrays.
    """
    tolerances = Tolerances() if tolerances is None else tolerances
    if not isinstance(tolerances, Tolerances):
        raise TypeError(f"tolerances must be a Tolerances, got {type(tolerances).__name__}")
    if not isinstance(decoder_bias, (bool, np.bool_)):
        raise TypeError(f"decoder_bias must be a bool, got {decoder_bias!r}")
    if decoder_bias and bias is None:
        raise ValueError("decoder_bias=True needs the bias: pass bias=<(d,) array>")
    pairs = check_pair_mode(pairs)
    max_steps = check_int(max_steps, "max_steps", minimum=0)
    n_worst = check_int(n_worst, "n_worst", minimum=0)
    max_pairs = check_int(max_pairs, "max_pairs", minimum=1)
    p = make_problem(X, D, Z, lam, nonneg=nonneg, bias=bias, normalize=normalize,
                     unit_atol=tolerances.unit_norm)
    sums, tracker = SampleSums(p.n_atoms, p.X.shape[1]), NestingTracker(p.n_atoms)
    for c in p.chunks(responses=False):
        sums.add(c.Z, c.R)
        tracker.add(c.Z)
    return run_checks(plan_checks(p, sums, tracker, decoder_bias=bool(decoder_bias),
                                  tolerances=tolerances, pairs=pairs, max_steps=max_steps,
                                  n_worst=n_worst, max_pairs=max_pairs))


@dataclass
class CheckPlan:
    """What the responses pass of :func:`run_checks` computes, decided from the first pass."""

    p: Problem
    sums: SampleSums
    decoder_bias: bool
    tolerances: Tolerances
    n_worst: int
    streamed: bool
    atoms: AtomStationarityReport
    pairs: PairPlan | None
    steps: StepVerifier


def plan_checks(p: Problem, sums: SampleSums, tracker: NestingTracker, *, decoder_bias: bool,
                tolerances: Tolerances, pairs, max_steps: int, n_worst: int, max_pairs: int,
                streamed: bool = False) -> CheckPlan:
    """The checks of :func:`check_optimality` once the first pass (``sums``, ``tracker``) is
    done: atom stationarity, the pairs to record and the hierarchy steps to build.

    ``streamed``: ``p`` reads a file (``toysae.check.files``): per-sample arrays and
    the steps' rows are left out so memory does not grow with the file.
    """
    atoms = atom_stationarity_from_sums(p, sums, tolerances.atom, n_worst)
    plan = (None if pairs is None
            else plan_pairs(p, sums, tracker, pairs, tolerances.pair, n_worst, max_pairs))
    steps = StepVerifier(p, hierarchy_plan(p, sums, tracker, max_steps), keep_rows=not streamed)
    return CheckPlan(p=p, sums=sums, decoder_bias=decoder_bias, tolerances=tolerances,
                     n_worst=n_worst, streamed=streamed, atoms=atoms, pairs=plan, steps=steps)


def run_checks(plan: CheckPlan, *, extra: Sequence = (), on_chunk=None) -> OptimalityReport:
    """One pass with the responses ``r D^T / lam`` for the code KKT conditions, the pair
    sums and the hierarchy steps of ``plan``; ``extra`` accumulators (``.add(chunk)``) see
    the same chunks, and ``on_chunk(chunk)`` is called after each (a progress bar)."""
    p, sums, tolerances, n_worst = plan.p, plan.sums, plan.tolerances, plan.n_worst
    code_sums = code_kkt_sums(p, tolerances.code, False if plan.streamed else None, n_worst,
                              keep_per_sample=not plan.streamed)
    pairs = plan.pairs
    rows = p.chunk_rows() if pairs is None else min(p.chunk_rows(), pairs.sums.rows(p))
    for c in p.chunks(rows):
        code_sums.add(c)
        if pairs is not None:
            pairs.sums.add(c)
        plan.steps.add(c)
        for acc in extra:
            acc.add(c)
        if on_chunk is not None:
            on_chunk(c)
    code = code_sums.result()
    pair_rep = None if pairs is None else pair_report(p, sums, pairs, tolerances.pair, n_worst)
    hierarchy = plan.steps.result()
    bias_report = (bias_condition_from_sum(p, sums.residual_sum, tolerances.bias)
                   if plan.decoder_bias else None)
    parts = [code, plan.atoms, *([pair_rep] if pair_rep is not None else []), hierarchy,
             *([bias_report] if bias_report is not None else [])]
    objective = float(objective_from_parts(sums.squared_residual, sums.l1, p.lam))
    return OptimalityReport(
        passed=all(part.passed for part in parts), message=_summary(parts),
        n_samples=p.n_samples, n_atoms=p.n_atoms, lam=p.lam, nonneg=p.nonneg,
        objective=objective, tolerances=tolerances, code=code, atoms=plan.atoms,
        pairs=pair_rep, hierarchy=hierarchy, bias=bias_report)
