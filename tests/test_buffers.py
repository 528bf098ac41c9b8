"""``toysae._buffers``: fresh aligned host memory, and the scratch-buffer ``Workspace``:
aligned and sized buffers, shared aligned input, no buffer handed out twice, pickling,
solves unchanged by reuse."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from problems import gram_problem

from toysae._buffers import Workspace, host_empty
from toysae.dictlearn.lasso._working_set import working_set_prox_grad


def test_host_empty_is_fresh_aligned_memory():
    for dtype, shape in ((torch.float32, (33, 17)), (torch.bool, (5, 3)), (torch.float64, (0,))):
        a, b = host_empty(shape, dtype), host_empty(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.is_contiguous()
        assert a.data_ptr() % 64 == 0
        if a.numel():
            assert a.data_ptr() != b.data_ptr()
    big = host_empty((1 << 20,), torch.float32).fill_(2.0)  # its block outlives the call
    assert float(big.sum()) == 2.0 * (1 << 20)


def test_workspace_buffers_are_aligned_and_sized():
    ws = Workspace()
    for dtype in (torch.float32, torch.float64):
        buf = ws.empty(f"a{dtype}", (33, 17), dtype)
        assert buf.shape == (33, 17) and buf.dtype == dtype
        assert buf.data_ptr() % 64 == 0
        assert bool((ws.zeros(f"z{dtype}", (5, 3), dtype) == 0).all())


def test_workspace_copy_shares_aligned_input_and_converts_the_rest():
    ws = Workspace()
    aligned = ws.empty("aligned", (4, 6), torch.float32).numpy()
    aligned[:] = 1.5
    shared = ws.copy("x", aligned, torch.float32)
    assert shared.data_ptr() == aligned.ctypes.data
    assert "x" not in ws.held()  # nothing was taken
    x64 = np.arange(24, dtype=np.float64).reshape(4, 6)
    converted = ws.copy("x", x64, torch.float32)
    assert converted.dtype == torch.float32 and converted.data_ptr() % 64 == 0
    np.testing.assert_array_equal(converted.numpy(), x64.astype(np.float32))


def test_workspace_never_hands_out_a_buffer_twice_while_it_is_held():
    ws = Workspace()
    first = ws.empty("g", (1000, 8), torch.float32)
    address = first.data_ptr()
    with pytest.raises(RuntimeError, match="'g' is still in use"):
        ws.empty("g", (1000, 8), torch.float32)
    other = ws.empty("h", (1000, 8), torch.float32)  # another name: other memory
    assert abs(other.data_ptr() - address) >= 1000 * 8 * 4
    ws.release("g")
    again = ws.empty("g", (500, 8), torch.float32)  # released: the same memory, reused
    assert again.data_ptr() == address
    bigger = ws.empty("big", (10, 10), torch.float64)
    ws.release("big")
    grown = ws.empty("big", (100, 100), torch.float64)  # too small: grown, not overrun
    assert grown.numel() == 10_000 and grown.data_ptr() % 64 == 0
    del bigger
    # A session gives back exactly the names taken inside it.
    with ws.session():
        ws.empty("inner", (3,), torch.float32)
        assert "inner" in ws.held()
    assert ws.held() == {"g", "h", "big"}
    plain = Workspace(reuse=False)
    assert plain.empty("g", (4,), torch.float32).shape == (4,)
    with pytest.raises(RuntimeError, match="still in use"):  # the same rule without reuse
        plain.empty("g", (4,), torch.float32)
    assert plain.nbytes == 0  # plain torch.empty: nothing kept
    # Off the CPU the device's own caching allocator reuses memory: plain torch.empty.
    meta = ws.empty("g", (3, 4), torch.float32, device="meta")
    assert meta.device.type == "meta" and ws.held() == {"g", "h", "big"}


def test_workspace_pickles_empty_and_solves_are_unchanged_by_reuse():
    import pickle

    C, G = gram_problem(5)
    ws = Workspace()
    kw = dict(nonneg=True, accelerate=True, max_iter=5000, tol=1e-10, init=None, scale=0.1)
    a = working_set_prox_grad(C, G, 0.1, workspace=ws, **kw)
    assert ws.held() == frozenset() and ws.nbytes > 0  # everything given back
    b = working_set_prox_grad(C, G, 0.1, workspace=ws, **kw)
    c = working_set_prox_grad(C, G, 0.1, workspace=Workspace(reuse=False), **kw)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.codes, c.codes)
    copy = pickle.loads(pickle.dumps(ws))
    assert isinstance(copy, Workspace) and copy.nbytes == 0
