"""SAEs through the lens of dictionary learning: amortisation gap and optimality of the decoder.

An SAE's decoder is a dictionary (``sae.dictionary``, (width, d), plus an
optional decoder bias ``sae.b_dec``); its encoder is an amortised, approximate
sparse coder. For the same dictionary the optimal codes come from
:func:`toysae.dictlearn.sparse_code`; the amortisation gap is how much
objective the encoder leaves on the table, and the checks of
:func:`check_optimality` on the dictionary with re-solved codes say whether
the decoder could be a dictionary-learning optimum at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from toysae._result import Result
from toysae._validation import check_float, check_int, to_numpy
from toysae.dictlearn import sparse_code
from toysae.objective import dictionary_objective
from toysae.theory._problem import UNIT_NORM_ATOL, make_problem
from toysae.theory.conditions import CODE_TOL, INDENT, _code_kkt
from toysae.theory.report import OptimalityReport, Tolerances, check_optimality


@dataclass(repr=False)
class AmortisationReport(Result):
    """SAE codes against optimal codes for the SAE's own dictionary (same lam, same bias).

    ``passed``: the encoder is an exact sparse coder for its decoder, i.e. its
    codes satisfy the code KKT conditions for the SAE's dictionary within
    ``code_tol`` (units of lam), so they are the optimal codes and the gap is 0
    up to that tolerance. ``solver_success`` / ``solver_message`` say how the
    float64 re-solve of the optimal codes went; if it stopped early the
    optimal objective is an overestimate and ``gap`` a lower bound.
    """

    passed: bool
    message: str
    sae_objective: float  # objective with the encoder's codes
    optimal_objective: float  # objective with re-solved codes
    gap: float  # sae_objective - optimal_objective (>= 0 up to solver tolerance)
    relative_gap: float  # gap / optimal_objective
    code_relative_error: float  # ||Z_sae - Z*||_F / ||Z*||_F
    support_jaccard: float  # mean over samples of |supp Z_sae & supp Z*| / |union|
    sae_l0: float
    optimal_l0: float
    sae_kkt_violation: float  # max code-KKT violation of the encoder's codes (units of lam)
    code_tol: float  # tolerance on sae_kkt_violation for passed
    solver_success: bool
    solver_kkt_gap: float
    solver_message: str
    per_sample_gap: np.ndarray  # (n_samples,)
    sae_codes: np.ndarray  # (n_samples, width), columns rescaled if normalize=True
    optimal_codes: np.ndarray  # (n_samples, width)

    _ARRAY_FIELDS = ("per_sample_gap", "sae_codes", "optimal_codes")


@dataclass(repr=False)
class SAEOptimalityReport(Result):
    """:class:`AmortisationReport` and the optimality checks on the SAE's dictionary.

    ``passed``: the SAE's dictionary, with re-solved (optimal) codes, passes
    every check of :func:`check_optimality` (whether the encoder is exact is
    ``amortisation.passed``).
    """

    passed: bool
    message: str
    amortisation: AmortisationReport
    optimality: OptimalityReport


def sae_dictionary(sae) -> tuple[np.ndarray, np.ndarray | None]:
    """The decoder of ``sae`` as ``(D (width, d) float64, b_dec (d,) or None)``."""
    if not hasattr(sae, "dictionary") or not hasattr(sae, "encode"):
        raise TypeError(f"sae must have .dictionary and .encode(x), got {type(sae).__name__}")
    D = to_numpy(sae.dictionary, "sae.dictionary", ndim=2)
    b = getattr(sae, "b_dec", None)
    b = None if b is None else to_numpy(b, "sae.b_dec", ndim=1)
    return D, b


def sae_codes(sae, X, *, batch_size: int = 4096) -> np.ndarray:
    """``sae.encode`` on ``X`` in batches, without gradients, as float64 numpy."""
    X = to_numpy(X, "X", ndim=2)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    param = next(iter(sae.parameters()), None) if hasattr(sae, "parameters") else None
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else "cpu"
    out = []
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            xb = torch.as_tensor(X[start:start + batch_size], dtype=dtype, device=device)
            out.append(to_numpy(sae.encode(xb), "sae.encode(x)", ndim=2))
    return np.concatenate(out, axis=0)


def amortisation_gap(sae, X, lam, *, nonneg: bool = True, normalize: bool = False,
                     unit_atol: float = UNIT_NORM_ATOL, code_tol: float = CODE_TOL,
                     tol: float = 1e-9, max_iter: int = 20000,
                     batch_size: int = 4096) -> AmortisationReport:
    """Compare the encoder's codes with optimal codes for the SAE's own dictionary.

    Parameters
    ----------
    sae : torch module with ``.encode(x)``, ``.dictionary`` (width, d) and
        optionally ``.b_dec`` (d,). X : (n_samples, d). lam : penalty, > 0.
    normalize : accept a decoder whose rows are not unit norm by rescaling
        rows to unit norm and code columns by the old norms (reconstruction
        unchanged), as SAE objectives with a norm-weighted penalty do.
    code_tol : code-KKT tolerance (units of lam) under which the encoder counts
        as an exact sparse coder (``passed``).
    tol, max_iter : FISTA settings of the float64 re-solve.
    """
    lam = check_float(lam, "lam", minimum=0.0, min_inclusive=False)
    code_tol = check_float(code_tol, "code_tol", minimum=0.0)
    X = to_numpy(X, "X", ndim=2)
    D, b = sae_dictionary(sae)
    p = make_problem(X, D, sae_codes(sae, X, batch_size=batch_size), lam, nonneg=nonneg,
                     bias=b, normalize=normalize, unit_atol=unit_atol)
    Z_sae = p.Z.toarray()
    target = p.X if b is None else p.X - b
    sol = sparse_code(target, p.D, lam, method="fista", nonneg=nonneg, dtype=torch.float64,
                      tol=tol, max_iter=max_iter)
    Z_opt = np.asarray(sol.codes, dtype=np.float64)

    sae_loss, opt_loss = (dictionary_objective(p.X, p.D, Z, lam, bias=b, per_sample=True)
                          for Z in (Z_sae, Z_opt))
    on_sae, on_opt = Z_sae != 0, Z_opt != 0
    union = (on_sae | on_opt).sum(axis=1)
    inter = (on_sae & on_opt).sum(axis=1)
    jaccard = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    opt_total = float(opt_loss.sum())
    sae_total = float(sae_loss.sum())
    gap = sae_total - opt_total
    relative = gap / opt_total if opt_total > 0 else 0.0
    norm_opt = float(np.linalg.norm(Z_opt))
    kkt = _code_kkt(p, 0.0, False, 1).max_violation
    passed = kkt <= code_tol
    sae_l0, opt_l0 = float(on_sae.sum(axis=1).mean()), float(on_opt.sum(axis=1).mean())
    message = (f"the encoder is {'an' if passed else 'not an'} exact sparse coder for its "
               f"dictionary: max code-KKT violation {kkt:.3g} {'<=' if passed else '>'} "
               f"tol {code_tol:g} (units of lam)\n{INDENT}objective {sae_total:.6g} vs "
               f"{opt_total:.6g} with optimal codes: gap {gap:.4g} (relative {relative:.3g}); "
               f"L0 {sae_l0:.3g} vs {opt_l0:.3g}, support Jaccard {jaccard.mean():.3f}")
    if not sol.success:
        message += (f"\n{INDENT}the re-solve stopped early ({sol.message}): the gap is a "
                    "lower bound")
    return AmortisationReport(
        passed=passed, message=message, sae_objective=sae_total, optimal_objective=opt_total,
        gap=gap, relative_gap=relative,
        code_relative_error=float(np.linalg.norm(Z_sae - Z_opt)) / max(norm_opt, 1e-300),
        support_jaccard=float(jaccard.mean()), sae_l0=sae_l0, optimal_l0=opt_l0,
        sae_kkt_violation=kkt, code_tol=code_tol, solver_success=bool(sol.success),
        solver_kkt_gap=float(sol.kkt_gap), solver_message=str(sol.message),
        per_sample_gap=sae_loss - opt_loss, sae_codes=Z_sae, optimal_codes=Z_opt)


def check_sae(sae, X, lam, *, nonneg: bool = True, decoder_bias: bool | None = None,
              tolerances: Tolerances | None = None, pairs="all", normalize: bool = False,
              tol: float = 1e-9, max_iter: int = 20000, batch_size: int = 4096,
              max_steps: int = 200) -> SAEOptimalityReport:
    """Amortisation gap of ``sae`` and :func:`check_optimality` of its dictionary.

    The checks use the re-solved (optimal) codes, so they judge the
    dictionary, not the encoder. ``decoder_bias`` defaults to whether the SAE
    trains a ``b_dec`` (a parameter); then ``sum_n r_n = 0`` is checked too.
    """
    tolerances = Tolerances() if tolerances is None else tolerances
    amort = amortisation_gap(sae, X, lam, nonneg=nonneg, normalize=normalize,
                             unit_atol=tolerances.unit_norm, code_tol=tolerances.code, tol=tol,
                             max_iter=max_iter, batch_size=batch_size)
    D, b = sae_dictionary(sae)
    if normalize:
        D = D / np.linalg.norm(D, axis=1, keepdims=True)
    if decoder_bias is None:  # a fixed (buffer) b_dec is an offset, not a trained bias
        decoder_bias = isinstance(getattr(sae, "b_dec", None), torch.nn.Parameter)
    report = check_optimality(X, D, amort.optimal_codes, lam, nonneg=nonneg,
                              decoder_bias=bool(decoder_bias), bias=b, tolerances=tolerances,
                              pairs=pairs, max_steps=max_steps)
    head, *checks = report.message.splitlines()
    verdict = "passes every check" if report.passed else f"fails ({head})"
    message = "\n".join([
        f"[{'ok  ' if amort.passed else 'FAIL'}] encoder: {amort.message}",
        f"[{'ok  ' if report.passed else 'FAIL'}] dictionary (with optimal codes) {verdict}:",
        *(INDENT + line for line in checks)])
    return SAEOptimalityReport(passed=report.passed, message=message, amortisation=amort,
                               optimality=report)
