"""The wide-dictionary limit: a closed-form lower bound on the objective of any dictionary.

For unit atoms, ``||z_n||_1 >= ||z_n D||_2`` (triangle inequality), so for any
dictionary of any size and any codes

    L(D, Z) >= sum_n min_y [ 1/2 ||x_n - y||^2 + lam ||y||_2 ] = sum_n h(||x_n||),

a convex problem per sample solved by ``y = (1 - lam / ||x||)_+ x`` (one atom
per data ray), with ``h(a) = a^2 / 2`` for ``a <= lam`` and
``lam a - lam^2 / 2`` otherwise (a Huber function of ``||x||``). The bound is
attained by the dictionary of the data directions, so it is the infimum over
all dictionaries. With a decoder bias ``b`` the bound is
``min_b sum_n h(||x_n - b||)``, convex and smooth in ``b``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from toysae._result import Result
from toysae._validation import check_float, row_norms, to_numpy
from toysae.dictionary_objective import dictionary_objective


@dataclass(repr=False)
class WideLimitResult(Result):
    """Per-sample closed form of the wide limit and its loss (the lower bound).

    ``success``: the bound is exact. Always True without a bias (closed form);
    with ``bias=True`` it says whether L-BFGS found the optimal bias, and
    ``message`` says how it went.
    """

    success: bool
    message: str
    bound: float  # sum of per-sample losses: no dictionary does better
    loss: np.ndarray  # (n_samples,) h(||x_n - b||)
    reconstruction: np.ndarray  # (n_samples, d) y_n (+ b)
    code: np.ndarray  # (n_samples,) ||y_n|| = (||x_n - b|| - lam)_+, the one-atom code
    active: np.ndarray  # (n_samples,) bool, ||x_n - b|| > lam: samples that get an atom
    bias: np.ndarray | None  # (d,) optimal decoder bias, if asked for
    lam: float

    _ARRAY_FIELDS = ("loss", "reconstruction", "code", "active")


@dataclass(repr=False)
class WideLimitGap(Result):
    """Objective of ``(D, Z)`` minus the wide-limit bound (>= 0 for every dictionary).

    ``success``: the bound was computed exactly (see :class:`WideLimitResult`).
    """

    success: bool
    message: str
    objective: float
    bound: float
    gap: float
    relative_gap: float  # gap / objective


def _huber(norms: np.ndarray, lam: float) -> np.ndarray:
    # m (a - m / 2) with m = min(a, lam) is a^2 / 2 below lam and lam a - lam^2 / 2
    # above, and squares nothing larger than lam.
    m = np.minimum(norms, lam)
    return m * (norms - 0.5 * m)


def _per_sample(V: np.ndarray, lam: float):
    norms = row_norms(V)  # no overflow for rows near 1e200
    code = np.maximum(norms - lam, 0.0)
    scale = np.divide(code, norms, out=np.zeros_like(norms), where=norms > 0)
    return _huber(norms, lam), V * scale[:, None], code, norms > lam


def _optimal_bias(X: np.ndarray, lam: float) -> tuple[np.ndarray, bool, str]:
    def fun(b):
        V = X - b
        norms = row_norms(V)
        shrink = np.minimum(1.0, lam / np.maximum(norms, 1e-300))
        return float(_huber(norms, lam).sum()), -(V * shrink[:, None]).sum(axis=0)

    start = np.median(X, axis=0)
    res = minimize(fun, start, jac=True, method="L-BFGS-B",
                   options={"maxiter": 2000, "gtol": 1e-10 * max(1.0, len(X) * lam)})
    return res.x, bool(res.success), str(res.message)


def _check_bound_range(X: np.ndarray, lam: float) -> None:
    """ValueError naming X and lam when ``lam * sum_n ||x_n||`` overflows float64."""
    norms = row_norms(X)
    with np.errstate(over="ignore"):
        total = lam * float(norms.sum())
    if not np.isfinite(total):
        k = int(np.argmax(norms))
        raise ValueError(f"X and lam: the wide-limit bound can overflow float64 (lam * "
                         f"sum_n ||x_n|| is {total}; row {k} of X has norm {norms[k]:.3g}, "
                         f"lam = {lam:.3g}); rescale X and lam together (the bound scales "
                         "with their product)")


def wide_limit(X, lam, *, bias: bool = False) -> WideLimitResult:
    """The wide-limit solution of ``X`` at penalty ``lam`` and its loss.

    Parameters
    ----------
    X : (n_samples, d) data (at least one sample with ``bias=True``). lam : penalty, > 0.
        ``lam * sum_n ||x_n||`` must be finite in float64 (else a ValueError: the
        bound could overflow); row norms are computed without overflow.
    bias : also optimise a decoder bias (then the bound holds for every
        dictionary with a free decoder bias); solved with L-BFGS, and
        ``success``/``message`` say how that went.
    """
    X = to_numpy(X, "X", ndim=2)
    lam = check_float(lam, "lam", minimum=0.0, min_inclusive=False)
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"bias must be a bool, got {bias!r}")
    if bias and len(X) == 0:
        raise ValueError("X has no samples (shape (0, d)); the optimal decoder bias of "
                         "bias=True is undefined without data")
    # h(a) <= lam * a, and the optimal bias does no worse than b = 0: a finite
    # lam * sum_n ||x_n|| means a finite bound. Checked before any work.
    _check_bound_range(X, lam)
    b, success, how = None, True, "closed form"
    V = X
    if bias:
        b, success, how = _optimal_bias(X, lam)
        how = f"optimal bias by L-BFGS: {how}"
        V = X - b
    loss, Y, code, active = _per_sample(V, lam)
    bound = float(loss.sum())
    if not np.isfinite(bound):  # L-BFGS's bias ended worse than b = 0 (it never should)
        _check_bound_range(V, lam)
        raise RuntimeError(f"wide_limit: the bound is {bound} with the bias L-BFGS found")
    if b is not None:
        Y = Y + b
    message = (f"wide-limit bound {bound:.6g} over {len(X)} sample(s), "
               f"{int(active.sum())} of them get an atom ({how})")
    return WideLimitResult(success=success, message=message, bound=bound,
                           loss=loss, reconstruction=Y, code=code, active=active, bias=b,
                           lam=lam)


def wide_limit_gap(X, D, Z, lam, *, bias=None) -> WideLimitGap:
    """Gap of the objective of ``(D, Z)`` (unit-norm atoms) to the wide-limit bound.

    With ``bias`` (a (d,) decoder bias) the bound is the one with an optimal
    free bias, which is below the objective for any bias.
    """
    D_arr = to_numpy(D, "D", ndim=2)
    norms = np.linalg.norm(D_arr, axis=1)
    if norms.size and norms.max() > 1 + 1e-6:
        raise ValueError(f"D rows must have norm <= 1 for the bound to hold; row "
                         f"{int(norms.argmax())} has norm {norms.max():.6g}")
    objective = dictionary_objective(X, D_arr, Z, lam, bias=bias)
    limit = wide_limit(X, lam, bias=bias is not None)
    gap = objective - limit.bound
    relative = gap / objective if objective > 0 else 0.0
    message = (f"objective {objective:.6g} is {gap:.4g} above the wide-limit bound "
               f"{limit.bound:.6g} (relative {relative:.3g})")
    if not limit.success:
        message += f"; the bound is not exact: {limit.message}"
    return WideLimitGap(success=limit.success, message=message, objective=objective,
                        bound=limit.bound, gap=gap, relative_gap=relative)
