"""Large CPU buffers that are cheap to allocate again and again.

On the development and CI machines (glibc, a 2-core VM), a fresh torch CPU
tensor of a few MB page-faults anew on nearly every call: torch's 64-byte
aligned allocations fragment glibc's heap, so freed blocks are rarely reused
(measured: ~4.5 ms to allocate and fill a (4096, 512) float32 tensor, against
~0.2 ms for memory from numpy, which glibc does recycle). Solvers that allocate
several such arrays per call take their big buffers from here instead.

numpy aligns to 16 bytes only, and BLAS writes a 16-byte-aligned matmul output
~40% slower than a 64-byte-aligned one, so the buffers are re-aligned by hand.
"""

from __future__ import annotations

import numpy as np
import torch

_ALIGN = 64


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return torch.empty(0, dtype=dtype).numpy().dtype


def host_empty(shape: tuple[int, ...], dtype: torch.dtype, device=None) -> torch.Tensor:
    """An uninitialised tensor; on the CPU, 64-byte-aligned memory from numpy."""
    if device is not None and torch.device(device).type != "cpu":
        return torch.empty(shape, dtype=dtype, device=device)
    np_dtype = _numpy_dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
    raw = np.empty(nbytes + _ALIGN, dtype=np.uint8)
    offset = -raw.ctypes.data % _ALIGN
    return torch.from_numpy(raw[offset:offset + nbytes].view(np_dtype).reshape(shape))


def host_zeros(shape: tuple[int, ...], dtype: torch.dtype, device=None) -> torch.Tensor:
    """Zeros; on the CPU, in memory from :func:`host_empty` (np.zeros' calloc would
    hand out fresh, faulting pages every time)."""
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
