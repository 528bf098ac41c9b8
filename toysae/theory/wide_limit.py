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
from toysae._validation import check_float, to_numpy
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
    return np.where(norms <= lam, 0.5 * norms**2, lam * norms - 0.5 * lam**2)


def _per_sample(V: np.ndarray, lam: float):
    norms = np.linalg.norm(V, axis=1)
    code = np.maximum(norms - lam, 0.0)
    scale = np.divide(code, norms, out=np.zeros_like(norms), where=norms > 0)
    return _huber(norms, lam), V * scale[:, None], code, norms > lam


def _optimal_bias(X: np.ndarray, lam: float) -> tuple[np.ndarray, bool, str]:
    def fun(b):
        V = X - b
        norms = np.linalg.norm(V, axis=1)
        shrink = np.minimum(1.0, lam / np.maximum(norms, 1e-300))
        return float(_huber(norms, lam).sum()), -(V * shrink[:, None]).sum(axis=0)

    start = np.median(X, axis=0)
    res = minimize(fun, start, jac=True, method="L-BFGS-B",
                   options={"maxiter": 2000, "gtol": 1e-10 * max(1.0, len(X) * lam)})
    return res.x, bool(res.success), str(res.message)


def wide_limit(X, lam, *, bias: bool = False) -> WideLimitResult:
    """The wide-limit solution of ``X`` at penalty ``lam`` and its loss.

    Parameters
    ----------
    X : (n_samples, d) data. lam : penalty, > 0.
    bias : also optimise a decoder bias (then the bound holds for every
        dictionary with a free decoder bias); solved with L-BFGS, and
        ``success``/``message`` say how that went.
    """
    X = to_numpy(X, "X", ndim=2)
    lam = check_float(lam, "lam", minimum=0.0, min_inclusive=False)
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"bias must be a bool, got {bias!r}")
    b, success, how = None, True, "closed form"
    V = X
    if bias:
        b, success, how = _optimal_bias(X, lam)
        how = f"optimal bias by L-BFGS: {how}"
        V = X - b
    loss, Y, code, active = _per_sample(V, lam)
    if b is not None:
        Y = Y + b
    message = (f"wide-limit bound {float(loss.sum()):.6g} over {len(X)} sample(s), "
               f"{int(active.sum())} of them get an atom ({how})")
    return WideLimitResult(success=success, message=message, bound=float(loss.sum()),
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
