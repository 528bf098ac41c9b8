"""Activations on disk, read a block of rows at a time.

Three layouts (docs/theory.md, "Checking an SAE on files"):

- a ``.npy`` file (opened with ``np.load(mmap_mode="r")`` to read and check its
  header; C-ordered rows are then read with positioned reads into a fresh buffer,
  so pages of the file do not pile up in the process's memory);
- a ``.safetensors`` file holding exactly one tensor (its JSON header is parsed
  here and rows are read at their byte offsets; nothing is unpickled);
- a directory of such shards, taken in sorted file-name order and concatenated
  along the rows.

An array of shape ``(..., d)`` counts as ``prod(...)`` rows of ``d`` values (a
``(batch, context, d)`` cache reads as ``batch * context`` activations). Rows come
back as float64. Memory is the block read, never the file.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

SHARD_SUFFIXES = (".npy", ".safetensors")
#: safetensors dtype names -> numpy dtypes (bfloat16 is widened by hand).
_SAFETENSORS_DTYPES = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"),
                       "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}
_HEADER_LIMIT = 100 * 2 ** 20  # a safetensors header longer than this is not a real one


class _Shard:
    """One file of rows: ``n_rows`` rows of ``d`` values of ``dtype`` at ``offset``."""

    def __init__(self, path: Path, shape: tuple, dtype: np.dtype, offset: int,
                 fortran: bool = False, widen_bf16: bool = False):
        if len(shape) < 2:
            raise ValueError(f"{path}: activations must have at least 2 dimensions (rows, d), "
                             f"got shape {shape}")
        if not (np.issubdtype(dtype, np.floating) or widen_bf16):
            raise ValueError(f"{path}: activations must be floating point, got dtype {dtype}")
        self.path, self.dtype, self.offset = path, dtype, offset
        self.d = int(shape[-1])
        self.n_rows = int(np.prod(shape[:-1]))
        self.fortran, self.widen_bf16 = fortran, widen_bf16
        if self.d == 0:
            raise ValueError(f"{path}: activations have d = 0 (shape {shape})")
        size = path.stat().st_size
        need = offset + self.n_rows * self.d * dtype.itemsize
        if size < need:
            raise ValueError(f"{path} is truncated: shape {shape} needs {need} bytes, the file "
                             f"has {size}")
        self._memmap = None

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as float64 (a new array)."""
        if self.fortran:  # rows are not contiguous: slice a read-only mapping
            if self._memmap is None:
                self._memmap = np.load(self.path, mmap_mode="r").reshape(-1, self.d,
                                                                         order="F")
            return np.array(self._memmap[start:stop], dtype=np.float64)
        row_bytes = self.d * self.dtype.itemsize
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * row_bytes)
            raw = np.fromfile(f, dtype=self.dtype, count=(stop - start) * self.d)
        if raw.size != (stop - start) * self.d:
            raise ValueError(f"{self.path}: could not read rows {start}-{stop - 1} (file "
                             "changed or truncated while reading)")
        if self.widen_bf16:  # bfloat16 is the top half of a float32
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float64).reshape(stop - start, self.d)


def _npy_shard(path: Path) -> _Shard:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{path} is not a readable .npy array: {err}") from err
    if not isinstance(array, np.memmap):
        raise ValueError(f"{path} is not a plain .npy array (got {type(array).__name__})")
    fortran = bool(array.flags.f_contiguous and not array.flags.c_contiguous)
    return _Shard(path, tuple(array.shape), array.dtype, int(array.offset), fortran=fortran)


def _safetensors_shard(path: Path) -> _Shard:
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path} is not a safetensors file (shorter than its header)")
        (length,) = struct.unpack("<Q", head)
        if length > min(_HEADER_LIMIT, path.stat().st_size - 8):
            raise ValueError(f"{path} is not a safetensors file (header length {length})")
        try:
            header = json.loads(f.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not a safetensors file (bad JSON header: {err})") from err
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a safetensors file (header is not a JSON object)")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if len(tensors) != 1:
        raise ValueError(f"{path} must hold exactly one tensor of activations, found "
                         f"{len(tensors)}: {sorted(tensors)[:5]}")
    (name, info), = tensors.items()
    try:
        kind, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: tensor {name!r} has a malformed header entry {info!r}") from err
    if kind not in _SAFETENSORS_DTYPES:
        raise ValueError(f"{path}: activations must be floating point (F16, BF16, F32, F64), "
                         f"tensor {name!r} is {kind}")
    dtype = _SAFETENSORS_DTYPES[kind]
    if end - begin != int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(f"{path}: tensor {name!r} of shape {shape} and dtype {kind} does not "
                         f"span its byte range {begin}-{end}")
    return _Shard(path, shape, dtype, 8 + length + begin, widen_bf16=kind == "BF16")


def _shard(path: Path) -> _Shard:
    if path.suffix == ".npy":
        return _npy_shard(path)
    if path.suffix == ".safetensors":
        return _safetensors_shard(path)
    raise ValueError(f"activations must be a .npy or .safetensors file or a directory of "
                     f"them, got {path}")


class Activations:
    """The rows of one activation file or shard directory (see the module docstring).

    ``X[a:b]`` (or :meth:`read`) gives rows ``a:b`` as a new float64 array and raises
    ValueError naming the file and row of any NaN or Inf; ``n_samples``, ``d`` and
    ``shape`` describe the whole; ``rows_read`` counts the rows read so far and
    ``largest_read`` the largest block (what a caller's memory depends on).
    """

    def __init__(self, path: str | os.PathLike):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"activations must be a path, got {type(path).__name__}")
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no activations at {self.path}")
        if self.path.is_dir():
            files = sorted(p for p in self.path.iterdir()
                           if p.suffix in SHARD_SUFFIXES and p.is_file())
            if not files:
                raise ValueError(f"{self.path} holds no .npy or .safetensors shards")
        else:
            files = [self.path]
        self.shards = [_shard(f) for f in files]
        d = {s.d for s in self.shards}
        if len(d) > 1:
            first = self.shards[0]
            odd = next(s for s in self.shards if s.d != first.d)
            raise ValueError(f"shards of {self.path} differ in d: {first.path.name} has "
                             f"{first.d}, {odd.path.name} has {odd.d}")
        self.d = self.shards[0].d
        self.bounds = np.cumsum([0] + [s.n_rows for s in self.shards])
        self.n_samples = int(self.bounds[-1])
        if self.n_samples == 0:
            raise ValueError(f"{self.path} holds no activations (0 rows)")
        self.rows_read = 0
        self.largest_read = 0

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_samples, self.d)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (clipped to the file) as float64, checked finite."""
        start, stop = max(0, int(start)), min(self.n_samples, int(stop))
        parts = []
        first = int(np.searchsorted(self.bounds, start, side="right")) - 1
        for s in range(max(first, 0), len(self.shards)):
            lo, hi = int(self.bounds[s]), int(self.bounds[s + 1])
            if lo >= stop:
                break
            a, b = max(start, lo) - lo, min(stop, hi) - lo
            if b > a:
                block = self.shards[s].read(a, b)
                bad = ~np.isfinite(block)
                if bad.any():
                    row = int(np.flatnonzero(bad.any(axis=1))[0])
                    raise ValueError(f"{self.shards[s].path}: row {a + row} of the activations "
                                     f"contains NaN or Inf")
                parts.append(block)
        if not parts:
            out = np.zeros((0, self.d))
        else:
            out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self.rows_read += len(out)
        self.largest_read = max(self.largest_read, len(out))
        return out

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("activations are read by contiguous row slices, X[a:b]")
        start, stop, _ = index.indices(self.n_samples)
        return self.read(start, stop)

    def __len__(self) -> int:
        return self.n_samples
