"""File writes and safetensors reads.

Every file toysae writes (figures, JSON, checkpoints) goes through
:func:`atomic_path`: it is written to a temporary file beside the target,
flushed to disk (``fsync``), and renamed onto the target; the folder's entry is
flushed after the rename. A crash mid-write never leaves a half-written file
under the final name, and an exception never leaves the temporary file behind;
a process killed outright (SIGKILL) may, as a hidden file whose name says it is
one (``.NAME.<12 hex digits>...``), which nothing reads and
:func:`remove_leftover_temporaries` clears.
Files get the mode a plain ``open()`` would give them, ``0o666`` less the
process's umask (``tempfile.mkstemp`` would make every file ``0o600``).

Safetensors files are written here too (:func:`save_module_tensors`), byte for
byte deterministic, and their header is read and checked on its own
(:func:`read_safetensors_header`) before any tensor is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import struct
import sys
from pathlib import Path

# A header larger than this is refused unread (the safetensors library's own limit).
MAX_HEADER_BYTES = 100_000_000
# safetensors dtype names and their sizes in bytes.
_DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2,
                "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8,
                "F64": 8}


# The names of _create_beside's files and _mkdir_beside's folders, after the leading dot and
# the target's name: ".NAME.<hex>SUFFIX" (or ".tmp"), ".NAME.<hex>", ".NAME.old.<hex>".
_TOKEN_BYTES = 6
_TEMPORARY_TAIL = re.compile(rf"\.(?:old\.)?[0-9a-f]{{{2 * _TOKEN_BYTES}}}(?:\.[^.]+)?")


def _create_beside(path: Path) -> Path:
    """A new, empty file in ``path``'s folder, created with mode 0o666 (the kernel
    applies the umask, as for any new file) and a random hidden name."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(_TOKEN_BYTES)}"
                              f"{path.suffix or '.tmp'}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {path}")


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:  # some platforms cannot open a folder; the file itself is on disk
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path in the target's folder; on success its data is flushed
    to disk and it is renamed onto ``path``. On any exception it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_beside(path)
    try:
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise write_error(path, err) from err
        raise
    _fsync_path(path.parent, directory=True)


def write_error(path: Path, err: OSError) -> OSError:
    """An OSError of ``err``'s class and errno saying which write failed and that the
    file already at ``path`` (if any) is unchanged: a full disk, a quota or a file-size
    limit read as one line (``toysae: writing ... failed``)."""
    why = err.strerror or str(err)
    new = type(err)(f"writing {path} failed ({why}); any file already there is unchanged")
    new.errno = err.errno
    return new


def is_leftover_temporary(name: str) -> bool:
    """Whether ``name`` is that of a temporary file or folder of :func:`atomic_path` or
    :func:`atomic_directory` (``.NAME.<12 hex digits>...``)."""
    if not name.startswith(".") or len(name) < 2:
        return False
    return any(_TEMPORARY_TAIL.fullmatch(name, pos) for pos in range(2, len(name))
               if name[pos] == ".")


def remove_leftover_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders that writes into ``folder`` left behind
    when their process was killed outright (SIGKILL; any other ending removes its own),
    and return their paths. Only call it on a folder no other process is writing to:
    a live write's temporary file looks the same."""
    import shutil

    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for item in sorted(folder.iterdir()):
        if is_leftover_temporary(item.name):
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    item.unlink()
            removed.append(item)
    return removed


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, in hex (read a megabyte at a time)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


# Called as ``hook(fig, path, savefig_kwargs)`` by save_figure before it writes a figure;
# the test suite registers its figure lint here (tests/conftest.py). Empty otherwise.
FIGURE_HOOKS: list = []


def save_figure(fig, path: str | os.PathLike, **kwargs) -> Path:
    """Save a matplotlib figure atomically (format from the suffix) and close it. Each hook
    in :data:`FIGURE_HOOKS` sees the figure first."""
    import matplotlib.pyplot as plt

    path = Path(path)
    kwargs = {"dpi": 120, "bbox_inches": "tight", **kwargs}
    try:
        for hook in list(FIGURE_HOOKS):
            hook(fig, path, kwargs)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **kwargs)
    finally:
        plt.close(fig)
    return path


def save_module_tensors(module, path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """A torch module's state (parameters and buffers, on the CPU) and string ``metadata``
    in one safetensors file, written atomically; see :func:`write_safetensors`."""
    tensors = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    return write_safetensors(path, tensors, metadata)


def write_safetensors(path: str | os.PathLike, tensors: dict, metadata: dict[str, str]
                      ) -> Path:
    """Write torch ``tensors`` and string ``metadata`` as a safetensors file, atomically.

    The bytes depend only on the contents: the JSON header has sorted keys and
    no spaces (the safetensors library writes its metadata in hash order, so
    one SAE saved twice could differ), tensors follow in name order,
    little-endian, and the header is padded with spaces to a multiple of 8
    bytes, as the library does.
    """
    import torch

    if sys.byteorder != "little":  # pragma: no cover
        raise RuntimeError("safetensors files are little-endian; this machine is not")
    names = {v: k for k, v in safetensors_dtypes(torch).items()}
    header: dict = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in names:
            raise TypeError(f"tensor {name!r} has dtype {t.dtype}, which safetensors cannot "
                            "store")
        blob = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    return Path(path)


def safetensors_dtypes(torch) -> dict:
    """safetensors dtype name -> torch dtype, for the dtypes this torch has."""
    out = {"BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16,
           "F16": torch.float16, "BF16": torch.bfloat16, "I32": torch.int32,
           "F32": torch.float32, "I64": torch.int64, "F64": torch.float64}
    for name, attr in (("U16", "uint16"), ("U32", "uint32"), ("U64", "uint64"),
                       ("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2")):
        if hasattr(torch, attr):
            out[name] = getattr(torch, attr)
    return out


def read_safetensors_header(path: str | os.PathLike, what: str
                            ) -> tuple[dict[str, str], dict[str, tuple[str, tuple[int, ...]]]]:
    """(metadata, {name: (dtype, shape)}) of a safetensors file, from its header alone.

    Reads the 8-byte header length and the JSON header, nothing else, and
    checks the header against the file: a known dtype and a list of
    non-negative ints as the shape for each tensor, byte ranges that match
    the shapes and tile the data exactly to the end of the file, string
    metadata. So a caller that also checks the shapes against what it expects
    knows, before reading or allocating anything, that the tensors it will
    get are those shapes and no larger than the file. ``what`` names the
    expected content in errors: FileNotFoundError when missing, ValueError
    when truncated, inconsistent or not safetensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")

    def bad(why: str) -> ValueError:
        return ValueError(f"{path} is not a readable safetensors file (truncated or not a "
                          f"{what}?): {why}")

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad(f"{size} bytes, shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise bad(f"the header claims {n} bytes but the file has {size - 8} after "
                      f"the length (limit {MAX_HEADER_BYTES})")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise bad(f"the header is not JSON ({err})") from err
    if not isinstance(header, dict):
        raise bad(f"the header is a JSON {type(header).__name__}, not an object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise bad("its metadata is not a mapping of strings to strings")
    shapes, spans = {}, []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {name!r} has entry {entry!r}, not dtype/shape/data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _DTYPE_SIZES:
            raise bad(f"tensor {name!r} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(
                type(s) is int and s >= 0 for s in shape):
            raise bad(f"tensor {name!r} has shape {shape!r}, not a list of ints >= 0")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(type(o) is int for o in offsets)):
            raise bad(f"tensor {name!r} has data_offsets {offsets!r}")
        nbytes = math.prod(shape) * _DTYPE_SIZES[dtype]
        if offsets[1] - offsets[0] != nbytes:
            raise bad(f"tensor {name!r} of shape {shape} ({dtype}) needs {nbytes} bytes but "
                      f"its data_offsets {offsets} hold {offsets[1] - offsets[0]}")
        shapes[name] = (dtype, tuple(shape))
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for start, stop, name in sorted(spans):
        if start != end:
            raise bad(f"tensor {name!r} starts at byte {start} of the data, expected {end}")
        end = stop
    if end != size - 8 - n:
        raise bad(f"the tensors hold {end} bytes but the file has {size - 8 - n} after "
                  "the header")
    return metadata, shapes


def read_safetensors(path: str | os.PathLike, what: str) -> tuple[dict[str, str], dict]:
    """(metadata, tensors) of a safetensors file. Nothing is unpickled: the format is a
    JSON header and raw tensors; the header is checked first
    (:func:`read_safetensors_header`). ``what`` names the expected content in
    errors: FileNotFoundError when missing, ValueError when truncated or not
    safetensors."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    read_safetensors_header(path, what)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors file (truncated or not a "
                         f"{what}?): {err}") from err
    return metadata, tensors


def _mkdir_beside(path: Path, tag: str = "") -> Path:
    """A new, empty folder in ``path``'s folder with a random hidden name, created with
    mode 0o777 (the kernel applies the umask, as for any new folder; ``mkdtemp`` would
    make it 0o700)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{tag}{secrets.token_hex(_TOKEN_BYTES)}")
        try:
            os.mkdir(tmp, 0o777)
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"could not create a temporary folder beside {path}")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike):
    """Yield an empty temporary directory beside ``path``; on success it replaces ``path``.

    The files written into it are flushed to disk before the rename, the
    directory gets the mode the umask gives, and an existing ``path`` is
    swapped out and removed only once the new directory is in place (the
    caller decides whether replacing it is allowed). On an exception nothing
    changes at ``path`` and the temporary directory is removed.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _mkdir_beside(path)
    try:
        yield tmp
        for item in tmp.iterdir():
            if item.is_file():
                _fsync_path(item)
        _fsync_path(tmp, directory=True)
        if path.exists():
            old = _mkdir_beside(path, "old.")
            os.replace(path, old)  # onto an empty directory: atomic on POSIX
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise write_error(path, err) from err
        raise
    _fsync_path(path.parent, directory=True)
