"""``toysae.sae._sparse_kernels``: the active-entry kernels (products, prefix blocks), fast
row and batch top-k, and the sorts, each against torch's own."""

import pytest
import torch

from toysae import _tuning
from toysae._threads import torch_threads
from toysae.sae._fused import transposed_copy_
from toysae.sae._sparse_kernels import ActiveSet, _sort_rows, _stable_argsort, batch_topk, row_topk


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# -- kernels ----------------------------------------------------------------------
def test_active_set_products_equal_the_dense_products():
    codes = torch.relu(torch.randn(40, 300, generator=_gen(0)) - 1.5)
    codes[3] = 0.0  # an empty row
    W_dec = torch.randn(300, 7, generator=_gen(1))
    G, X = torch.randn(40, 7, generator=_gen(2)), torch.randn(40, 7, generator=_gen(3))
    add = torch.randn(40, 300, generator=_gen(4))
    active = ActiveSet.from_codes(codes)
    assert active.nnz == int((codes > 0).sum()) and 0 < active.nnz < codes.numel() // 4
    values = active.gather(codes)
    close = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(active.decode(values, W_dec), codes @ W_dec, **close)
    torch.testing.assert_close(active.sampled_products(G, W_dec),
                               (G @ W_dec.T)[codes > 0], **close)
    torch.testing.assert_close(active.sampled_products(G, W_dec, active.gather(add)),
                               (G @ W_dec.T + add)[codes > 0], **close)
    out = torch.full((300, 7), float("nan"))  # beta=0: garbage in the buffer is ignored
    torch.testing.assert_close(active.latent_products(values, X, out), codes.T @ X, **close)
    torch.testing.assert_close(active.sample_products(values, W_dec), codes @ W_dec, **close)
    torch.testing.assert_close(active.latent_sums(values), codes.sum(0), **close)
    # an expanded constant (the L1 penalty's gradient) gathers like a dense tensor
    torch.testing.assert_close(active.gather(torch.tensor(0.5).expand(40, 300)),
                               torch.full((active.nnz,), 0.5))
    scattered = torch.zeros(40, 300)
    torch.testing.assert_close(active.scatter(values, scattered), codes)


def test_active_set_blocks_decode_each_prefix_block_on_its_own():
    codes = torch.relu(torch.randn(30, 50, generator=_gen(5)) - 1.0)
    W_dec = torch.randn(50, 6, generator=_gen(6))
    ends = (8, 20, 50)
    active = ActiveSet.from_codes(codes, ends)
    assert active.n_blocks == 3 and active.n_bags == 90
    assert bool((active.bags[1:] >= active.bags[:-1]).all())
    parts = active.decode(active.gather(codes), W_dec).view(3, 30, 6)
    for part, (s, e) in zip(parts, [(0, 8), (8, 20), (20, 50)], strict=True):
        torch.testing.assert_close(part, codes[:, s:e] @ W_dec[s:e], rtol=1e-5, atol=1e-5)
    G = torch.randn(90, 6, generator=_gen(7))
    block = torch.div(active.bags, 30, rounding_mode="floor")
    expected = (G.view(3, 30, 6)[block, active.rows] * W_dec[active.cols]).sum(1)
    torch.testing.assert_close(active.sampled_products(G, W_dec), expected, rtol=1e-5,
                               atol=1e-5)
    # the encoder's product reads samples, not bags
    X = torch.randn(30, 6, generator=_gen(8))
    torch.testing.assert_close(active.latent_products(active.gather(codes), X,
                                                      torch.empty(50, 6), by_bag=False),
                               codes.T @ X, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n, width, k", [(256, 1024, 8), (300, 2048, 25), (64, 4096, 100),
                                         (64, 8192, 8), (200, 1000, 8), (8, 64, 3)])
def test_row_topk_equals_torch_topk(n, width, k):
    pre = torch.randn(n, width, generator=_gen(width))
    values, idx = row_topk(pre, k)
    ref_values, ref_idx = pre.topk(k, dim=1)
    torch.testing.assert_close(values, ref_values, rtol=0, atol=0)
    assert torch.equal(idx, ref_idx)
    # ties: equal rows of zeros and integer-valued rows keep the same values
    pre[:5] = 0.0
    pre[5:10] = pre[5:10].round()
    values, idx = row_topk(pre, k)
    torch.testing.assert_close(values, pre.topk(k, dim=1).values, rtol=0, atol=0)
    torch.testing.assert_close(pre.gather(1, idx), values, rtol=0, atol=0)
    assert all(len(set(row.tolist())) == k for row in idx)
    # by column: the same entries, each row's in ascending column order; a NaN counts as
    # the largest value, as in torch.topk
    pre[-1, 3] = float("nan")
    ref_values, ref_idx = pre.topk(k, dim=1)
    values, idx = row_topk(pre, k, by_column=True)
    assert bool((idx[:, 1:] > idx[:, :-1]).all())
    torch.testing.assert_close(pre.gather(1, idx), values, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(values.sort(dim=1).values, ref_values.sort(dim=1).values,
                               rtol=0, atol=0, equal_nan=True)
    assert torch.equal(idx[10:], ref_idx[10:].sort(dim=1).values)
    # an input that requires a gradient (the reference forward's) selects the same entries
    assert torch.equal(row_topk(pre.requires_grad_(), k, by_column=True)[1], idx)


@pytest.mark.parametrize("bound", [7, 4096, 1 << 16, (1 << 16) + 1, 1 << 20])
def test_stable_argsort_is_torchs_stable_argsort(bound):
    # many ties: the order among equal keys is the input order, on the radix route
    # (bound <= 2^16) and on torch's
    index = torch.randint(0, bound, (5000,), generator=_gen(bound))
    index[:10] = bound - 1
    assert torch.equal(_stable_argsort(index, bound), torch.argsort(index, stable=True))


def test_sort_rows_and_the_blocked_transposed_copy_equal_torchs():
    index = torch.randint(0, 5000, (33, 25), generator=_gen(11))
    assert torch.equal(_sort_rows(index), index.sort(dim=1).values)
    src = torch.randn(2 * _tuning.TRANSPOSE_BLOCK + 5, 9, generator=_gen(12))  # a partial block
    out = torch.full((9, src.shape[0]), float("nan"))
    assert transposed_copy_(out, src) is out and torch.equal(out, src.T)
    out.fill_(float("nan"))
    assert torch.equal(transposed_copy_(out, src, rows=4), src.T)  # the benchmark's sizes


def test_batch_topk_keeps_what_the_flat_topk_keeps():
    def reference(pre, kept):
        values, idx = torch.relu(pre).flatten().topk(kept)
        return idx[values > 0].sort().values

    pre = torch.randn(512, 1024, generator=_gen(9))
    for kept in (512 * 4, 512 * 16):
        assert torch.equal(batch_topk(pre, kept), reference(pre, kept))
    # fewer positive entries than kept: every positive one, and no zero
    sparse = torch.where(torch.rand(512, 1024, generator=_gen(10)) < 0.002, pre.abs() + 0.1,
                         -1.0)
    assert torch.equal(batch_topk(sparse, 512 * 8), (sparse > 0).flatten().nonzero()[:, 0])
    # a strided sample that overestimates the kept-th value: the check catches it
    skewed = torch.randn(512, 1024, generator=_gen(11)) - 3.0
    skewed[:40, ::8] = 100.0 + torch.rand(40, 128, generator=_gen(12))
    assert torch.equal(batch_topk(skewed, 512 * 16), reference(skewed, 512 * 16))
