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

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from toysae._buffers import Workspace
from toysae._result import Result
from toysae._tuning import KEEP_MATRIX_ENTRIES
from toysae._validation import check_float, check_int, check_problem_shapes, to_numpy
from toysae.dictionary_objective import objective_from_parts
from toysae.dictlearn import sparse_code
from toysae.dictlearn.sparse_coding import ConvergenceWarning
from toysae.theory.conditions import CODE_TOL, INDENT, CodeKKTSums
from toysae.theory.pairs import MAX_PAIRS
from toysae.theory.problem import UNIT_NORM_ATOL, Chunk, scratch_rows, unit_dictionary
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
    per_sample_gap: np.ndarray | None  # (n_samples,); None in a streamed check
    # (n_samples, width): dense up to 5e6 entries, scipy CSR above, None in a streamed
    # check; the encoder's columns rescaled if normalize=True
    sae_codes: np.ndarray | sp.csr_matrix | None
    optimal_codes: np.ndarray | sp.csr_matrix | None

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


def _encode(sae, X: np.ndarray) -> torch.Tensor:
    """``sae.encode`` of one batch, without gradients, in the SAE's dtype, on the CPU."""
    param = next(iter(sae.parameters()), None) if hasattr(sae, "parameters") else None
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else "cpu"
    with torch.no_grad():
        return sae.encode(torch.as_tensor(X, dtype=dtype, device=device)).cpu()


def sae_codes(sae, X, *, batch_size: int = 4096) -> np.ndarray:
    """``sae.encode`` on ``X`` in batches, without gradients, as float64 numpy."""
    X = to_numpy(X, "X", ndim=2)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    return np.concatenate([to_numpy(_encode(sae, X[start:start + batch_size]),
                                    "sae.encode(x)", ndim=2)
                           for start in range(0, len(X), batch_size)], axis=0)


def sparse_sae_codes(sae, X: np.ndarray, width: int) -> sp.csr_matrix:
    """``sae.encode`` on one batch ``X`` (m, d) as float64 CSR (m, width), sorted indices:
    the checks never need the dense float64 codes (128 MB at 4,096 x 4,096)."""
    Z = _encode(sae, X)
    if Z.ndim != 2 or tuple(Z.shape) != (len(X), width):
        raise ValueError(f"sae.encode(x) must have shape {(len(X), width)}, got "
                         f"{tuple(Z.shape)}")
    if Z.is_complex():
        raise TypeError("sae.encode(x) must be real, got complex codes")
    with warnings.catch_warnings():  # torch calls its CSR layout beta; this use is basic
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        csr = Z.to_sparse_csr()  # NaN and Inf are nonzero: they land in the values
    values = csr.values().double().numpy()
    if not np.isfinite(values).all():
        bad = int(values.size - np.isfinite(values).sum())
        raise ValueError(f"sae.encode(x) contains {bad} NaN or Inf value(s)")
    out = sp.csr_matrix((values, csr.col_indices().numpy(), csr.crow_indices().numpy()),
                        shape=(len(X), width))
    out.sort_indices()
    return out


@dataclass
class SAEDictionary:
    """An SAE's decoder as a checker sees it: unit rows, the code scale, the bias."""

    D: np.ndarray  # (width, d) unit rows
    scale: np.ndarray | None  # (width,) old row norms (normalize=True), codes times these
    bias: np.ndarray | None  # (d,) b_dec or None
    trained_bias: bool  # b_dec is a parameter (a trained bias), not a fixed offset

    @functools.cached_property
    def gram(self) -> torch.Tensor:
        """``D D^T`` in float64, computed once for every batch the re-solve codes."""
        D = torch.as_tensor(self.D, dtype=torch.float64)
        return D @ D.T


def unit_sae_dictionary(sae, *, normalize: bool = False,
                        unit_atol: float = UNIT_NORM_ATOL) -> SAEDictionary:
    """The decoder of ``sae`` with unit rows (see :func:`amortisation_gap`'s ``normalize``)."""
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be a bool, got {normalize!r}")
    D, b = sae_dictionary(sae)
    D, scale = unit_dictionary(D, bool(normalize), unit_atol)
    trained = isinstance(getattr(sae, "b_dec", None), torch.nn.Parameter)
    return SAEDictionary(D=D, scale=scale, bias=b, trained_bias=trained)


def code_batch(sae, X: np.ndarray, dic: SAEDictionary, lam: float, *, nonneg: bool, tol: float,
               max_iter: int, workspace: Workspace | None = None):
    """One batch ``X`` (m, d) float64: the encoder's codes (m, width) in the units of the
    unit-row dictionary, and the :class:`~toysae.dictlearn.SparseCodeResult` of the
    float64 re-solve of the optimal codes for that dictionary; both code matrices are
    float64 CSR with sorted indices."""
    Z_sae = sparse_sae_codes(sae, X, dic.D.shape[0])
    if dic.scale is not None:
        Z_sae.data *= dic.scale[Z_sae.indices]
    target = X if dic.bias is None else X - dic.bias
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported in the message
        sol = sparse_code(target, dic.D, lam, method="fista", nonneg=nonneg,
                          dtype=torch.float64, tol=tol, max_iter=max_iter, workspace=workspace,
                          sparse_output=True, gram=dic.gram)
    return Z_sae, sol


class AmortisationSums:
    """Accumulates :class:`AmortisationReport` over batches of samples.

    ``keep_codes``: keep both code matrices (None: dense up to ``KEEP_MATRIX_ENTRIES``
    entries, else CSR; False: neither, for a streamed check); ``keep_per_sample``:
    keep the per-sample gaps.
    """

    def __init__(self, n_samples: int, dic: SAEDictionary, lam: float, *, nonneg: bool,
                 code_tol: float, tol: float, keep_codes: bool | None = None,
                 keep_per_sample: bool = True):
        width = dic.D.shape[0]
        self.dic, self.lam, self.nonneg, self.code_tol, self.tol = dic, lam, nonneg, code_tol, tol
        self.n_samples = n_samples
        self.dense = keep_codes is None and n_samples * width <= KEEP_MATRIX_ENTRIES
        self.keep_codes = keep_codes is None or bool(keep_codes)
        self.codes: tuple[list, list] = ([], [])
        self.per_sample = [] if keep_per_sample else None
        self.kkt = CodeKKTSums(n_samples, width, nonneg, code_tol, False, 1,
                               keep_per_sample=False)
        self.sae_total = self.opt_total = 0.0
        self.diff_sq = self.opt_sq = 0.0
        self.jaccard = 0.0
        self.sae_nnz = self.opt_nnz = 0
        self.success, self.kkt_gap, self.n_batches = True, 0.0, 0
        self.failures: list[str] = []
        self.seen = 0
        self._scratch: dict[str, np.ndarray] = {}  # the responses, rebuilt per batch

    def add(self, start: int, X: np.ndarray, Z_sae: sp.csr_matrix,
            sol) -> tuple[sp.csr_matrix, np.ndarray]:
        """Batch ``X`` (m, d) starting at sample ``start``, the encoder's codes (CSR) and the
        re-solve (CSR codes, ``sparse_output=True``); returns the optimal codes (CSR, sorted
        indices, no stored zeros) and their residuals (m, d)."""
        D, b, lam = self.dic.D, self.dic.bias, self.lam
        Zs, Zo = sp.csr_matrix(Z_sae, dtype=np.float64), sp.csr_matrix(sol.codes,
                                                                        dtype=np.float64)
        for Z in (Zs, Zo):
            Z.eliminate_zeros()
            Z.sort_indices()
        losses, residuals = [], []
        for Z in (Zs, Zo):
            R = X - Z @ D
            if b is not None:
                R -= b
            l1 = np.asarray(abs(Z).sum(axis=1)).ravel()
            losses.append(objective_from_parts(np.einsum("ij,ij->i", R, R), l1, lam))
            residuals.append(R)
        S = scratch_rows(self._scratch, "responses", len(X), D.shape[0])
        np.matmul(residuals[0], D.T, out=S)
        np.divide(S, lam, out=S)
        self.kkt.add(Chunk(start, start + len(X), X, Zs, residuals[0], S))
        sae_loss, opt_loss = losses
        self.sae_total += float(sae_loss.sum())
        self.opt_total += float(opt_loss.sum())
        if self.per_sample is not None:
            self.per_sample.append(sae_loss - opt_loss)
        on_sae, on_opt = (np.diff(Z.indptr) for Z in (Zs, Zo))
        inter = np.asarray((Zs != 0).multiply(Zo != 0).sum(axis=1)).ravel()
        union = on_sae + on_opt - inter
        self.jaccard += float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).sum())
        self.sae_nnz += int(on_sae.sum())
        self.opt_nnz += int(on_opt.sum())
        self.diff_sq += float(np.square((Zs - Zo).data).sum())
        self.opt_sq += float(np.square(Zo.data).sum())
        self.success &= bool(sol.success)
        self.kkt_gap = max(self.kkt_gap, float(sol.kkt_gap))
        if not sol.success:
            self.failures.append(f"samples {start}-{start + len(X) - 1}: {sol.message}")
        self.n_batches += 1
        self.seen += len(X)
        if self.keep_codes:
            self.codes[0].append(Zs)
            self.codes[1].append(Zo)
        return Zo, residuals[1]

    def result(self) -> AmortisationReport:
        if self.seen != self.n_samples:
            raise RuntimeError(f"AmortisationSums saw {self.seen} of {self.n_samples} samples")
        n = self.n_samples
        kkt = self.kkt.result().max_violation
        passed = kkt <= self.code_tol
        gap = self.sae_total - self.opt_total
        relative = gap / self.opt_total if self.opt_total > 0 else 0.0
        sae_l0, opt_l0, jaccard = self.sae_nnz / n, self.opt_nnz / n, self.jaccard / n
        if self.success:
            solver_message = (f"KKT gap <= tol={self.tol:g} for all {n} samples "
                              f"({self.n_batches} batch(es))")
        else:
            solver_message = (f"the re-solve stopped early on {len(self.failures)} of "
                              f"{self.n_batches} batch(es): {self.failures[0]}")
        message = (f"the encoder is {'an' if passed else 'not an'} exact sparse coder for its "
                   f"dictionary: max code-KKT violation {kkt:.3g} {'<=' if passed else '>'} "
                   f"tol {self.code_tol:g} (units of lam)\n{INDENT}objective "
                   f"{self.sae_total:.6g} vs {self.opt_total:.6g} with optimal codes: gap "
                   f"{gap:.4g} (relative {relative:.3g}); L0 {sae_l0:.3g} vs {opt_l0:.3g}, "
                   f"support Jaccard {jaccard:.3f}")
        if not self.success:
            message += f"\n{INDENT}{solver_message}: the gap is a lower bound"
        codes = [None, None]
        if self.keep_codes and self.dense:
            codes = [np.concatenate([Z.toarray() for Z in parts], axis=0)
                     for parts in self.codes]
        elif self.keep_codes:
            codes = [sp.csr_matrix(sp.vstack(parts, format="csr")) for parts in self.codes]
        if not self.success:
            warnings.warn(f"amortisation gap: {solver_message}", ConvergenceWarning,
                          stacklevel=3)
        return AmortisationReport(
            passed=passed, message=message, sae_objective=self.sae_total,
            optimal_objective=self.opt_total, gap=gap, relative_gap=relative,
            code_relative_error=float(np.sqrt(self.diff_sq)) / max(float(np.sqrt(self.opt_sq)),
                                                                   1e-300),
            support_jaccard=jaccard, sae_l0=sae_l0, optimal_l0=opt_l0, sae_kkt_violation=kkt,
            code_tol=self.code_tol, solver_success=self.success, solver_kkt_gap=self.kkt_gap,
            solver_message=solver_message,
            per_sample_gap=(None if self.per_sample is None
                            else np.concatenate(self.per_sample)),
            sae_codes=codes[0], optimal_codes=codes[1])


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
    batch_size : samples encoded and re-solved at a time; memory is
        O(batch_size * width), besides the kept codes (dense up to 5e6 entries, CSR
        above).
    """
    lam = check_float(lam, "lam", minimum=0.0, min_inclusive=False)
    code_tol = check_float(code_tol, "code_tol", minimum=0.0)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if not isinstance(nonneg, (bool, np.bool_)):
        raise TypeError(f"nonneg must be a bool, got {nonneg!r}")
    X = to_numpy(X, "X", ndim=2)
    dic = unit_sae_dictionary(sae, normalize=normalize, unit_atol=unit_atol)
    check_problem_shapes(X.shape, dic.D.shape, bias_shape=None if dic.bias is None
                         else dic.bias.shape)
    if X.shape[0] == 0:
        raise ValueError(f"X must be non-empty, got shape {X.shape}")
    sums = AmortisationSums(len(X), dic, lam, nonneg=bool(nonneg), code_tol=code_tol, tol=tol)
    workspace = Workspace()
    for start in range(0, len(X), batch_size):
        xb = X[start:start + batch_size]
        sums.add(start, xb, *code_batch(sae, xb, dic, lam, nonneg=bool(nonneg), tol=tol,
                                        max_iter=max_iter, workspace=workspace))
    return sums.result()


def check_sae(sae, X, lam, *, nonneg: bool = True, decoder_bias: bool | None = None,
              tolerances: Tolerances | None = None, pairs="auto", normalize: bool = False,
              tol: float = 1e-9, max_iter: int = 20000, batch_size: int = 4096,
              max_steps: int = 200, max_pairs: int = MAX_PAIRS) -> SAEOptimalityReport:
    """Amortisation gap of ``sae`` and :func:`check_optimality` of its dictionary.

    The checks use the re-solved (optimal) codes, so they judge the
    dictionary, not the encoder. ``decoder_bias`` defaults to whether the SAE
    trains a ``b_dec`` (a parameter); then ``sum_n r_n = 0`` is checked too.
    ``pairs`` and ``max_pairs`` as in :func:`check_optimality` (candidate pairs
    above 1,024 latents), so memory stays O(batch_size * width + nnz of the codes)
    at any width.
    """
    tolerances = Tolerances() if tolerances is None else tolerances
    amort = amortisation_gap(sae, X, lam, nonneg=nonneg, normalize=normalize,
                             unit_atol=tolerances.unit_norm, code_tol=tolerances.code, tol=tol,
                             max_iter=max_iter, batch_size=batch_size)
    dic = unit_sae_dictionary(sae, normalize=normalize, unit_atol=tolerances.unit_norm)
    if decoder_bias is None:  # a fixed (buffer) b_dec is an offset, not a trained bias
        decoder_bias = dic.trained_bias
    report = check_optimality(X, dic.D, amort.optimal_codes, lam, nonneg=nonneg,
                              decoder_bias=bool(decoder_bias), bias=dic.bias,
                              tolerances=tolerances, pairs=pairs, max_steps=max_steps,
                              max_pairs=max_pairs)
    return SAEOptimalityReport(passed=report.passed, message=sae_message(amort, report),
                               amortisation=amort, optimality=report)


def sae_message(amort: AmortisationReport, report: OptimalityReport) -> str:
    """The encoder's line, then the dictionary's verdict and its checks, indented."""
    head, *checks = report.message.splitlines()
    verdict = "passes every check" if report.passed else f"fails ({head})"
    return "\n".join([
        f"[{'ok  ' if amort.passed else 'FAIL'}] encoder: {amort.message}",
        f"[{'ok  ' if report.passed else 'FAIL'}] dictionary (with optimal codes) {verdict}:",
        *(INDENT + line for line in checks)])
