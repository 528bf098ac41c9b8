"""Sparse coding for a fixed dictionary: ``sparse_code(X, D, lam, method=...)``.

Solves, independently for every row ``x`` of ``X`` (docs/design.md, "Conventions"),

    min_z  1/2 ||x - z D||^2 + lam ||z||_1      (z >= 0 when nonneg=True)

with one of

- ``"fista"``: batched accelerated proximal gradient in torch (CPU or GPU),
  per-sample adaptive restart, step ``1/L`` with ``L`` the top eigenvalue of
  ``G = D D^T``, stopped on the KKT gap. Above ``toysae._tuning.WORKING_SET_ABOVE``
  (96) atoms it runs inside an active-set method (``solve_lasso`` of
  :mod:`toysae.dictlearn.lasso`): FISTA solves each sample's problem on
  a small working set of atoms, an exact Cholesky refit on the support found
  replaces the slow last iterations, and the stopping rule is still the full
  KKT gap over all atoms. A float64 solve there (from zero codes) finds its
  supports in float32 first, then refits and certifies them in float64
  (``mixed_precision_lasso``): the same answer, to the same
  tolerance, in about 70% of the time (4,096 samples on 4,096 atoms, d = 256);
- ``"ista"``: the same without momentum (slow; a cross-check);
- ``"omp"``: orthogonal matching pursuit with ``n_nonzero`` atoms (ignores lam
  when choosing atoms; its ``kkt_gap`` is that of the lasso at lam and is
  generally not small);
- ``"cvxpy"``: the exact reference, one DPP-parameterised cvxpy problem solved
  per sample (``solver`` picks the backend, CLARABEL by default).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from toysae._buffers import Workspace
from toysae._result import Result
from toysae._threads import check_threads, thread_count
from toysae._tuning import CODING_SMALL_WORK, ROW_BLOCK, WORKING_SET_ABOVE
from toysae._validation import (
    check_choice,
    check_float,
    check_int,
    check_norm_range,
    check_problem_shapes,
    norm_limit,
    row_norms,
    to_numpy,
    unit_row_deviation,
)
from toysae.dictionary_objective import objective_from_parts
from toysae.dictlearn.lasso import (
    kkt_violation,
    mixed_precision_lasso,
    omp,
    set_times,
    solve_lasso,
    sparse_times,
)

METHODS = ("fista", "ista", "omp", "cvxpy")
DEFAULT_SOLVER = "CLARABEL"
CLARABEL_REFERENCE_OPTIONS = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
_DEFAULT_TOL = {torch.float32: 1e-4, torch.float64: 1e-9}
_DEFAULT_MAX_ITER = {"fista": 2000, "ista": 20000, "omp": 0, "cvxpy": 0}


class ConvergenceWarning(UserWarning):
    """A solver stopped at its iteration limit before meeting its tolerance."""


@dataclass(repr=False)
class SparseCodeResult(Result):
    """Outcome of :func:`sparse_code` (prints like ``scipy.optimize.OptimizeResult``).

    Attributes
    ----------
    codes : (n_samples, n_atoms) numpy array of codes ``Z`` (float64 or float32,
        following ``dtype``); a float64 scipy CSR matrix with ``sparse_output=True``.
    objective : ``1/2 ||X - Z D||^2 + lam ||Z||_1`` summed over samples (float64).
    success : every sample met the stopping rule (fista/ista: KKT gap <= tol;
        omp: every nonnegative refit met its tolerance; cvxpy: solver status optimal).
    n_iter : iterations of the slowest sample (omp: greedy steps; cvxpy: the
        largest solver iteration count).
    kkt_gap : max over samples and atoms of the code KKT violation divided by
        lam (by 1 when lam = 0): 0 means the codes are exactly optimal.
    method : the method used. message : what happened, in words.
    """

    _ARRAY_FIELDS = ("codes",)

    codes: np.ndarray
    objective: float
    success: bool
    n_iter: int
    kkt_gap: float
    method: str
    message: str


def _as_tensor(value, name: str, dtype: torch.dtype, device,
               workspace: Workspace | None = None) -> torch.Tensor:
    """Validated 2-D finite tensor on ``device`` (torch input stays on its device if None).

    A numpy input that needs converting goes into the workspace buffer ``name``
    when a workspace is given."""
    if isinstance(value, torch.Tensor):
        if value.ndim != 2:
            raise ValueError(f"{name} must have 2 dimension(s), got shape {tuple(value.shape)}")
        if not value.is_floating_point() and value.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"{name} must be a numeric tensor, got dtype {value.dtype}")
        t = value.detach().to(device=device if device is not None else value.device,
                              dtype=dtype)
        if t.numel() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ValueError(f"{name} contains {bad} NaN or Inf value(s)")
        return t
    # May share memory with the caller's array: no solver writes into its inputs.
    arr = to_numpy(value, name, ndim=2, dtype=None)
    if workspace is None:
        return torch.as_tensor(arr, dtype=dtype, device=device)
    return workspace.copy(name, arr, dtype).to(device if device is not None else "cpu")


def _check_dtype(dtype) -> torch.dtype:
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype


def _check_device(device) -> torch.device | None:
    if device is None:
        return None
    try:
        return torch.device(device)
    except (TypeError, RuntimeError) as err:
        raise ValueError(f"device must name a torch device, got {device!r}") from err


def kkt_gap(X, D, Z, lam: float, *, nonneg: bool = True) -> float:
    """Max code-KKT violation of codes ``Z`` for ``(X, D, lam)``, divided by lam (float64).

    Same definition as :attr:`SparseCodeResult.kkt_gap` (docs/theory.md, section 1).
    """
    lam = check_float(lam, "lam", minimum=0.0)
    Xt = _as_tensor(X, "X", torch.float64, "cpu")
    Dt = _as_tensor(D, "D", torch.float64, "cpu")
    Zt = _as_tensor(Z, "Z", torch.float64, "cpu")
    check_problem_shapes(tuple(Xt.shape), tuple(Dt.shape), tuple(Zt.shape))
    if nonneg and bool((Zt < 0).any()):
        raise ValueError("Z has negative entries but nonneg=True")
    response = (Xt - Zt @ Dt) @ Dt.T
    viol = kkt_violation(Zt, response, lam, nonneg)
    return float(viol.max()) / (lam if lam > 0 else 1.0) if viol.numel() else 0.0


def sparse_code(X, D, lam: float, *, method: str = "fista", nonneg: bool = True,
                max_iter: int | None = None, tol: float | None = None, init=None,
                n_nonzero: int | None = None, solver: str | None = None,
                solver_options: dict | None = None, device=None,
                dtype: torch.dtype = torch.float32, threads: int | None = None,
                workspace: Workspace | None = None,
                sparse_output: bool = False, gram=None) -> SparseCodeResult:
    """Optimal (or greedy) codes of ``X`` on dictionary ``D``.

    Parameters
    ----------
    X : (n_samples, d) data, numpy array or torch tensor.
    D : (n_atoms, d) dictionary, one atom per row (rows need not be unit norm,
        but none may be zero). The row norms of ``X`` and ``D`` must be at most
        ``toysae._validation.norm_limit(dtype)`` (2.8e14 in float32, 2.0e149 in
        float64), so that the squares the solver forms stay finite; larger ones are a
        ValueError naming the argument.
    lam : L1 penalty, ``lam >= 0``.
    method : "fista" (default), "ista", "omp" or "cvxpy".
    nonneg : constrain ``Z >= 0`` (default) or allow signed codes.
    max_iter : iteration cap for fista (default 2000) and ista (20000); a run
        that hits it returns ``success=False`` and warns.
    tol : stop once the KKT gap (scaled by lam) is <= tol; default 1e-4 for
        float32 and 1e-9 for float64. fista/ista only.
    init : optional (n_samples, n_atoms) warm start (fista, ista, cvxpy).
    n_nonzero : atoms per sample, required by and only used with "omp".
    solver, solver_options : cvxpy backend name (default "CLARABEL") and
        keyword arguments for ``problem.solve``; only with "cvxpy". Without
        options, CLARABEL runs with gap/feasibility tolerances of 1e-10.
    device : torch device for fista/ista/omp (default: X's device, else CPU).
    dtype : torch.float32 (default) or torch.float64 (for checkers).
    threads : torch threads for the call (an int >= 1); None (default) runs on
        one thread when one dense iteration's work ``n_samples * n_atoms**2`` is
        below ``toysae._tuning.CODING_SMALL_WORK`` on the CPU and leaves the
        caller's count otherwise (``toysae._threads.thread_count``).
    workspace : a :class:`toysae._buffers.Workspace` for the large scratch
        arrays; None makes one for this call. A caller that codes batch after
        batch passes the same one and skips re-allocating (and page-faulting)
        them every call. The returned codes never live in it.
    gram : the precomputed Gram matrix ``D D^T`` (n_atoms, n_atoms), as in
        scikit-learn's ``sparse_encode``: a caller coding batch after batch on one
        dictionary computes it once (fista, ista, omp; its diagonal is checked against
        the squared row norms of ``D``).
    sparse_output : return ``codes`` as a float64 scipy CSR matrix (sorted indices, no
        stored zeros) instead of a dense array; with fista/ista on more than 96 atoms
        it comes straight from the active-set solver, never forming the dense codes.

    Returns
    -------
    SparseCodeResult with ``codes`` of shape (n_samples, n_atoms).
    """
    method = check_choice(method, "method", METHODS)
    if not isinstance(nonneg, bool):
        raise TypeError(f"nonneg must be a bool, got {nonneg!r}")
    if not isinstance(sparse_output, (bool, np.bool_)):
        raise TypeError(f"sparse_output must be a bool, got {sparse_output!r}")
    lam = check_float(lam, "lam", minimum=0.0)
    dtype = _check_dtype(dtype)
    device = _check_device(device)
    threads = check_threads(threads)
    if workspace is None:
        workspace = Workspace()
    elif not isinstance(workspace, Workspace):
        raise TypeError(f"workspace must be a toysae._buffers.Workspace or None, got "
                        f"{type(workspace).__name__}")
    with workspace.session():
        Xt = _as_tensor(X, "X", dtype, device, workspace)
        device = Xt.device
        Dt = _as_tensor(D, "D", dtype, device, workspace)
        check_problem_shapes(tuple(Xt.shape), tuple(Dt.shape))
        n, n_atoms = Xt.shape[0], Dt.shape[0]
        if n_atoms == 0:
            raise ValueError("D must have at least one row (atom), got shape (0, d)")
        d_norm = _checked_norm(Dt, "D", dtype, unit_row_deviation(Dt.detach().cpu().numpy(),
                                                                   "D"))
        x_norm = _checked_norm(Xt, "X", dtype)
        # The float64 route that searches supports in float32 forms the correlations
        # X D^T and the Gram matrix there (never a square of X): they must fit float32.
        float32_range = max(d_norm, x_norm) * d_norm <= norm_limit(torch.float32) ** 2
        if max_iter is None:
            max_iter = _DEFAULT_MAX_ITER[method]
        elif method in ("fista", "ista"):
            max_iter = check_int(max_iter, "max_iter", minimum=1)
        else:
            raise ValueError(f"max_iter is only used by fista/ista, got {max_iter!r} with "
                             f"method={method!r}")
        if tol is None:
            tol = _DEFAULT_TOL[dtype]
        else:
            tol = check_float(tol, "tol", minimum=0.0, min_inclusive=False)
        init_t = None
        if init is not None:
            if method == "omp":
                raise ValueError("init is not used by method='omp'; pass init=None")
            init_t = _as_tensor(init, "init", dtype, device)
            if init_t.shape != (n, n_atoms):
                raise ValueError(f"init must have shape {(n, n_atoms)}, got "
                                 f"{tuple(init_t.shape)}")
            if nonneg and bool((init_t < 0).any()):
                raise ValueError("init has negative entries but nonneg=True")
        if method == "omp":
            if n_nonzero is None:
                raise ValueError("n_nonzero is required with method='omp'")
            n_nonzero = check_int(n_nonzero, "n_nonzero", minimum=1, maximum=n_atoms)
        elif n_nonzero is not None:
            raise ValueError(f"n_nonzero is only used by method='omp', got {n_nonzero!r}")
        gram_t = None
        if gram is not None:
            if method == "cvxpy":
                raise ValueError("gram is not used by method='cvxpy'; pass gram=None")
            # Trusted as D D^T: the shape and the diagonal are checked, not every entry
            # (a full finiteness scan of 4,096^2 entries per batch costs more than it
            # guards; a NaN off the diagonal would fail the KKT stopping rule anyway).
            if not isinstance(gram, torch.Tensor):
                gram = to_numpy(gram, "gram", ndim=2, dtype=None, finite=False)
            gram_t = torch.as_tensor(gram, dtype=dtype, device=device)
            if tuple(gram_t.shape) != (n_atoms, n_atoms):
                raise ValueError(f"gram must have shape {(n_atoms, n_atoms)} (D D^T), got "
                                 f"{tuple(gram_t.shape)}")
            norms = Dt.square().sum(dim=1)
            off = float((gram_t.diagonal() - norms).abs().max())
            if not off <= 1e-6 * max(1.0, float(norms.max())):  # NaN fails too
                raise ValueError(f"gram is not D D^T: its diagonal is off the squared row "
                                 f"norms of D by up to {off:.3g}")
        if method == "cvxpy":
            import cvxpy as cp

            solver = DEFAULT_SOLVER if solver is None else solver
            check_choice(solver, "solver", cp.installed_solvers())
            if solver_options is not None and not isinstance(solver_options, dict):
                raise TypeError(f"solver_options must be a dict, got "
                                f"{type(solver_options).__name__}")
            solver_options = dict(solver_options or {})
            if solver == "CLARABEL" and not solver_options:
                # Clarabel's default 1e-8 gaps leave ~1e-9 "zeros" and blur the support;
                # a reference solve should be tighter than anything it is compared with.
                solver_options = dict(CLARABEL_REFERENCE_OPTIONS)
        elif solver is not None or solver_options is not None:
            raise ValueError(f"solver/solver_options are only used by method='cvxpy', got "
                             f"solver={solver!r} with method={method!r}")

        with thread_count(threads, work=n * n_atoms * n_atoms, small_work=CODING_SMALL_WORK,
                          device=device):
            return _solve(Xt, Dt, lam, method=method, nonneg=nonneg, max_iter=max_iter,
                          tol=tol, init_t=init_t, n_nonzero=n_nonzero, solver=solver,
                          solver_options=solver_options, dtype=dtype, workspace=workspace,
                          sparse_output=bool(sparse_output), G=gram_t,
                          float32_range=float32_range)


def _checked_norm(A: torch.Tensor, name: str, dtype: torch.dtype,
                  norms: np.ndarray | None = None) -> float:
    """The largest row norm of ``A``, checked against the range of ``dtype``
    (``toysae._validation.norm_limit``): a ValueError naming ``name`` above it. The rows'
    norms are computed only when the largest entry times ``sqrt(d)`` could exceed the
    float32 limit, so data of ordinary scale costs one max-abs scan."""
    if norms is None:
        if not A.numel():
            return 0.0
        bound = float(torch.linalg.vector_norm(A, ord=float("inf"))) * A.shape[1] ** 0.5
        if bound <= norm_limit(torch.float32):
            return bound
        norms = row_norms(A.detach().cpu().double().numpy())
    check_norm_range(norms, name, dtype, "sparse_code")
    return float(norms.max()) if norms.size else 0.0


def _solve(Xt, Dt, lam, *, method, nonneg, max_iter, tol, init_t, n_nonzero, solver,
           solver_options, dtype, workspace, sparse_output, G,
           float32_range) -> SparseCodeResult:
    n = Xt.shape[0]
    device = Xt.device
    scale = lam if lam > 0 else 1.0
    start = time.perf_counter()
    sets = None
    if method == "cvxpy":
        # Imported here: cvxpy is slow to import and only the reference path needs it.
        from toysae.dictlearn.lasso import OPTIMAL, cvxpy_code

        out = cvxpy_code(Xt.cpu().double().numpy(), Dt.cpu().double().numpy(), lam,
                         nonneg=nonneg, solver=solver, solver_options=solver_options,
                         init=None if init_t is None else init_t.cpu().double().numpy(),
                         zero_tol=1e-9)
        bad = [i for i, s in enumerate(out.statuses) if s not in OPTIMAL]
        failed = [i for i in bad if not np.isfinite(out.codes[i]).all()]
        if failed:
            raise RuntimeError(f"cvxpy solver {solver} failed on {len(failed)} sample(s), "
                               f"first index {failed[0]}: status {out.statuses[failed[0]]}")
        Z = torch.as_tensor(out.codes, dtype=dtype, device=device)
        success = not bad
        n_iter = out.n_iter
        message = (f"{solver} solved all {n} samples to optimality" if success else
                   f"{solver} status not optimal on {len(bad)} of {n} samples "
                   f"(e.g. sample {bad[0]}: {out.statuses[bad[0]]})")
    else:
        G = Dt @ Dt.T if G is None else G
        mixed = (dtype == torch.float64 and method in ("fista", "ista") and init_t is None
                 and lam > 0 and Dt.shape[0] > WORKING_SET_ABOVE and float32_range)
        C = None if mixed else torch.mm(
            Xt, Dt.T, out=workspace.empty("C", (n, Dt.shape[0]), Xt.dtype, device))
        if method == "omp":
            rel_tol = 1e-10 if dtype == torch.float64 else 1e-5
            res = omp(C, G, torch.linalg.vector_norm(Xt, dim=1), n_nonzero, nonneg=nonneg,
                      rel_tol=rel_tol)
            Z = res.codes
            success = res.success
            n_iter = int(res.n_steps.max()) if n else 0
            message = (f"OMP selected up to {n_iter} of n_nonzero={n_nonzero} atoms per sample"
                       if success else
                       "OMP's nonnegative least-squares refit hit its iteration limit")
        else:
            # float64 solves find their supports in float32 first (mixed_precision_lasso)
            res = (mixed_precision_lasso(Xt, Dt, G, lam, nonneg=nonneg,
                                         accelerate=method == "fista", max_iter=max_iter,
                                         tol=tol, scale=scale, workspace=workspace)
                   if mixed else
                   solve_lasso(C, G, lam, nonneg=nonneg, accelerate=method == "fista",
                               max_iter=max_iter, tol=tol, init=init_t, scale=scale,
                               workspace=workspace, D=Dt))
            sets = res.sets
            n_bad = int((~res.success).sum())
            success = n_bad == 0
            n_iter = int(res.n_iter.max()) if n else 0
            message = (f"KKT gap <= tol={tol:g} for all {n} samples" if success else
                       f"max_iter={max_iter} reached before the KKT gap fell below tol={tol:g}"
                       f" on {n_bad} of {n} samples")
            Z = None if sparse_output and sets is not None else res.codes
    # The objective from the residual of the returned codes (not the Gram identity,
    # which cancels badly in float32); torch's sums are pairwise, accurate to ~1e-7
    # in float32. fista/ista already know their KKT gaps.
    if sets is not None:
        l1 = float(sets[1].abs().sum())
        squares = 0.0
        for i in range(0, n, ROW_BLOCK):  # row blocks keep torch's temporaries small
            rows = slice(i, i + ROW_BLOCK)
            # Minus the residual: the same norm, and no copy of X.
            R = set_times(sets[0][rows], sets[1][rows], Dt).sub_(Xt[rows])
            squares += float(R.square_().sum())
    else:
        R = Xt - sparse_times(Z, Dt)
        l1 = float(Z.abs().sum())
        squares = float(R.square().sum())
    objective = objective_from_parts(squares, l1, lam)
    if not n:
        gap = 0.0
    elif method in ("fista", "ista"):
        gap = float(res.kkt.max())
    else:
        gap = float(kkt_violation(Z, R @ Dt.T, lam, nonneg).max()) / scale
    elapsed = time.perf_counter() - start
    if not success:
        warnings.warn(f"sparse_code({method!r}): {message}", ConvergenceWarning, stacklevel=3)
    if not sparse_output:
        codes = Z.cpu().numpy()
    elif Z is None:
        codes = res.csr()
    else:
        codes = sp.csr_matrix(Z.cpu().double().numpy())
        codes.eliminate_zeros()
        codes.sort_indices()
    return SparseCodeResult(codes=codes, objective=objective, success=success,
                            n_iter=n_iter, kkt_gap=gap, method=method,
                            message=f"{message} ({elapsed:.3g} s)")
