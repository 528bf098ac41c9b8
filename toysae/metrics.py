"""Scores of a learned dictionary against the truth, and of codes and reconstructions.

Dictionaries are ``(n_atoms, d)`` arrays, one atom per row (numpy or torch);
rows need not be unit norm, cosines normalise them. Results are Python floats
or numpy arrays, computed in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from toysae._validation import to_numpy

__all__ = ["cosine_matrix", "dead_latents", "fvu", "l0", "max_cosines", "mcc", "mmcs",
           "mmcs_with_larger", "shrinkage"]


def _rows(A, name: str) -> np.ndarray:
    A = to_numpy(A, name, ndim=2)
    if A.shape[0] == 0:
        raise ValueError(f"{name} has no rows")
    norms = np.linalg.norm(A, axis=1)
    if (norms == 0).any():
        raise ValueError(f"{name} has {int((norms == 0).sum())} zero row(s); cosines are undefined")
    return A / norms[:, None]


def _pair(reference, learned) -> tuple[np.ndarray, np.ndarray]:
    R = _rows(reference, "reference")
    L = _rows(learned, "learned")
    if R.shape[1] != L.shape[1]:
        raise ValueError(f"reference atoms have dimension {R.shape[1]} but learned atoms have "
                         f"{L.shape[1]}; they must match")
    return R, L


def cosine_matrix(A, B) -> np.ndarray:
    """(n_A, n_B) cosine similarities between the rows of ``A`` and of ``B``."""
    A, B = _pair(A, B)
    return np.clip(A @ B.T, -1.0, 1.0)


def max_cosines(reference, learned, *, absolute: bool = False) -> np.ndarray:
    """(n_reference,) for each reference row, its largest cosine with a learned row.

    With ``absolute=True`` the cosine's absolute value is used, so an atom and
    its negation count as the same direction (signed dictionaries).
    """
    C = cosine_matrix(reference, learned)
    return (np.abs(C) if absolute else C).max(axis=1)


def mmcs(reference, learned, *, absolute: bool = False) -> float:
    """Mean max cosine similarity from ``reference`` to ``learned``.

    ``mmcs(true_features, dictionary)`` is how well the truth is recovered;
    ``mmcs(dictionary, true_features)`` is how many learned atoms are real.
    1 means every reference row has an exact match; random directions in
    ``d`` dimensions score about ``sqrt(2 log n_learned / d)``.
    """
    return float(max_cosines(reference, learned, absolute=absolute).mean())


def mcc(reference, learned) -> float:
    """Mean |cosine| under the best one-to-one matching of learned atoms to reference rows.

    The matching is the Hungarian assignment (scipy ``linear_sum_assignment``)
    maximising the total |cosine|. The sum of matched |cosines| is divided by
    ``n_reference``, so reference rows left unmatched (fewer learned atoms than
    reference rows) count as 0. Hence ``mcc <= mmcs(..., absolute=True)``, with
    equality when the best matches are all different atoms.
    """
    C = np.abs(cosine_matrix(reference, learned))
    rows, cols = linear_sum_assignment(C, maximize=True)
    return float(C[rows, cols].sum() / C.shape[0])


def mmcs_with_larger(dictionaries: Sequence) -> list[float | None]:
    """For each dictionary, the mean over every larger one of MMCS(this -> larger).

    ``dictionaries`` are ordered by number of atoms (non-decreasing), e.g. the
    dictionaries learned at one sparsity penalty with growing width. No ground
    truth is needed: atoms that reappear in larger dictionaries are likely real
    ("many ways of being wrong, one way of being right"). The largest dictionary
    has nothing larger to compare with and gets ``None``.
    """
    if isinstance(dictionaries, (str, bytes)) or not isinstance(dictionaries, Sequence):
        raise TypeError(f"dictionaries must be a sequence of arrays, got "
                        f"{type(dictionaries).__name__}")
    if len(dictionaries) == 0:
        raise ValueError("dictionaries is empty")
    Ds = [_rows(D, f"dictionaries[{k}]") for k, D in enumerate(dictionaries)]
    for k in range(1, len(Ds)):
        if Ds[k].shape[1] != Ds[0].shape[1]:
            raise ValueError(f"dictionaries[{k}] has dimension {Ds[k].shape[1]} but "
                             f"dictionaries[0] has {Ds[0].shape[1]}")
        if Ds[k].shape[0] < Ds[k - 1].shape[0]:
            raise ValueError(f"dictionaries must be ordered by size; dictionaries[{k}] has "
                             f"{Ds[k].shape[0]} atoms after {Ds[k - 1].shape[0]}")
    out: list[float | None] = []
    for k, D in enumerate(Ds):
        larger = Ds[k + 1:]
        out.append(float(np.mean([(D @ L.T).max(axis=1).mean() for L in larger]))
                   if larger else None)
    return out


def _codes(codes) -> np.ndarray:
    return to_numpy(codes, "codes", ndim=2)


def dead_latents(codes) -> np.ndarray:
    """(n_atoms,) bool mask of latents that are zero on every sample of ``codes``.

    ``codes`` is (n_samples, n_atoms) (an SAE's: (n_samples, width));
    ``dead_latents(codes).sum()`` counts them.
    """
    return ~(_codes(codes) != 0).any(axis=0)


def l0(codes) -> float:
    """Mean number of nonzero latents per sample."""
    return float((_codes(codes) != 0).sum(axis=1).mean())


def _recon(x, x_hat) -> tuple[np.ndarray, np.ndarray]:
    x = to_numpy(x, "x", ndim=2)
    x_hat = to_numpy(x_hat, "x_hat", ndim=2)
    if x.shape != x_hat.shape:
        raise ValueError(f"x has shape {x.shape} but x_hat has shape {x_hat.shape}")
    return x, x_hat


def fvu(x, x_hat) -> float:
    """Fraction of variance unexplained: ``sum ||x - x_hat||^2 / sum ||x - mean(x)||^2``."""
    x, x_hat = _recon(x, x_hat)
    total = ((x - x.mean(axis=0)) ** 2).sum()
    if total == 0:
        raise ValueError("x has zero variance; the fraction of variance unexplained is undefined")
    return float(((x - x_hat) ** 2).sum() / total)


def shrinkage(x, x_hat) -> float:
    """Mean of ``||x_hat_n|| / ||x_n||`` over samples with ``x_n != 0``.

    Below 1 means the reconstruction is shrunk toward zero (the L1 penalty's
    bias); 1 is no shrinkage.
    """
    x, x_hat = _recon(x, x_hat)
    norms = np.linalg.norm(x, axis=1)
    keep = norms > 0
    if not keep.any():
        raise ValueError("every row of x is zero; shrinkage is undefined")
    return float((np.linalg.norm(x_hat[keep], axis=1) / norms[keep]).mean())
