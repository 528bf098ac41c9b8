"""Validated inputs shared by every checker, and the chunked pass over samples.

Every checker works on the same ``(X, D, Z, lam)`` in the package layout
(docs/design.md, "Conventions"): ``X`` (n_samples, d), ``D`` (n_atoms, d) with unit
rows, ``Z`` (n_samples, n_atoms), reconstruction ``Z @ D (+ bias)``. Arrays are
converted to float64 once, here, and ``Z`` is kept as a CSR matrix because
every quantity the checkers need is a sum over the support of ``Z``.

The checkers only ever read ``X`` and ``Z`` one block of rows at a time
(:meth:`Problem.chunks`), so a ``Problem`` may also hold row readers of data too
large for memory (``toysae.check.files``): ``X[a:b]`` must give float64 rows and
``Z[a:b]`` a CSR block with sorted indices and no explicit zeros, and ``Z.nnz``
the number of nonzero codes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from toysae._tuning import CHECK_CHUNK_ENTRIES
from toysae._validation import (
    check_float,
    check_problem_shapes,
    check_unit_rows,
    to_numpy,
    unit_row_deviation,
)
from toysae.theory.support import lookup

#: Default distance from unit norm tolerated in a dictionary row.
UNIT_NORM_ATOL = 1e-5


@dataclass(frozen=True, eq=False)
class Problem:
    """One validated dictionary-learning state ``(X, D, Z, lam[, bias])`` in float64."""

    X: np.ndarray  # (n, d), or a reader of rows (see the module docstring)
    D: np.ndarray  # (k, d), unit rows
    Z: sp.csr_matrix  # (n, k), or a reader of CSR rows
    lam: float
    nonneg: bool
    bias: np.ndarray | None  # (d,) or None
    max_rows: int | None = None  # most rows a chunk may have (a streamed check: its batch)
    # the responses' buffer, reused chunk after chunk (see scratch_rows)
    _scratch: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_atoms(self) -> int:
        return self.D.shape[0]

    def chunk_rows(self, width: int | None = None) -> int:
        """Samples per chunk so that the (chunk, width) and (chunk, d) float64 blocks stay
        small (and within ``max_rows``)."""
        width = max(self.n_atoms if width is None else width, self.D.shape[1])
        rows = max(64, min(self.n_samples, CHECK_CHUNK_ENTRIES // max(1, width)))
        return int(rows if self.max_rows is None else min(rows, self.max_rows))

    def chunks(self, rows: int | None = None, *, responses: bool = True) -> Iterator[Chunk]:
        """Residuals and scaled responses ``s = (r D^T) / lam``, one block of samples at a time.

        ``responses=False`` skips ``S`` (then ``None``): the (n, d) x (d, n_atoms)
        product is the dominant cost of every checker that needs it.
        """
        rows = self.chunk_rows() if rows is None else rows
        for start in range(0, self.n_samples, rows):
            stop = min(self.n_samples, start + rows)
            yield self.chunk(start, stop, self.X[start:stop], self.Z[start:stop],
                             responses=responses)

    def chunk(self, start: int, stop: int, X: np.ndarray, Z: sp.csr_matrix, *,
              responses: bool = True) -> Chunk:
        """The :class:`Chunk` of samples ``start:stop`` with data ``X`` and codes ``Z``; its
        responses ``S`` live in a buffer the next chunk overwrites (every checker reads
        them within its chunk)."""
        R = X - Z @ self.D
        if self.bias is not None:
            R -= self.bias
        S = None
        if responses:
            S = scratch_rows(self._scratch, "responses", R.shape[0], self.n_atoms)
            np.matmul(R, self.D.T, out=S)
            np.divide(S, self.lam, out=S)
        return Chunk(start, stop, X, Z, R, S, self._scratch)


def scratch_rows(store: dict, name: str, rows: int, cols: int, dtype=np.float64) -> np.ndarray:
    """A reusable ``(rows, cols)`` array from ``store``, for a temporary rebuilt per chunk.

    numpy gives every array above glibc's 32 MB mmap limit fresh pages, faulted in on
    first write: ``S - 1`` on a 4,096 x 4,096 float64 chunk took 0.32 s that way, a few
    ms in a kept buffer. The buffer grows to the most rows asked for; a smaller chunk
    gets its leading rows (contiguous).
    """
    buf = store.get(name)
    if buf is None or buf.shape[0] < rows or buf.shape[1] != cols or buf.dtype != dtype:
        buf = store[name] = np.empty((rows, cols), dtype=dtype)
    return buf[:rows]


class Chunk(NamedTuple):
    start: int
    stop: int
    X: np.ndarray  # (m, d) data of the chunk
    Z: sp.csr_matrix  # (m, k) codes of the chunk
    R: np.ndarray  # (m, d) residuals r_n = x_n - z_n D (- b)
    S: np.ndarray | None  # (m, k) scaled responses s_nk = d_k . r_n / lam (valid until the
    #                       next chunk of the same Problem: a reused buffer)
    scratch: dict | None = None  # the Problem's kept buffers, for lookup() in its checkers

    def codes_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``Z[rows[e], cols[e]]`` for each entry (:func:`~toysae.theory.support.lookup`)."""
        return lookup(self.Z, rows, cols, self.scratch)


def _codes(Z, name: str) -> sp.csr_matrix:
    if sp.issparse(Z):
        if Z.dtype.kind == "c":  # scipy would drop the imaginary part
            raise TypeError(f"{name} must be real, got a complex sparse matrix")
        Z = sp.csr_matrix(Z, dtype=np.float64)
        if Z.ndim != 2:
            raise ValueError(f"{name} must have 2 dimensions, got shape {Z.shape}")
        if Z.data.size and not np.isfinite(Z.data).all():
            bad = int(Z.data.size - np.isfinite(Z.data).sum())
            raise ValueError(f"{name} contains {bad} NaN or Inf value(s)")
    else:
        Z = sp.csr_matrix(to_numpy(Z, name, ndim=2))
    Z.eliminate_zeros()
    Z.sort_indices()
    return Z


def make_problem(X, D, Z, lam, *, nonneg: bool = True, bias=None, normalize: bool = False,
                 unit_atol: float = UNIT_NORM_ATOL) -> Problem:
    """Validate and convert the inputs of a checker; raise before any work.

    ``normalize=True`` rescales non-unit dictionary rows to unit norm and the
    matching code columns by the old norms, which keeps the reconstruction
    ``Z @ D`` unchanged (the L1 term changes). Without it, a row further than
    ``unit_atol`` from unit norm is a ``ValueError`` that says how far.
    """
    if not isinstance(nonneg, (bool, np.bool_)):
        raise TypeError(f"nonneg must be a bool, got {nonneg!r}")
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be a bool, got {normalize!r}")
    lam = check_float(lam, "lam", minimum=0.0, min_inclusive=False)
    unit_atol = check_float(unit_atol, "unit_atol", minimum=0.0)
    X = to_numpy(X, "X", ndim=2)
    D = to_numpy(D, "D", ndim=2).copy()
    Zc = _codes(Z, "Z")
    if bias is not None:
        bias = to_numpy(bias, "bias", ndim=1)
    check_problem_shapes(X.shape, D.shape, Zc.shape, None if bias is None else bias.shape)
    if X.shape[0] == 0 or D.shape[0] == 0:
        raise ValueError(f"X and D must be non-empty, got X {X.shape} and D {D.shape}")
    if nonneg and Zc.data.size and Zc.data.min() < 0:
        neg = int((Zc.data < 0).sum())
        raise ValueError(f"Z has {neg} negative code(s) (min {Zc.data.min():.3g}) but "
                         "nonneg=True; pass nonneg=False for signed codes")
    D, scale = unit_dictionary(D, normalize, unit_atol)
    if scale is not None:
        Zc = sp.csr_matrix(Zc @ sp.diags(scale))
        Zc.sort_indices()
    return Problem(X=X, D=D, Z=Zc, lam=lam, nonneg=bool(nonneg), bias=bias)


def unit_dictionary(D: np.ndarray, normalize: bool,
                    unit_atol: float) -> tuple[np.ndarray, np.ndarray | None]:
    """``(D with unit rows, scale)``: without ``normalize`` a row further than ``unit_atol``
    from unit norm is a ValueError (``scale`` None); with it, rows off by more are divided
    by their norms and ``scale`` (n_atoms,) holds the norms the code columns must be
    multiplied by to keep ``Z @ D`` (None when no row needed it)."""
    if not normalize:
        check_unit_rows(D, "D", atol=unit_atol, hint=(
            "Normalise the rows, or pass normalize=True to rescale rows and code columns "
            f"together (or loosen unit_atol={unit_atol:g})"))
        return D, None
    norms = unit_row_deviation(D, "D")
    if np.abs(norms - 1.0).max() > unit_atol:
        return D / norms[:, None], norms
    return D, None
