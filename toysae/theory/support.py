"""Sums over the supports of the codes, one chunk of samples at a time.

Three things every large-dictionary check needs and none needs all
``n_atoms**2`` pairs for (docs/theory.md, "Large dictionaries"):

- :class:`SampleSums`: the residual moments ``R_k = sum_n z_nk r_n``, the residual
  sum and square, and each atom's code mass and firing count. They need no
  responses ``s = r D^T / lam``, only the residuals, so a pass that collects them
  costs about two sparse products per chunk.
- :func:`pair_rows`: for a list of ordered pairs ``(i, j)``, every sample of the
  chunk where ``i`` fires, laid out pair after pair, so a per-pair reduction over
  ``supp z_i`` (a hull minimum, a co-firing count) is one gather and one
  ``reduceat``. Its size is the sum of the pairs' support sizes, never
  ``n_samples * n_pairs``.
- :class:`NestingTracker`: the pairs with ``supp z_i`` inside ``supp z_j``. A parent
  ``j`` of ``i`` fires on every sample of ``i``, so on the first one: the candidate
  parents of ``i`` are the atoms of that one sample, and each later sample of ``i``
  can only remove candidates. Memory is at most ``n_atoms`` times the largest L0.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from toysae._tuning import CHECK_CHUNK_ENTRIES


class SampleSums:
    """Residual moments and support counts accumulated over chunks of samples.

    After every chunk has been added: ``R`` (n_atoms, d) is ``sum_n z_nk r_n``,
    ``residual_sum`` (d,) is ``sum_n r_n``, ``squared_residual`` is
    ``sum_n ||r_n||^2``, ``l1`` is ``sum_nk |z_nk|``, ``mass`` (n_atoms,) is
    ``sum_n |z_nk|`` and ``count`` (n_atoms,) the number of samples where atom k fires.
    """

    def __init__(self, n_atoms: int, d: int):
        self.R = np.zeros((n_atoms, d))
        self.residual_sum = np.zeros(d)
        self.squared_residual = 0.0
        self.l1 = 0.0
        self.mass = np.zeros(n_atoms)
        self.count = np.zeros(n_atoms, dtype=np.int64)
        self.n_samples = 0

    def add(self, Z: sp.csr_matrix, R: np.ndarray) -> None:
        """Codes ``Z`` (m, n_atoms) and residuals ``R`` (m, d) of one chunk."""
        k = self.mass.size
        self.R += Z.T @ R
        self.residual_sum += R.sum(axis=0)
        self.squared_residual += float(np.einsum("ij,ij->", R, R))
        absolute = np.abs(Z.data)
        self.l1 += float(absolute.sum())
        self.mass += np.bincount(Z.indices, weights=absolute, minlength=k)
        self.count += np.bincount(Z.indices, minlength=k)
        self.n_samples += Z.shape[0]


class PairRows(NamedTuple):
    """The samples of one chunk where each pair's first atom fires, pair after pair.

    ``active`` (A,) are the indices (into the pair list) of the pairs whose atom
    ``i`` fires in the chunk; the entries of ``active[a]`` are
    ``starts[a]:starts[a + 1]``; per entry ``pair`` (E,) is its pair index,
    ``rows`` (E,) its row in the chunk and ``z`` (E,) the code ``z_{row, i}``.
    """

    active: np.ndarray
    starts: np.ndarray
    pair: np.ndarray
    rows: np.ndarray
    z: np.ndarray

    @property
    def n_entries(self) -> int:
        return self.rows.size


def pair_rows(first: np.ndarray, Zc: sp.csc_matrix) -> PairRows:
    """:class:`PairRows` of pairs whose first atoms are ``first`` (n_pairs,), for the chunk
    codes ``Zc`` (m, n_atoms) in CSC form with sorted row indices."""
    counts = np.diff(Zc.indptr)[first]
    active = np.flatnonzero(counts)
    lengths = counts[active]
    starts = np.zeros(active.size, dtype=np.int64)
    if active.size > 1:
        np.cumsum(lengths[:-1], out=starts[1:])
    total = int(lengths.sum())
    # entry e of pair p sits at Zc.indptr[i_p] + (e - starts_p) in the CSC arrays
    pos = np.arange(total, dtype=np.int64) - np.repeat(starts - Zc.indptr[first[active]],
                                                       lengths)
    return PairRows(active=active, starts=starts, pair=np.repeat(active, lengths),
                    rows=Zc.indices[pos], z=Zc.data[pos])


def row_dots(A: np.ndarray, B: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``A[first[p]] . B[second[p]]`` for every pair ``p``, in blocks of pairs (gathering
    all rows at once would hold two (n_pairs, d) copies)."""
    out = np.empty(len(first))
    block = max(1, CHECK_CHUNK_ENTRIES // max(1, A.shape[1]))
    for a in range(0, len(first), block):
        f, s = first[a:a + block], second[a:a + block]
        out[a:a + block] = np.einsum("pd,pd->p", A[f], B[s])
    return out


def csc_sorted(Z: sp.csr_matrix) -> sp.csc_matrix:
    """``Z`` in CSC form with sorted row indices (what :func:`pair_rows` needs)."""
    C = Z.tocsc()
    C.sort_indices()
    return C


class NestingTracker:
    """Ordered pairs ``(i, j)``, ``i != j``, whose supports are nested: ``supp z_i`` inside
    ``supp z_j``, found in one pass over the samples (any chunking).

    Besides the pairs it keeps what the hierarchy certificate needs from the same
    samples: ``ratio`` = ``min |z_nj| / |z_ni|`` over ``supp z_i`` (the step's
    ``eps*``) and whether ``sign(z_ni z_nj)`` is constant there (``sign``: +1 or -1,
    0 when it varies). Exact: a pair survives iff ``j`` fires on every sample of
    ``i`` seen.
    """

    def __init__(self, n_atoms: int):
        self.n_atoms = n_atoms
        self.seen = np.zeros(n_atoms, dtype=bool)
        self.child = np.zeros(0, dtype=np.int64)
        self.parent = np.zeros(0, dtype=np.int64)
        self.ratio = np.zeros(0)
        self._sign_low = np.zeros(0, dtype=np.int8)
        self._sign_high = np.zeros(0, dtype=np.int8)

    def add(self, Z: sp.csr_matrix) -> None:
        """The codes ``Z`` (m, n_atoms) of the next chunk of samples."""
        C = csc_sorted(Z)
        counts = np.diff(C.indptr)
        new = np.flatnonzero((counts > 0) & ~self.seen)
        if new.size:
            self._start(new, C, Z)
        if self.child.size == 0:
            return
        rows = pair_rows(self.child, C)
        if rows.n_entries == 0:
            return
        zj = lookup(Z, rows.rows, self.parent[rows.pair])
        on = zj != 0
        starts, act = rows.starts, rows.active
        keep = np.ones(self.child.size, dtype=bool)
        keep[act] = np.logical_and.reduceat(on, starts)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.abs(zj) / np.abs(rows.z)
        self.ratio[act] = np.minimum(self.ratio[act], np.minimum.reduceat(ratio, starts))
        sign = np.sign(rows.z * zj).astype(np.int8)
        self._sign_low[act] = np.minimum(self._sign_low[act], np.minimum.reduceat(sign, starts))
        self._sign_high[act] = np.maximum(self._sign_high[act],
                                          np.maximum.reduceat(sign, starts))
        self._keep(keep)

    def _start(self, new: np.ndarray, C: sp.csc_matrix, Z: sp.csr_matrix) -> None:
        # candidate parents of a new atom: every other atom of its first sample
        first_row = C.indices[C.indptr[new]]
        lengths = np.diff(Z.indptr)[first_row]
        starts = np.zeros(new.size, dtype=np.int64)
        if new.size > 1:
            np.cumsum(lengths[:-1], out=starts[1:])
        pos = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(
            starts - Z.indptr[first_row], lengths)
        child = np.repeat(new, lengths)
        parent = Z.indices[pos].astype(np.int64)
        mask = parent != child
        child, parent = child[mask], parent[mask]
        self.child = np.concatenate([self.child, child])
        self.parent = np.concatenate([self.parent, parent])
        self.ratio = np.concatenate([self.ratio, np.full(child.size, np.inf)])
        self._sign_low = np.concatenate([self._sign_low, np.full(child.size, 1, np.int8)])
        self._sign_high = np.concatenate([self._sign_high, np.full(child.size, -1, np.int8)])
        order = np.lexsort((self.parent, self.child))
        self._keep(order)
        self.seen[new] = True

    def _keep(self, index: np.ndarray) -> None:
        self.child, self.parent = self.child[index], self.parent[index]
        self.ratio = self.ratio[index]
        self._sign_low, self._sign_high = self._sign_low[index], self._sign_high[index]

    def pairs(self) -> np.ndarray:
        """(n_nested, 2) ordered pairs (child i, parent j), sorted by (i, j)."""
        return np.stack([self.child, self.parent], axis=1)

    @property
    def sign(self) -> np.ndarray:
        """(n_nested,) ``sign(z_ni z_nj)`` where constant over ``supp z_i``, else 0."""
        return np.where(self._sign_low == self._sign_high, self._sign_low, 0).astype(np.int8)


def lookup(Z: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray,
           scratch: dict | None = None) -> np.ndarray:
    """``Z[rows[e], cols[e]]`` for every entry ``e`` of a CSR matrix with sorted indices
    (0 where the code is 0): a gather from the dense block when it is small
    (``CHECK_CHUNK_ENTRIES``), else a binary search of each key in the sorted keys
    ``row * n_atoms + col``.

    ``scratch``: a dict in which the dense block is kept between calls, zero outside
    each call (a fresh 32 MB block page-faults in: 9.5 ms per 1,024 x 4,096 chunk).
    """
    m, k = Z.shape
    query = rows.astype(np.int64) * k + cols
    if m * k <= CHECK_CHUNK_ENTRIES and scratch is None:
        return Z.toarray().ravel()[query]
    keys = np.repeat(np.arange(m, dtype=np.int64), np.diff(Z.indptr)) * k + Z.indices
    if m * k <= CHECK_CHUNK_ENTRIES:
        flat = scratch.get("lookup")
        if flat is None or flat.size < m * k:
            flat = scratch["lookup"] = np.zeros(m * k)
        Z.toarray(out=flat[:m * k].reshape(m, k))  # adds into the block: zero here
        try:
            return flat[query]
        finally:  # zero again, even when the query fails
            flat[keys] = 0.0
    at = np.minimum(np.searchsorted(keys, query), max(keys.size - 1, 0))
    out = np.zeros(query.size)
    if keys.size:
        hit = keys[at] == query
        out[hit] = Z.data[at[hit]]
    return out
