"""How far a decoder is from the best decoder for its own codes (no penalty, any architecture).

The checks of :mod:`toysae.theory.conditions` judge a dictionary on the L1 objective at one
``lam``, which favours dictionaries trained on that objective. This lens uses the codes
the SAE's own encoder produces and only the reconstruction loss
``L(D) = 1/2n sum_n ||x_n - b - z_n D||^2``, so it applies to a TopK, a JumpReLU or a
Matching Pursuit SAE as it does to an L1 one (docs/theory.md, section 10).

For atom ``k`` with the other atoms fixed, the best unit atom is
``d*_k = g_k / ||g_k||`` with ``g_k = R_k^T z_k``, where ``R_k`` is the residual with atom
``k``'s own contribution added back: in matrix form ``G = Z^T E + diag(||z_k||^2) D``
for the residual ``E = X - b - Z D``. The decoder is stationary for its codes on the
unit sphere when every live atom points along its ``g_k`` (``angle_k = 0``); moving atom
``k`` alone to ``d*_k`` lowers ``L`` by ``(||g_k|| - d_k . g_k) / n``. The joint best
decoder for the codes (least squares, atom norms free) gives the whole loss the decoder
leaves for its codes, ``relative_loss_drop = (L(D) - L(D_ls)) / L(D)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from toysae._result import Result
from toysae._validation import check_float, check_int, check_problem_shapes, to_numpy
from toysae.theory.problem import UNIT_NORM_ATOL, unit_dictionary
from toysae.theory.sae import sae_dictionary, sparse_sae_codes

#: Default tolerance on the largest atom angle (degrees) for ``passed``.
ANGLE_TOL_DEG = 1.0


@dataclass(repr=False)
class DecoderStationarityReport(Result):
    """A decoder against the best decoder for the codes it is given.

    ``passed``: every live atom is within ``tol_deg`` degrees of its best unit direction.
    Dead atoms (codes all zero) have no best direction; their angle and drop read 0 and
    ``alive`` is False.
    """

    passed: bool
    message: str
    max_angle_deg: float
    mean_angle_deg: float  # mean over live atoms, weighted by their code energy ||z_k||^2
    tol_deg: float
    loss: float  # 1/2n ||X - b - Z D||^2
    best_loss: float  # the same with the least-squares decoder for Z
    relative_loss_drop: float  # (loss - best_loss) / loss
    n_alive: int
    worst: tuple  # ((atom, angle_deg, loss_drop), ...) largest angle first
    angle_deg: np.ndarray  # (n_atoms,)
    loss_drop: np.ndarray  # (n_atoms,) loss saved by moving that atom alone
    alive: np.ndarray  # (n_atoms,) bool


def _codes(Z, shape: tuple[int, int]):
    if sp.issparse(Z):
        Z = sp.csr_matrix(Z, dtype=np.float64)
        if Z.shape != shape:
            raise ValueError(f"Z must have shape {shape}, got {Z.shape}")
        if not np.isfinite(Z.data).all():
            raise ValueError("Z contains NaN or Inf")
        return Z
    Z = to_numpy(Z, "Z", ndim=2)
    if Z.shape != shape:
        raise ValueError(f"Z must have shape {shape}, got {Z.shape}")
    return Z


def decoder_stationarity(X, D, Z, *, bias=None, tol_deg: float = ANGLE_TOL_DEG,
                         normalize: bool = False, unit_atol: float = UNIT_NORM_ATOL,
                         n_worst: int = 5) -> DecoderStationarityReport:
    """Judge the decoder ``D`` by the reconstruction of ``X`` from the given codes ``Z``.

    X : (n_samples, d). D : (n_atoms, d), unit rows (or ``normalize=True``, which rescales
    rows to unit norm and code columns by the old norms, reconstruction unchanged).
    Z : (n_samples, n_atoms), dense or scipy sparse. bias : optional (d,) decoder bias,
    held fixed. tol_deg : tolerance on the largest atom angle for ``passed``.
    """
    X = to_numpy(X, "X", ndim=2)
    D = to_numpy(D, "D", ndim=2)
    check_problem_shapes(X.shape, D.shape, bias_shape=None if bias is None
                         else np.shape(bias))
    if X.shape[0] == 0:
        raise ValueError(f"X must be non-empty, got shape {X.shape}")
    Z = _codes(Z, (X.shape[0], D.shape[0]))
    tol_deg = check_float(tol_deg, "tol_deg", minimum=0.0)
    n_worst = check_int(n_worst, "n_worst", minimum=0)
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be a bool, got {normalize!r}")
    D, scale = unit_dictionary(D, bool(normalize), unit_atol)
    if scale is not None:
        Z = Z @ sp.diags(scale) if sp.issparse(Z) else Z * scale
    target = X if bias is None else X - to_numpy(bias, "bias", ndim=1)

    n = X.shape[0]
    ZD = np.asarray(Z @ D)
    E = target - ZD
    loss = 0.5 * float(np.einsum("ij,ij->", E, E)) / n
    gram = np.asarray((Z.T @ Z).todense()) if sp.issparse(Z) else Z.T @ Z
    energy = np.diag(gram).copy()
    alive = energy > 0
    G = np.asarray(Z.T @ E) + energy[:, None] * D
    g_norm = np.linalg.norm(G, axis=1)
    along = np.einsum("ij,ij->i", G, D)
    cos = np.divide(along, g_norm, out=np.ones_like(along), where=g_norm > 0)
    angle = np.where(alive, np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))), 0.0)
    drop = np.where(alive, (g_norm - along) / n, 0.0)

    best_loss = loss
    if alive.any():
        idx = np.flatnonzero(alive)
        rhs = np.asarray(Z.T @ target)[idx]
        # lstsq on the normal equations: codes of two atoms may be collinear (rank-deficient)
        D_ls = scipy.linalg.lstsq(gram[np.ix_(idx, idx)], rhs, lapack_driver="gelsd")[0]
        Z_alive = Z[:, idx]
        E_ls = target - np.asarray(Z_alive @ D_ls)
        best_loss = min(loss, 0.5 * float(np.einsum("ij,ij->", E_ls, E_ls)) / n)
    relative = (loss - best_loss) / loss if loss > 0 else 0.0

    max_angle = float(angle.max(initial=0.0))
    mean_angle = float(np.average(angle[alive], weights=energy[alive])) if alive.any() else 0.0
    order = np.argsort(-angle, kind="stable")[:n_worst]
    worst = tuple((int(k), float(angle[k]), float(drop[k])) for k in order if alive[k])
    passed = max_angle <= tol_deg
    message = (f"decoder stationarity for its codes {'holds' if passed else 'fails'}: largest "
               f"atom angle {max_angle:.3g} deg (tol {tol_deg:g}) over {int(alive.sum())} live "
               f"atoms; the least-squares decoder lowers the loss by {100 * relative:.3g}%")
    return DecoderStationarityReport(
        passed=passed, message=message, max_angle_deg=max_angle, mean_angle_deg=mean_angle,
        tol_deg=tol_deg, loss=loss, best_loss=best_loss, relative_loss_drop=float(relative),
        n_alive=int(alive.sum()), worst=worst, angle_deg=angle, loss_drop=drop, alive=alive)


def sae_decoder_stationarity(sae, X, *, tol_deg: float = ANGLE_TOL_DEG,
                             normalize: bool = False, batch_size: int = 4096,
                             n_worst: int = 5) -> DecoderStationarityReport:
    """:func:`decoder_stationarity` of an SAE's decoder for the codes its encoder gives ``X``
    (its ``b_dec`` held fixed as the bias)."""
    X = to_numpy(X, "X", ndim=2)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    D, bias = sae_dictionary(sae)
    check_problem_shapes(X.shape, D.shape)
    Z = sp.vstack([sparse_sae_codes(sae, X[start:start + batch_size], D.shape[0])
                   for start in range(0, len(X), batch_size)], format="csr")
    return decoder_stationarity(X, D, Z, bias=bias, tol_deg=tol_deg, normalize=normalize,
                                n_worst=n_worst)
