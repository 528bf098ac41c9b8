"""The active entries of a batch's codes, and every product of an SAE step computed from them.

An SAE's codes are sparse: at width 4096 and L0 near 25, under 1% of the
``(n, width)`` entries are nonzero. Only the encoder's product needs the dense
matrices; with ``f`` the codes, ``g`` the gradient at ``x_hat`` and ``h`` the
gradient at the pre-activations (nonzero only where a latent is active), the
rest of a step is a sum over the active entries ``(b, j)``::

    decoder forward    x_hat[b]    += f[b, j] W_dec[j]               (embedding_bag)
    code gradient      dL/df[b, j]  = g[b] . W_dec[j]                 (sampled_addmm)
    decoder gradient   dW_dec[j]   += f[b, j] g[b]                    (CSR^T @ dense)
    encoder gradient   dW_enc[:, j] += h[b, j] (x[b] - b_dec)         (CSR^T @ dense)
    input gradient     dL/dx[b]    += h[b, j] W_enc[:, j]             (embedding_bag)

each ``nnz * d`` multiply-adds instead of ``n * width * d``. :class:`ActiveSet`
holds the entries in CSR order and runs each product with the kernel that
measured fastest on the 2-core development CPU (``benchmarks/bench_sae.py
--kernels``: ``embedding_bag`` with per-sample weights beat a CSR product by
3x, MKL's ``sampled_addmm`` beat a gather of decoder rows by 10x, and a CSR
product with the transposed pattern beat ``index_add_`` of weighted rows by
20x; each is 8-12x faster than the dense matmul it replaces at 25 of 4096
latents active).

Entries are grouped in *bags*: a bag is a sample, or, for a dictionary read as
nested blocks (the Matryoshka SAE's prefixes), a (block, sample) pair, bag =
``block * n + sample``; each block then decodes to its own partial sum.

The selections that produce the entries of TopK and BatchTopK are here too:
:func:`row_topk` and :func:`batch_topk` give exactly what ``torch.topk`` gives
(up to which of tied values is kept) in a fraction of its time, by first
narrowing the candidates (to the groups of columns with the largest maxima, or
above a bound on the k-th value from a strided sample of the columns).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from toysae import _tuning
from toysae._kernels import flat_nonzero

__all__ = ["ActiveSet", "batch_topk", "row_topk"]


class ActiveSet:
    """The active entries of an ``(n, width)`` code matrix, in CSR order by bag.

    n, width : the code matrix's shape. n_blocks : blocks of latents (1, or the
        number of Matryoshka prefixes); ``block_ends`` the latent index where each ends.
    rows, cols : (nnz,) int64 sample and latent of each entry.
    bags : (nnz,) int64, ``block * n + row``, nondecreasing (entries are sorted by
        bag, then by latent). offsets : (n_blocks * n + 1,) CSR row pointers of the bags.
    """

    def __init__(self, flat: Tensor, n: int, width: int, block_ends: tuple[int, ...] = ()):
        """``flat``: (nnz,) sorted int64 indices ``row * width + col`` of the entries."""
        self.n, self.width = n, width
        self.rows = torch.div(flat, width, rounding_mode="floor")
        self.cols = flat - self.rows * width
        self.flat = flat
        self.n_blocks = 1
        if block_ends and block_ends[0] < width:
            ends = torch.tensor(block_ends[:-1], dtype=torch.int64, device=flat.device)
            block = torch.searchsorted(ends, self.cols, right=True)
            self.n_blocks = len(block_ends)
            bags = block * n + self.rows
            # a stable sort by bag keeps each bag's latents in increasing order
            order = torch.argsort(bags, stable=True)
            self.rows, self.cols, self.flat = self.rows[order], self.cols[order], flat[order]
            self.bags = bags[order]
        else:
            self.bags = self.rows
        self.offsets = _offsets(self.bags, self.n_blocks * n)
        self._transpose: tuple[Tensor, Tensor] | None = None

    @classmethod
    def from_codes(cls, codes: Tensor, block_ends: tuple[int, ...] = ()) -> ActiveSet:
        """The nonzero entries of a contiguous ``(n, width)`` tensor."""
        n, width = codes.shape
        return cls(flat_nonzero(codes), n, width, block_ends)

    @property
    def nnz(self) -> int:
        return self.flat.numel()

    @property
    def n_bags(self) -> int:
        return self.n_blocks * self.n

    def gather(self, dense: Tensor) -> Tensor:
        """(nnz,) the entries of an ``(n, width)`` tensor (any strides, e.g. an expanded
        constant gradient)."""
        if dense.is_contiguous():
            return dense.reshape(-1).index_select(0, self.flat)
        return dense[self.rows, self.cols]

    def scatter(self, values: Tensor, out: Tensor) -> Tensor:
        """Add (nnz,) ``values`` into the ``(n, width)`` tensor ``out`` at the entries."""
        return out.index_put_((self.rows, self.cols), values, accumulate=True)

    def decode(self, values: Tensor, W_dec: Tensor) -> Tensor:
        """(n_bags, d): each bag's ``sum_e values[e] W_dec[col_e]`` (embedding_bag)."""
        return F.embedding_bag(self.cols, W_dec, self.offsets, mode="sum",
                               per_sample_weights=values, include_last_offset=True)

    def sampled_products(self, G: Tensor, W_dec: Tensor, add: Tensor | None = None) -> Tensor:
        """(nnz,) ``G[bag_e] . W_dec[col_e]`` (+ ``add``): ``G @ W_dec^T`` at the entries only.

        G : (n_bags, d). MKL's sampled dense-dense product on the CSR pattern.
        """
        pattern = _csr(self.offsets, self.cols, G.new_zeros(self.nnz) if add is None else add,
                       (self.n_bags, self.width))
        return torch.sparse.sampled_addmm(pattern, G, W_dec.T,
                                          beta=0.0 if add is None else 1.0).values()

    def latent_products(self, values: Tensor, X: Tensor, out: Tensor, *,
                        by_bag: bool = True) -> Tensor:
        """``out`` (width, d) = for each latent ``j``, ``sum_{e: col_e = j} values[e] X[.]``.

        ``X[bag_e]`` (X (n_bags, d)) with ``by_bag``, else ``X[row_e]`` (X (n, d)). It is the
        transposed pattern times ``X``: a CSR product, written into ``out``.
        """
        perm, t_offsets = self._transposed()
        src = self.bags if by_bag else self.rows
        pattern = _csr(t_offsets, src.index_select(0, perm), values.index_select(0, perm),
                       (self.width, X.shape[0]))
        # addmm with beta=0 into ``out``: torch.mm(out=...) zero-fills a fresh temporary and
        # copies it over (3x the time, and fresh multi-MB buffers page-fault here)
        return torch.addmm(out, pattern, X, beta=0.0, out=out)

    def sample_products(self, values: Tensor, M: Tensor) -> Tensor:
        """(n, d): for each sample ``b``, ``sum_{e: row_e = b} values[e] M[col_e]`` (M (width,
        d), any strides): the code matrix times ``M``, summed over blocks (an
        embedding_bag over a contiguous copy of ``M``, faster than a CSR product)."""
        out = self.decode(values, M.contiguous())
        return out if self.n_blocks == 1 else out.view(self.n_blocks, self.n, -1).sum(0)

    def latent_sums(self, values: Tensor) -> Tensor:
        """(width,) the sum of ``values`` over each latent's entries."""
        return values.new_zeros(self.width).index_add_(0, self.cols, values)

    def merged(self, values: Tensor, other: ActiveSet,
               other_values: Tensor) -> tuple[ActiveSet, Tensor]:
        """The union of two entry sets of the same shape (one block) and their values,
        summed where an entry is in both."""
        flat, order = torch.cat([self.flat, other.flat]).sort(stable=True)
        both = torch.cat([values, other_values]).index_select(0, order)
        flat, slot = torch.unique_consecutive(flat, return_inverse=True)
        summed = both.new_zeros(flat.numel()).index_add_(0, slot, both)
        return ActiveSet(flat, self.n, self.width), summed

    def _transposed(self) -> tuple[Tensor, Tensor]:
        """(the stable permutation that sorts the entries by latent, its CSR row pointers)."""
        if self._transpose is None:
            perm = _stable_argsort(self.cols, self.width)
            self._transpose = perm, _offsets(self.cols.index_select(0, perm), self.width)
        return self._transpose


def _stable_argsort(index: Tensor, bound: int) -> Tensor:
    """``torch.argsort(index, stable=True)`` for an int64 ``index`` in ``[0, bound)``.

    On the CPU, an index below 2^16 is sorted as uint16 by numpy, whose stable sort of
    16-bit integers is a radix sort: 0.1 ms against torch's 0.75 ms for the 25,000
    entries of a 1024 x 4096 batch at L0 25 (``benchmarks/bench_sae.py --kernels``).
    """
    if index.device.type != "cpu" or bound > 1 << 16:
        return torch.argsort(index, stable=True)
    return torch.from_numpy(index.to(torch.uint16).numpy().argsort(kind="stable"))


def _sort_rows(index: Tensor) -> Tensor:
    """Each row of a 2-d int64 ``index`` sorted ascending (``index.sort(dim=1).values``).

    On the CPU by numpy: 0.05 ms against torch's 0.3 ms for a 1024 x 25 index (torch's
    sort of short rows pays a fixed cost per row).
    """
    if index.device.type != "cpu":
        return index.sort(dim=1).values
    return torch.from_numpy(np.sort(index.numpy(), axis=1))


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """A CSR tensor of trusted indices (torch warns once that CSR support is in beta)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def _offsets(sorted_index: Tensor, n: int) -> Tensor:
    """(n + 1,) CSR pointers of a nondecreasing index in ``[0, n)``."""
    out = sorted_index.new_zeros(n + 1)
    torch.cumsum(torch.bincount(sorted_index, minlength=n), 0, out=out[1:])
    return out


# -- selections -------------------------------------------------------------------
def row_topk(pre: Tensor, k: int, *, by_column: bool = False) -> tuple[Tensor, Tensor]:
    """``pre.topk(k, dim=1)``: the (n, k) values and their columns, each row's sorted by
    value, descending, or with ``by_column`` by column, ascending (the order of CSR rows).

    The same values as ``torch.topk``; which of several tied values is kept may
    differ. A wide row is cut into ``g = TOPK_GROUPS`` interleaved groups of
    columns (column ``j`` in group ``j mod (width / g)``); only the ``k`` groups with
    the largest maxima can hold the row's ``k`` largest values (a group holding one
    of them has a maximum at least the k-th value, and at most ``k - 1`` other
    groups can beat it), so the exact top-k runs on their ``g * k`` entries alone.
    Both selections are by threshold (:func:`_top_positions`).
    """
    n, width = pre.shape
    g = _tuning.TOPK_GROUPS
    if width % g or width < _tuning.TOPK_FAST_MIN_RATIO * k or \
            n * width < _tuning.TOPK_FAST_MIN_ENTRIES:
        values, columns = pre.topk(k, dim=1)
        if by_column:
            columns, order = columns.sort(dim=1)
            values = values.gather(1, order)
        return values, columns
    span = width // g
    pre = pre.contiguous()
    best = _top_positions(pre.view(n, g, span).amax(dim=1), k)
    # group b's columns b, b + span, ...: ascending within each row, as ``best`` is
    columns = (best[:, None, :]
               + torch.arange(0, width, span, device=pre.device)[None, :, None]).reshape(n, -1)
    candidates = pre.gather(1, columns)
    pos = _top_positions(candidates, k)
    values, columns = candidates.gather(1, pos), columns.gather(1, pos)
    if not by_column:
        values, order = values.sort(dim=1, descending=True)
        columns = columns.gather(1, order)
    return values, columns


def _top_positions(v: Tensor, k: int) -> Tensor:
    """(n, k) int64: the positions of the ``k`` largest entries of each row of ``v``,
    ascending.

    On the CPU (float32 and float64) and for rows of at most ``TOPK_SORT_MAX_WIDTH``,
    every entry at or above the row's k-th largest value, found by numpy's sort
    (vectorised: 0.65 ms for 1024 rows of 512 against 2.3 ms for ``torch.topk``):
    exactly ``k`` of them unless values tie there or a row holds a NaN, and then (or
    on other devices) ``torch.topk``. Wider CPU rows are narrowed by groups first, as
    in :func:`row_topk` (the group maxima of a 16,384-latent TopK SAE's rows).
    """
    n, m = v.shape
    cpu = v.device.type == "cpu" and v.dtype in (torch.float32, torch.float64) and n
    if cpu and m > _tuning.TOPK_SORT_MAX_WIDTH:
        return row_topk(v, k, by_column=True)[1]
    if cpu:
        values = v.detach().numpy()  # positions carry no gradient
        kth = np.sort(values, axis=1)[:, m - k, None]
        flat = np.flatnonzero(values >= kth)
        if flat.size == n * k:
            # every row has at least k entries at or above its k-th value (a NaN aside):
            # with n * k in all, each has exactly k iff each block of k starts and ends
            # in its own row
            rows = np.arange(n)
            if np.array_equal(flat[::k] // m, rows) and np.array_equal(flat[k - 1::k] // m, rows):
                return torch.from_numpy(flat.reshape(n, k) - (rows * m)[:, None])
    return _sort_rows(v.topk(k, dim=1, sorted=False).indices)


def batch_topk(pre: Tensor, kept: int) -> Tensor:
    """Sorted flat indices (``row * width + col``) of the positive entries among the
    ``kept`` largest of ``relu(pre)``: what ``relu(pre).flatten().topk(kept)`` keeps,
    less the zeros it takes when fewer than ``kept`` entries are positive.

    The ``kept``-th largest value is bounded from below by the order statistic of
    every ``TOPK_SAMPLE_STRIDE``-th column with twice the share; the bound is checked
    (at least ``kept`` entries reach it), and ``torch.topk`` over all entries runs
    when the check fails, so the result is exact.
    """
    flat_pre = pre.contiguous().reshape(-1)
    total = flat_pre.numel()
    kept = min(kept, total)
    if total < _tuning.TOPK_FAST_MIN_ENTRIES or total < _tuning.TOPK_FAST_MIN_RATIO * kept:
        return _batch_topk_exact(flat_pre, kept)
    sample = pre[:, ::_tuning.TOPK_SAMPLE_STRIDE].reshape(-1)
    rank = math.ceil(2 * kept * sample.numel() / total)
    bound = float(torch.kthvalue(sample, sample.numel() - rank + 1).values)
    if bound > 0:
        cand = torch.nonzero(flat_pre >= bound).squeeze(1)
        if cand.numel() < kept:  # the bound was above the kept-th value: no shortcut
            return _batch_topk_exact(flat_pre, kept)
    else:
        cand = torch.nonzero(flat_pre > 0).squeeze(1)
        if cand.numel() <= kept:  # every positive entry is kept
            return cand
    pick = flat_pre.index_select(0, cand).topk(kept, sorted=False).indices
    chosen = cand.index_select(0, pick)
    chosen = chosen[flat_pre.index_select(0, chosen) > 0]
    return chosen.sort().values


def _batch_topk_exact(flat_pre: Tensor, kept: int) -> Tensor:
    values, idx = torch.relu(flat_pre).topk(kept, sorted=False)
    return idx[values > 0].sort().values
