"""Sparse codes of a streamed check, kept on disk between its two passes.

The first pass of ``check_sae_files`` re-solves the optimal codes batch by batch;
the second needs them again, block by block, and re-solving would double the
dominant cost. They are appended to three flat files in a temporary directory
(CSR: values, column indices, row pointers) and read back with positioned reads,
so memory holds one block, whatever the file's length; the directory is deleted
when the store is closed.

A check killed outright (SIGKILL, out of memory) cannot delete its store. Every
store is a new directory, so a rerun never reads an old one, half-written or
not: it starts clean. The directory's name says which process on which machine
owns it (``toysae-codes-<pid>-<host digest>-...``), and a new store removes, in
the same parent directory, those whose owner on this machine is no longer running.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

_FILES = {"data": np.dtype("<f8"), "indices": np.dtype("<i4"), "indptr": np.dtype("<i8")}
_PREFIX = "toysae-codes-"
_OWNED = re.compile(re.escape(_PREFIX) + r"(\d+)-([0-9a-f]{8})-")


def _host_digest() -> str:
    """Eight hex digits naming this machine (a shared temporary folder may hold the
    stores of processes on other machines, whose liveness cannot be seen from here)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_orphaned_stores(parent: str | os.PathLike) -> list[Path]:
    """Delete the store directories in ``parent`` whose owning process on this machine
    has ended without deleting them (killed outright); their paths. Stores of running
    processes, of other machines and of other users are left alone."""
    removed = []
    host = _host_digest()
    try:
        entries = sorted(Path(parent).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _OWNED.match(entry.name)
        if (match and match.group(2) == host and not _running(int(match.group(1)))
                and entry.is_dir() and not entry.is_symlink()):
            shutil.rmtree(entry, ignore_errors=True)
            if not entry.exists():
                removed.append(entry)
    return removed


class CodeStore:
    """CSR rows appended in order (:meth:`append`), then read as ``store[a:b]``.

    ``directory``: where the temporary directory goes (None: the system's).
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, n_samples: int, n_atoms: int, directory: str | os.PathLike | None = None):
        self.shape = (int(n_samples), int(n_atoms))
        parent = tempfile.gettempdir() if directory is None else str(directory)
        remove_orphaned_stores(parent)
        self._tmp = tempfile.TemporaryDirectory(
            prefix=f"{_PREFIX}{os.getpid()}-{_host_digest()}-", dir=parent)
        self.root = Path(self._tmp.name)
        self._writers = {name: open(self.root / name, "wb") for name in _FILES}
        self._writers["indptr"].write(np.zeros(1, _FILES["indptr"]).tobytes())
        self.n_rows = 0
        self.nnz = 0

    def append(self, Z: sp.csr_matrix) -> None:
        """The codes of the next ``Z.shape[0]`` samples (CSR, sorted indices, no zeros)."""
        if self._writers is None:
            raise RuntimeError("CodeStore.append after the store was closed for writing")
        self._writers["data"].write(np.ascontiguousarray(Z.data, _FILES["data"]).tobytes())
        self._writers["indices"].write(
            np.ascontiguousarray(Z.indices, _FILES["indices"]).tobytes())
        self._writers["indptr"].write((Z.indptr[1:].astype(_FILES["indptr"]) + self.nnz)
                                      .tobytes())
        self.n_rows += Z.shape[0]
        self.nnz += Z.nnz

    def finish(self) -> None:
        """Close the files for writing; every sample must have been appended."""
        if self._writers is None:
            return
        for f in self._writers.values():
            f.close()
        self._writers = None
        if self.n_rows != self.shape[0]:
            raise RuntimeError(f"CodeStore holds {self.n_rows} rows, expected {self.shape[0]}")

    def _read(self, name: str, start: int, count: int) -> np.ndarray:
        dtype = _FILES[name]
        with open(self.root / name, "rb") as f:
            f.seek(start * dtype.itemsize)
            out = np.fromfile(f, dtype=dtype, count=count)
        if out.size != count:
            raise RuntimeError(f"CodeStore: short read of {name} ({out.size} of {count})")
        return out

    def __getitem__(self, index: slice) -> sp.csr_matrix:
        if self._writers is not None:
            self.finish()
        start, stop, step = index.indices(self.shape[0])
        if step != 1:
            raise TypeError("codes are read by contiguous row slices, Z[a:b]")
        stop = max(start, stop)
        indptr = self._read("indptr", start, stop - start + 1)
        lo, hi = int(indptr[0]), int(indptr[-1])
        return sp.csr_matrix((self._read("data", lo, hi - lo),
                              self._read("indices", lo, hi - lo), indptr - lo),
                             shape=(stop - start, self.shape[1]))

    def close(self) -> None:
        """Close the files and delete the temporary directory."""
        if self._writers is not None:
            for f in self._writers.values():
                f.close()
            self._writers = None
        self._tmp.cleanup()

    def __enter__(self) -> CodeStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
