"""Large CPU scratch buffers, owned by the caller that reuses them: :class:`Workspace`.

Why reuse at all: on the development and CI machines (glibc, a 2-core VM) a
fresh multi-MB CPU array page-faults on first touch at about 0.5 ms per MB, and
glibc rarely reuses freed large blocks once the heap is fragmented (torch's
64-byte-aligned allocations are the usual cause): a (4096, 512) float32
scratch array costs ~4.5 ms per call to allocate and fill, more than the
arithmetic done in it.

So a solver takes its big scratch arrays from a :class:`Workspace` its caller
owns: ``sparse_code`` makes one per call (or uses the one it is given), a
``DictionaryLearner`` keeps one across all its steps. A workspace hands out
buffers *by name* ("C", "lasso.response.0", ...): the same name gets the same
memory on every call, grown when a larger one is asked for, never shrunk. A
name is *held* from :meth:`Workspace.empty` until it is released
(:meth:`Workspace.release`, or the end of the :meth:`Workspace.session` it was
taken in); asking for a held name raises instead of handing the same memory
out twice. Nothing a caller keeps (a result's codes) may live in a workspace.

Buffers are 64-byte aligned by hand: numpy aligns to 16 bytes, and BLAS writes
a 16-byte-aligned matmul output ~40% slower. ``Workspace(reuse=False)`` hands
out a plain ``torch.empty`` every time instead (no reuse, torch's alignment):
the baseline that ``benchmarks/bench_dictlearn.py`` ("scratch buffers" rows)
times the workspace against.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import torch

ALIGN = 64


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return torch.empty(0, dtype=dtype).numpy().dtype


def _aligned(raw: np.ndarray, shape: tuple[int, ...], np_dtype: np.dtype) -> torch.Tensor:
    """A ``shape`` tensor at the first 64-byte boundary of the uint8 block ``raw``."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
    offset = -raw.ctypes.data % ALIGN
    return torch.from_numpy(raw[offset:offset + nbytes].view(np_dtype).reshape(shape))


def host_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A fresh, uninitialised, 64-byte-aligned CPU tensor in numpy's memory, for a
    large array used once (no workspace to reuse it from). numpy asks Linux for
    transparent huge pages on large blocks, so first touching it faults once per
    2 MB instead of once per 4 kB as torch's own allocator does (with huge pages
    off, its default), and the alignment keeps BLAS writing into it at full speed."""
    shape = tuple(int(s) for s in shape)
    np_dtype = _numpy_dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
    return _aligned(np.empty(nbytes + ALIGN, dtype=np.uint8), shape, np_dtype)


def _on_cpu(device) -> bool:
    return device is None or torch.device(device).type == "cpu"


class Workspace:
    """Named, reused, 64-byte-aligned CPU scratch buffers of one caller.

    ``empty(name, shape, dtype)`` returns an uninitialised tensor in the
    buffer ``name`` and holds the name until ``release(name)``; ``session()``
    releases every name taken inside it when the block ends. Off the CPU
    (``device`` a GPU) it returns ``torch.empty`` (torch's caching allocator
    already reuses device memory). Pickling or copying a workspace gives an
    empty one: buffers are a cache, not state.
    """

    def __init__(self, *, reuse: bool = True):
        self.reuse = bool(reuse)
        self._blocks: dict[str, np.ndarray] = {}  # name -> raw uint8 block
        self._held: set[str] = set()
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- buffers
    def empty(self, name: str, shape: tuple[int, ...], dtype: torch.dtype,
              device=None) -> torch.Tensor:
        """An uninitialised ``shape`` tensor in buffer ``name``, held until released."""
        shape = tuple(int(s) for s in shape)
        if not _on_cpu(device):
            return torch.empty(shape, dtype=dtype, device=device)
        with self._lock:
            if name in self._held:
                raise RuntimeError(f"workspace buffer {name!r} is still in use; release it "
                                   "before asking for it again (or use another name)")
            self._held.add(name)
            if not self.reuse:
                return torch.empty(shape, dtype=dtype)
            np_dtype = _numpy_dtype(dtype)
            nbytes = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
            raw = self._blocks.get(name)
            if raw is None or raw.nbytes < nbytes + ALIGN:
                raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
                self._blocks[name] = raw
        return _aligned(raw, shape, np_dtype)

    def zeros(self, name: str, shape: tuple[int, ...], dtype: torch.dtype,
              device=None) -> torch.Tensor:
        """Zeros in buffer ``name`` (np.zeros' calloc would fault fresh pages every time)."""
        return self.empty(name, shape, dtype, device).zero_()

    def copy(self, name: str, array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        """``array`` as a CPU tensor of ``dtype``: shared (no buffer taken) when already
        aligned, C-contiguous and of that dtype, else converted into buffer ``name``."""
        if (array.dtype == _numpy_dtype(dtype) and array.flags.c_contiguous
                and array.ctypes.data % ALIGN == 0):
            return torch.from_numpy(array)
        out = self.empty(name, array.shape, dtype)
        np.copyto(out.numpy(), array, casting="unsafe")
        return out

    # ---------------------------------------------------------------- holding
    def release(self, *names: str) -> None:
        """Give ``names`` back: their memory may be handed out again."""
        with self._lock:
            self._held.difference_update(names)

    def held(self) -> frozenset[str]:
        """The names handed out and not released yet."""
        with self._lock:
            return frozenset(self._held)

    @contextlib.contextmanager
    def session(self):
        """Release, when the block ends, every name taken inside it (nested sessions
        release only their own names)."""
        before = self.held()
        try:
            yield self
        finally:
            with self._lock:
                self._held &= before

    # ---------------------------------------------------------------- bookkeeping
    @property
    def nbytes(self) -> int:
        """Bytes the workspace keeps allocated."""
        return sum(raw.nbytes for raw in self._blocks.values())

    def clear(self) -> None:
        """Free every buffer that is not held."""
        with self._lock:
            self._blocks = {k: v for k, v in self._blocks.items() if k in self._held}

    def __getstate__(self) -> dict:
        return {"reuse": self.reuse}

    def __setstate__(self, state: dict) -> None:
        self.__init__(reuse=state["reuse"])

    def __repr__(self) -> str:
        return (f"Workspace({len(self._blocks)} buffers, {self.nbytes / 2**20:.1f} MiB, "
                f"{len(self._held)} held, reuse={self.reuse})")
