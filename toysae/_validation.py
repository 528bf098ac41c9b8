"""Argument checks shared by every layer.

Each check raises a ``ValueError``/``TypeError`` that names the argument and
its offending value *before* any work starts (docs/design.md, "Conventions").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

try:  # torch is a hard dependency, but keep this module importable without it
    import torch
except ImportError:  # pragma: no cover
    torch = None


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape}"
    return repr(value)


# Seeds: ints in [0, SEED_MAX], which numpy's SeedSequence and torch's Generator.manual_seed
# (up to 2**64 - 1) both take; seeds derived from a seed stay there (shifted_seed).
SEED_MAX = 2**63 - 1


def tensor_to_numpy(t) -> np.ndarray:
    """A torch tensor as a numpy array (detached, on the CPU). Floating dtypes numpy
    has no counterpart for (bfloat16, the float8 formats) are widened to float32,
    which holds each of their values exactly."""
    t = t.detach().cpu().resolve_conj()
    if t.is_floating_point() and t.dtype not in (torch.float16, torch.float32, torch.float64):
        t = t.float()
    return t.numpy()


def to_numpy(x: Any, name: str, *, dtype=np.float64, ndim: int | None = None,
             finite: bool = True) -> np.ndarray:
    """Return ``x`` (numpy array, torch tensor or nested sequence) as a numpy array.

    ``dtype=None`` keeps a float32/float64 array as it is (no copy) and makes
    anything else float64; a bfloat16 or float8 tensor is widened exactly
    (:func:`tensor_to_numpy`). Raises ``TypeError`` for things that are not
    array-like or are complex (numpy would drop the imaginary part), and
    ``ValueError`` for a wrong number of dimensions or non-finite entries.
    """
    if torch is not None and isinstance(x, torch.Tensor):
        x = tensor_to_numpy(x)
    if isinstance(x, (str, bytes, dict)) or x is None:
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    if np.dtype(getattr(x, "dtype", np.float64)).kind == "c":
        raise TypeError(f"{name} must be real, got a complex array (dtype {x.dtype})")
    try:
        arr = np.asarray(x, dtype=dtype)
        if dtype is None and arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
    except (TypeError, ValueError) as err:
        if np.iscomplexobj(x):
            raise TypeError(f"{name} must be real, got complex entries") from err
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}") from err
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if finite and arr.size and not np.isfinite(arr).all():
        bad = int(np.size(arr) - np.isfinite(arr).sum())
        raise ValueError(f"{name} contains {bad} NaN or Inf value(s)")
    return arr


def check_int(value: Any, name: str, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """Check that ``value`` is an integer (bools refused) within the bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {_describe(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_seed(value: Any, name: str = "seed") -> int:
    """A seed: an int with ``0 <= seed <= SEED_MAX`` (``2**63 - 1``); bools, floats and
    strings are refused (docs/design.md, "Conventions")."""
    return check_int(value, name, minimum=0, maximum=SEED_MAX)


def shifted_seed(seed: int, offset: int, scale: int = 1) -> int:
    """``seed * scale + offset`` modulo ``2**63``: a seed derived from a seed (one per
    batch, per held-out set, ...) that is again a seed, whatever ``seed`` is in range.
    Below ``2**63 / scale`` (every seed in practice) it is the plain formula."""
    return (seed * scale + offset) % (SEED_MAX + 1)


def check_indices(values: Any, name: str, n: int, *, pairs: bool = False) -> np.ndarray:
    """Integer indices into ``range(n)`` as an int64 array: 1-D, or ``(m, 2)`` with
    ``pairs=True``. Floats, bools and strings are refused, not truncated; an empty
    sequence gives an empty array."""
    if torch is not None and isinstance(values, torch.Tensor):
        values = tensor_to_numpy(values)
    if isinstance(values, (str, bytes, dict)) or values is None:
        raise TypeError(f"{name} must be a sequence of int indices, got "
                        f"{type(values).__name__}")
    shape = "(n_pairs, 2)" if pairs else "1-D"
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as err:  # ragged nesting
        raise ValueError(f"{name} must be a {shape} sequence of int indices: {err}") from err
    if arr.size == 0:
        arr = np.zeros((0, 2) if pairs else (0,), dtype=np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer) or (
            not isinstance(values, np.ndarray) and _holds_bool(values)):
        bad = next((v for v in np.ravel(np.asarray(values, dtype=object))
                    if isinstance(v, (bool, np.bool_))
                    or not isinstance(v, (int, np.integer))), None)
        got = f"{bad!r} (dtype {arr.dtype})" if bad is not None else f"dtype {arr.dtype}"
        raise TypeError(f"{name} must hold int indices, got {got}")
    if (arr.ndim != 2 or arr.shape[1] != 2) if pairs else arr.ndim != 1:
        raise ValueError(f"{name} must be {shape}, got shape {arr.shape}")
    out_of_range = (arr < 0) | (arr >= n)
    if out_of_range.any():
        raise ValueError(f"{name} index {arr[out_of_range][0]} is out of range [0, {n})")
    return arr.astype(np.int64)


def _holds_bool(values) -> bool:
    """Whether a (nested) Python sequence holds a bool (numpy would make it 0 or 1)."""
    stack = [values]
    while stack:
        v = stack.pop()
        if isinstance(v, (bool, np.bool_)):
            return True
        if isinstance(v, (list, tuple)):
            stack.extend(v)
    return False


def check_float(value: Any, name: str, *, minimum: float | None = None,
                maximum: float | None = None, min_inclusive: bool = True,
                max_inclusive: bool = True) -> float:
    """Check that ``value`` is a finite real number within the bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {_describe(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value < minimum or (not min_inclusive and value == minimum)):
        op = ">=" if min_inclusive else ">"
        raise ValueError(f"{name} must be {op} {minimum}, got {value}")
    if maximum is not None and (value > maximum or (not max_inclusive and value == maximum)):
        op = "<=" if max_inclusive else "<"
        raise ValueError(f"{name} must be {op} {maximum}, got {value}")
    return value


def check_tuple(values: Any, name: str, check, **bounds) -> tuple:
    """A non-empty sequence checked element-wise by ``check`` (``check_int`` or
    ``check_float``, with its bounds), as a tuple; elements named ``name[k]``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence, got {type(values).__name__}")
    if len(values) == 0:
        raise ValueError(f"{name} must not be empty")
    return tuple(check(v, f"{name}[{k}]", **bounds) for k, v in enumerate(values))


def check_choice(value: Any, name: str, choices) -> Any:
    """Check that ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(map(str, choices))}, got {value!r}")
    return value


def listed_latents(mask: Any, max_shown: int = 5) -> str:
    """How many entries of a (width,) bool ``mask`` are set and the first ``max_shown`` of
    them by index, for an error message: ``"2 latent(s) (2, 5)"``, ``"9 latent(s) (0, 1, 2,
    3, 4, ...)"``. ``mask`` is a numpy array or a CPU tensor."""
    idx = np.flatnonzero(np.asarray(mask)).tolist()
    shown = ", ".join(map(str, idx[:max_shown]))
    return f"{len(idx)} latent(s) ({shown}{', ...' if len(idx) > max_shown else ''})"


def check_problem_shapes(X_shape, D_shape, Z_shape=None, bias_shape=None) -> None:
    """The one shape check of a dictionary-learning state: ``X`` (n_samples, d), ``D``
    (n_atoms, d), ``Z`` (n_samples, n_atoms), ``bias`` (d,). Shapes are tuples."""
    n, d = X_shape
    if D_shape[1] != d:
        raise ValueError(f"D has {D_shape[1]} columns but X has {d}; they must match "
                         "(D is (n_atoms, d), X is (n_samples, d))")
    if Z_shape is not None and tuple(Z_shape) != (n, D_shape[0]):
        raise ValueError(f"Z must have shape (n_samples, n_atoms) = {(n, D_shape[0])}, "
                         f"got {tuple(Z_shape)}")
    if bias_shape is not None and tuple(bias_shape) != (d,):
        raise ValueError(f"bias must have shape {(d,)}, got {tuple(bias_shape)}")


def row_norms(A: np.ndarray) -> np.ndarray:
    """(n_rows,) L2 norm of each row of a float array, without overflow or underflow.

    Rows whose plain norm is out of the safe range (its square would overflow
    or underflow: a row of 1e200s, or of 1e-200s) are divided by their largest
    entry before squaring; other rows get exactly ``np.linalg.norm``'s value.
    """
    with np.errstate(over="ignore", under="ignore"):
        norms = np.linalg.norm(A, axis=1)
    info = np.finfo(norms.dtype)  # squares are safe between these bounds, with a margin
    risky = ~((norms > np.sqrt(info.tiny) / info.eps) & (norms < np.sqrt(info.max) * info.eps))
    if risky.any():
        rows = A[risky]
        scale = np.abs(rows).max(axis=1, initial=0.0)
        safe = np.where(scale > 0, scale, 1.0)
        norms[risky] = scale * np.linalg.norm(rows / safe[:, None], axis=1)
    return norms


def norm_limit(dtype) -> float:
    """The largest row norm (of ``X``, of ``D``) a solver working in the float ``dtype``
    (numpy or torch) accepts: ``sqrt(finfo(dtype).max) / 2**16``, 2.8e14 in float32 and
    2.0e149 in float64. A product of two such norms is at most ``finfo.max / 2**32``,
    so the Gram matrix, the correlations ``X D^T`` and the sums of up to ``2**32``
    squared residuals stay finite (docs/design.md, Conventions: ranges)."""
    if torch is not None and isinstance(dtype, torch.dtype):
        largest = float(torch.finfo(dtype).max)
    else:
        largest = float(np.finfo(dtype).max)
    return math.sqrt(largest) / 2.0**16


def _dtype_name(dtype) -> str:
    if torch is not None and isinstance(dtype, torch.dtype):
        return str(dtype).removeprefix("torch.")
    return np.dtype(dtype).name


def check_norm_range(norms: np.ndarray, name: str, dtype, what: str) -> None:
    """ValueError naming ``name`` if a row norm in ``norms`` exceeds ``norm_limit(dtype)``
    (``what``: the function whose range it is, for the message)."""
    if not norms.size:
        return
    k = int(np.argmax(norms))
    limit = norm_limit(dtype)
    if not norms[k] <= limit:
        raise ValueError(
            f"{name}: row {k} has norm {norms[k]:.3g}, above {limit:.3g}, the largest "
            f"{what} accepts in {_dtype_name(dtype)} (its squared norms must stay finite: "
            f"docs/design.md, Conventions); rescale {name} (the codes and lam scale with the data)")


def unit_row_deviation(D: np.ndarray, name: str = "D") -> np.ndarray:
    """Row norms of ``D``; ``ValueError`` naming ``name`` if any row is zero."""
    norms = row_norms(D)
    if norms.size and (norms == 0).any():
        raise ValueError(f"{name} has {int((norms == 0).sum())} zero row(s) (first: row "
                         f"{int(np.argmin(norms))}); every atom needs a nonzero norm")
    return norms


def check_unit_rows(D: np.ndarray, name: str = "D", *, atol: float = 1e-4,
                    hint: str = "Normalise the rows first.") -> np.ndarray:
    """The one unit-row check: every row of ``D`` has unit L2 norm within ``atol``;
    says how many rows are off and how far the worst one is. Returns the norms."""
    norms = unit_row_deviation(D, name)
    dev = np.abs(norms - 1.0)
    if dev.size and dev.max() > atol:
        k = int(dev.argmax())
        raise ValueError(
            f"{name} rows must have unit L2 norm (tolerance {atol:g}); "
            f"{int((dev > atol).sum())} row(s) are off, worst row {k} has norm "
            f"{norms[k]:.6g} (off by {dev[k]:.3g}). {hint}")
    return norms
