"""Large CPU buffers that are cheap to allocate again and again.

On the development and CI machines (glibc, a 2-core VM) a fresh multi-MB CPU
array page-faults on first touch at about 0.5 ms per MB, and glibc rarely
reuses freed large blocks once the heap is fragmented (torch's 64-byte-aligned
allocations are the usual cause): a (4096, 512) float32 scratch array costs
~4.5 ms per call to allocate and fill, more than the arithmetic done in it.

So solvers take their big buffers from here: blocks of at least ``MIN_POOLED``
bytes come from a small pool and go back to it by themselves once nothing
references them any more (no view, no tensor: the pool checks the block's
reference count before handing it out again). The pool holds at most
``POOL_BYTES`` of idle blocks. Blocks are 64-byte aligned by hand: numpy aligns
to 16 bytes, and BLAS writes a 16-byte-aligned matmul output ~40% slower.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import torch

_ALIGN = 64
MIN_POOLED = 1 << 20
POOL_BYTES = 256 << 20

_pool: list[np.ndarray] = []  # raw uint8 blocks, oldest first
_lock = threading.Lock()


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return torch.empty(0, dtype=dtype).numpy().dtype


def _is_idle(i: int) -> bool:
    # Two references when idle: the pool's list slot and getrefcount's argument.
    return sys.getrefcount(_pool[i]) <= 2


def _block(nbytes: int) -> np.ndarray:
    """A raw block of at least ``nbytes`` (+ alignment slack), reused when one is idle."""
    size = nbytes + _ALIGN
    if size < MIN_POOLED:
        return np.empty(size, dtype=np.uint8)
    with _lock:
        # The smallest idle block that fits without wasting more than half of it.
        fits = [i for i in range(len(_pool))
                if size <= _pool[i].nbytes <= 2 * size and _is_idle(i)]
        if fits:
            i = min(fits, key=lambda i: _pool[i].nbytes)
            raw = _pool.pop(i)
        else:
            raw = np.empty(size, dtype=np.uint8)
        _pool.append(raw)  # most recently used last
        idle = [i for i in range(len(_pool) - 1) if _is_idle(i)]
        excess = sum(_pool[i].nbytes for i in idle) - POOL_BYTES
        for i in idle:  # oldest idle blocks go first
            if excess <= 0:
                break
            excess -= _pool[i].nbytes
            _pool[i] = None
        _pool[:] = [b for b in _pool if b is not None]
        return raw


def host_empty(shape: tuple[int, ...], dtype: torch.dtype, device=None) -> torch.Tensor:
    """An uninitialised tensor; on the CPU, 64-byte-aligned and from the pool."""
    if device is not None and torch.device(device).type != "cpu":
        return torch.empty(shape, dtype=dtype, device=device)
    np_dtype = _numpy_dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
    raw = _block(nbytes)
    offset = -raw.ctypes.data % _ALIGN
    return torch.from_numpy(raw[offset:offset + nbytes].view(np_dtype).reshape(shape))


def host_zeros(shape: tuple[int, ...], dtype: torch.dtype, device=None) -> torch.Tensor:
    """Zeros in :func:`host_empty` memory (np.zeros' calloc would hand out fresh,
    faulting pages every time)."""
    return host_empty(shape, dtype, device).zero_()


def host_copy(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """``array`` as a CPU tensor of ``dtype``: shared when already aligned and of that
    dtype, else converted into a :func:`host_empty` buffer."""
    np_dtype = _numpy_dtype(dtype)
    if (array.dtype == np_dtype and array.flags.c_contiguous
            and array.ctypes.data % _ALIGN == 0):
        return torch.from_numpy(array)
    out = host_empty(array.shape, dtype)
    np.copyto(out.numpy(), array, casting="unsafe")
    return out
