"""Float64 lasso solves whose supports are found in float32: search, polish, finish.

A float64 solve to a KKT gap of 1e-9 (what the optimality checks certify) spends
nearly all of its time in the active-set solver's (rows, n_atoms) products and
scans, and those run about twice as fast in float32 (half the bytes moved, twice
the lanes). Only the last digits of the answer need float64, and once the
support and signs are right the exact answer is one Cholesky solve away
(:func:`~toysae.dictlearn.lasso._sets.refit_on_support`). So:

1. **search**: the active-set solver in float32, to a scaled KKT gap of
   ``SEARCH_TOL`` (``toysae._tuning``), from the float32 correlations;
2. **polish**: each sample's codes refit exactly in float64 on the support the
   search found (atoms that come out negative dropped), in buckets of support
   width so that no sample pays for the widest; then the float64 responses
   ``g = (x - zD) D^T``, one product, and the full KKT gap from them: the
   certificate, as strict as the float64 solver's own;
3. **finish**: the samples whose float64 gap still exceeds ``tol`` (an atom whose
   response lies within float32's rounding of ``lam``: a handful in 4,096 on
   ``benchmarks/bench_check.py``'s world) continue in the float64 active-set
   solver, warm started from their polished codes.

The answer is the float64 solver's, to its tolerance; only the route differs.
"""

from __future__ import annotations

import warnings

import torch

from toysae._buffers import Workspace
from toysae._tuning import SEARCH_TOL
from toysae.dictlearn.lasso._fista import LassoOutput
from toysae.dictlearn.lasso._sets import (
    gram_blocks,
    refit_if_better,
    row_counts,
    set_kkt,
    set_times,
)
from toysae.dictlearn.lasso._working_set import working_set_prox_grad


def set_correlations(X: torch.Tensor, D: torch.Tensor, S: torch.Tensor,
                     count: torch.Tensor) -> torch.Tensor:
    """``c[i, j] = X[i] . D[S[i, j]]`` for ``j < count[i]``, 0 beyond (n, m): ``X D^T`` at
    those entries only, MKL's sampled dense-dense product on their CSR pattern (12x faster
    than gathering the rows of ``D`` for a batched product, at 4,096 x 32 entries)."""
    n, m = S.shape
    on = torch.arange(m, device=S.device) < count[:, None]
    crow = torch.zeros(n + 1, dtype=torch.long, device=S.device)
    torch.cumsum(count, 0, out=crow[1:])
    with warnings.catch_warnings():  # torch calls its CSR layout beta; this use is basic
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        pattern = torch.sparse_csr_tensor(crow, S[on], X.new_zeros(int(crow[-1])),
                                          (n, D.shape[0]), check_invariants=False)
        values = torch.sparse.sampled_addmm(pattern, X, D.T, beta=0.0).values()
    return X.new_zeros(n, m).masked_scatter_(on, values)


def _packed(S: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index sets reordered so that each row's nonzero codes come first; and their counts."""
    nonzero = z != 0
    order = torch.argsort((~nonzero).view(torch.uint8), dim=1, stable=True)
    return S.gather(1, order), z.gather(1, order), row_counts(nonzero)


def mixed_precision_lasso(X: torch.Tensor, D: torch.Tensor, G: torch.Tensor, lam: float, *,
                          nonneg: bool, accelerate: bool, max_iter: int, tol: float,
                          scale: float, workspace: Workspace | None = None) -> LassoOutput:
    """The float64 lasso codes of every row of ``X`` (see the module docstring).

    X : (n, d) float64 samples; D : (n_atoms, d) float64 dictionary; G : its Gram
    ``D D^T`` (float64). ``max_iter`` bounds the iterations of the search and of
    the finish each; a sample's ``n_iter`` is their sum. Returns the codes as index
    sets (``LassoOutput.sets``), float64.
    """
    workspace = Workspace() if workspace is None else workspace
    n, n_atoms = X.shape[0], D.shape[0]
    D32 = D.float()
    with workspace.session():
        C32 = torch.mm(X.float(), D32.T,
                       out=workspace.empty("mixed.C32", (n, n_atoms), torch.float32, X.device))
        G32 = workspace.empty("mixed.G32", G.shape, torch.float32, G.device).copy_(G)
        search = working_set_prox_grad(
            C32, G32, lam, nonneg=nonneg, accelerate=accelerate, max_iter=max_iter,
            tol=max(tol, SEARCH_TOL), init=None, scale=scale, workspace=workspace, D=D32)
        workspace.release("mixed.C32", "mixed.G32")
        S, z, count = _packed(*search.sets)
        z, c = z.double(), set_correlations(X, D, S, count)

        # polish: exact float64 refits on the found supports, bucketed by width
        buckets, residual = [], torch.empty_like(X)
        widest = int(count.max()) if n else 0
        low, width = -1, 8  # the first bucket takes the empty supports too
        while low < widest:
            rows = torch.nonzero((count > low) & (count <= width)).squeeze(1)
            if rows.numel():
                S_b, z_b = S[rows, :width], z[rows, :width]
                z_b = refit_if_better(c[rows, :width], gram_blocks(G, S_b), z_b, lam, nonneg)
                residual[rows] = X[rows] - set_times(S_b, z_b, D)
                buckets.append((rows, S_b, z_b))
            low, width = width, 2 * width
        g = torch.mm(residual, D.T,
                     out=workspace.empty("mixed.response", (n, n_atoms), X.dtype, X.device))
        top = g.amax(dim=1) if nonneg else g.abs().amax(dim=1)
        kkt = torch.empty(n, dtype=X.dtype, device=X.device)
        for rows, S_b, z_b in buckets:
            kkt[rows] = set_kkt(z_b, g[rows[:, None], S_b], top[rows], lam, nonneg) / scale

        # finish: the samples the float32 support left short, in float64
        late = torch.nonzero(~(kkt <= tol)).squeeze(1)  # NaN, were there one, is late too
        finish = None
        if late.numel():
            position = torch.full((n,), -1, dtype=torch.long, device=X.device)
            position[late] = torch.arange(late.numel(), device=X.device)
            init = torch.zeros(late.numel(), n_atoms, dtype=X.dtype, device=X.device)
            for rows, S_b, z_b in buckets:
                at = position[rows]
                hit = at >= 0
                # accumulate: padding repeats atom 0 with zero codes
                init.index_put_((at[hit, None], S_b[hit]), z_b[hit], accumulate=True)
            finish = working_set_prox_grad(
                X[late] @ D.T, G, lam, nonneg=nonneg, accelerate=accelerate,
                max_iter=max_iter, tol=tol, init=init, scale=scale, workspace=workspace, D=D)
    return _merged(n, n_atoms, buckets, kkt, search.n_iter, late, finish)


def _merged(n: int, n_atoms: int, buckets, kkt: torch.Tensor, n_iter: torch.Tensor,
            late: torch.Tensor, finish: LassoOutput | None) -> LassoOutput:
    """One :class:`LassoOutput` from the polished buckets and the finished late samples
    (whose polished codes the finish replaces, however wide either set is)."""
    success = kkt.new_ones(n, dtype=torch.bool)
    n_iter = n_iter.clone()
    widths = [S_b.shape[1] for _, S_b, _ in buckets]
    if finish is not None:
        kkt[late], success[late] = finish.kkt, finish.success
        n_iter[late] += finish.n_iter
        widths.append(finish.sets[0].shape[1])
    m = max(widths, default=1)
    S_all = torch.zeros(n, m, dtype=torch.long, device=kkt.device)
    z_all = torch.zeros(n, m, dtype=kkt.dtype, device=kkt.device)
    for rows, S_b, z_b in buckets:
        S_all[rows, :S_b.shape[1]], z_all[rows, :S_b.shape[1]] = S_b, z_b
    if finish is not None:  # nothing of the late rows' polish stays
        S_f, z_f = finish.sets
        S_all[late], z_all[late] = 0, 0.0
        S_all[late, :S_f.shape[1]], z_all[late, :S_f.shape[1]] = S_f, z_f
    return LassoOutput(kkt, n_iter, success, sets=(S_all, z_all), n_atoms=n_atoms)
