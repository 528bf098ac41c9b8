"""The ``lam`` at which the optimal codes of a dictionary have a given L0.

Judging every decoder at one common ``lam`` favours the dictionaries trained on the L1
objective at about that ``lam``. The matched lens instead asks each decoder the question
at its own sparsity: the ``lam`` whose optimal (re-solved) codes have the SAE's own L0
(docs/theory.md, section 10). The L0 of the lasso codes falls as ``lam`` grows (from at
most ``d`` per sample near 0 to 0 at ``lam_max = max_n max_k d_k . (x_n - b)``), not
always strictly, so the search brackets the target on a log scale and then narrows the
bracket by regula falsi in ``log lam`` (Illinois variant), falling back to bisection.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from toysae._result import Result
from toysae._validation import check_float, check_int, check_problem_shapes, to_numpy
from toysae.dictlearn import sparse_code
from toysae.dictlearn.sparse_coding import ConvergenceWarning
from toysae.theory.problem import UNIT_NORM_ATOL, unit_dictionary
from toysae.theory.sae import sae_codes, sae_dictionary

#: Bracket steps: each multiplies or divides lam by this factor.
BRACKET_FACTOR = 4.0
#: The smallest lam tried, as a fraction of lam_max, before the target counts as unreachable.
MIN_LAM_FRACTION = 1e-8


@dataclass(repr=False)
class MatchedLam(Result):
    """The result of :func:`lam_for_l0`.

    ``success``: the codes at ``lam`` have mean L0 within ``rtol`` of ``target_l0`` and
    every re-solve met its stopping rule. ``lams`` / ``l0s`` are the evaluations in order.
    """

    success: bool
    message: str
    lam: float
    l0: float  # mean nonzeros per sample of the optimal codes at lam
    target_l0: float
    relative_error: float  # |l0 - target_l0| / target_l0
    rtol: float
    lam_max: float  # smallest lam with all-zero codes
    n_iter: int  # re-solves done
    solver_success: bool
    lams: np.ndarray
    l0s: np.ndarray


class _L0Curve:
    """Mean L0 of the optimal codes as a function of lam, every evaluation recorded."""

    def __init__(self, target: np.ndarray, D: np.ndarray, nonneg: bool, tol: float,
                 max_iter: int):
        self.target, self.nonneg, self.tol, self.max_iter = target, nonneg, tol, max_iter
        self.D = D
        self.gram = torch.as_tensor(D @ D.T, dtype=torch.float64)
        self.lams: list[float] = []
        self.l0s: list[float] = []
        self.solver_success = True

    def __call__(self, lam: float) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # reported in the result
            sol = sparse_code(self.target, self.D, lam, nonneg=self.nonneg,
                              dtype=torch.float64, tol=self.tol, max_iter=self.max_iter,
                              sparse_output=True, gram=self.gram)
        self.solver_success &= bool(sol.success)
        l0 = sol.codes.nnz / self.target.shape[0]
        self.lams.append(lam)
        self.l0s.append(l0)
        return l0


def lam_for_l0(X, D, target_l0: float, *, bias=None, nonneg: bool = True,
               rtol: float = 0.02, max_evals: int = 40, normalize: bool = False,
               unit_atol: float = UNIT_NORM_ATOL, tol: float = 1e-7,
               max_iter: int = 20000) -> MatchedLam:
    """Find ``lam`` whose optimal codes of ``X`` on ``D`` have mean L0 ``target_l0``.

    X : (n_samples, d). D : (n_atoms, d), unit rows (``normalize=True`` rescales them).
    target_l0 : mean nonzeros per sample, in (0, min(n_atoms, d)]. bias : optional (d,)
    subtracted from ``X``. rtol : relative L0 error accepted. max_evals : re-solves
    allowed (each is a float64 FISTA solve to KKT gap ``tol``, at most ``max_iter``
    iterations). A search that ends outside ``rtol`` returns ``success=False`` with the
    closest ``lam`` found.
    """
    X = to_numpy(X, "X", ndim=2)
    D = to_numpy(D, "D", ndim=2)
    check_problem_shapes(X.shape, D.shape, bias_shape=None if bias is None
                         else np.shape(bias))
    if X.shape[0] == 0:
        raise ValueError(f"X must be non-empty, got shape {X.shape}")
    cap = min(D.shape[0], D.shape[1])
    target_l0 = check_float(target_l0, "target_l0", minimum=0.0, maximum=float(cap),
                            min_inclusive=False)
    rtol = check_float(rtol, "rtol", minimum=0.0, min_inclusive=False)
    max_evals = check_int(max_evals, "max_evals", minimum=2)
    if not isinstance(nonneg, (bool, np.bool_)):
        raise TypeError(f"nonneg must be a bool, got {nonneg!r}")
    D, _ = unit_dictionary(D, bool(normalize), unit_atol)
    target = X if bias is None else X - to_numpy(bias, "bias", ndim=1)

    scores = target @ D.T
    lam_max = float(scores.max() if nonneg else np.abs(scores).max())
    if lam_max <= 0:
        raise ValueError("every code is zero at any lam > 0 (no atom has a positive inner "
                         "product with any sample): no lam reaches target_l0")
    curve = _L0Curve(target, D, bool(nonneg), tol, max_iter)

    def close(l0: float) -> bool:
        return abs(l0 - target_l0) <= rtol * target_l0

    # Bracket: lo has L0 above the target, hi below (lam_max has L0 0).
    lam = lam_max / 10
    l0 = curve(lam)
    lo = hi = None
    if l0 >= target_l0:
        lo = (lam, l0)
        while not close(lo[1]) and hi is None and len(curve.lams) < max_evals:
            lam = min(lam * BRACKET_FACTOR, lam_max)
            l0 = curve(lam)
            if l0 >= target_l0:
                lo = (lam, l0)
            else:
                hi = (lam, l0)
    else:
        hi = (lam, l0)
        while not close(hi[1]) and lo is None and len(curve.lams) < max_evals \
                and lam > MIN_LAM_FRACTION * lam_max:
            lam = lam / BRACKET_FACTOR
            l0 = curve(lam)
            if l0 >= target_l0:
                lo = (lam, l0)
            else:
                hi = (lam, l0)

    if lo is not None and hi is not None:
        _narrow(curve, lo, hi, target_l0, close, max_evals)
    return _result(curve, target_l0, rtol, lam_max)


def _narrow(curve: _L0Curve, lo, hi, target_l0: float, close, max_evals: int) -> None:
    """Illinois regula falsi on ``f(log lam) = L0 - target`` inside the bracket."""
    f_lo, f_hi = lo[1] - target_l0, hi[1] - target_l0
    u_lo, u_hi = math.log(lo[0]), math.log(hi[0])
    side = 0
    while len(curve.lams) < max_evals and not close(curve.l0s[-1]):
        if u_hi - u_lo < 1e-12:
            return  # the L0 curve jumps across the target here: no lam lands closer
        u = (u_lo * f_hi - u_hi * f_lo) / (f_hi - f_lo) if f_hi != f_lo else (u_lo + u_hi) / 2
        if not u_lo < u < u_hi:
            u = (u_lo + u_hi) / 2
        f = curve(math.exp(u)) - target_l0
        if f >= 0:
            u_lo, f_lo = u, f
            if side == -1:
                f_hi /= 2  # Illinois: halve the stale end so the bracket shrinks from both sides
            side = -1
        else:
            u_hi, f_hi = u, f
            if side == 1:
                f_lo /= 2
            side = 1


def _result(curve: _L0Curve, target_l0: float, rtol: float, lam_max: float) -> MatchedLam:
    lams, l0s = np.array(curve.lams), np.array(curve.l0s)
    best = int(np.argmin(np.abs(l0s - target_l0)))
    lam, l0 = float(lams[best]), float(l0s[best])
    error = abs(l0 - target_l0) / target_l0
    reached = error <= rtol
    success = reached and curve.solver_success
    if success:
        message = (f"lam = {lam:.6g} gives L0 {l0:.4g} (target {target_l0:.4g}, "
                   f"{100 * error:.2g}% off) after {len(lams)} re-solves")
    elif not reached:
        message = (f"no lam found within {100 * rtol:g}% of target L0 {target_l0:.4g} in "
                   f"{len(lams)} re-solves: the closest, lam = {lam:.6g}, gives L0 {l0:.4g}")
    else:
        message = (f"lam = {lam:.6g} gives L0 {l0:.4g}, but a re-solve stopped at its "
                   f"iteration limit before its KKT gap met tol: the L0 may be off")
    return MatchedLam(success=success, message=message, lam=lam, l0=l0, target_l0=target_l0,
                      relative_error=float(error), rtol=rtol, lam_max=lam_max,
                      n_iter=len(lams), solver_success=curve.solver_success, lams=lams,
                      l0s=l0s)


def sae_lam_for_l0(sae, X, target_l0: float | None = None, **kwargs) -> MatchedLam:
    """:func:`lam_for_l0` on an SAE's decoder (its ``b_dec`` as the bias); ``target_l0``
    defaults to the mean L0 of the SAE's own codes of ``X``."""
    X = to_numpy(X, "X", ndim=2)
    D, bias = sae_dictionary(sae)
    if target_l0 is None:
        target_l0 = float(np.count_nonzero(sae_codes(sae, X)) / max(len(X), 1))
        if target_l0 == 0:
            raise ValueError("the SAE's codes of X are all zero: pass target_l0")
    return lam_for_l0(X, D, target_l0, bias=bias, **kwargs)
