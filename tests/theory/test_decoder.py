"""theory.decoder: the decoder against the best decoder for its own codes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from toysae.sae import make_sae
from toysae.theory import decoder_stationarity, sae_decoder_stationarity
from toysae.theory.sae import sae_codes


def _unit(A):
    return A / np.linalg.norm(A, axis=1, keepdims=True)


def _state(seed=0, n=300, d=10, k=6):
    """X = Z D + E with E orthogonal to the columns of Z: D is the exact best decoder."""
    rng = np.random.default_rng(seed)
    D = _unit(rng.normal(size=(k, d)))
    Z = np.maximum(rng.normal(size=(n, k)), 0) * (rng.random((n, k)) < 0.4)
    E = rng.normal(scale=0.1, size=(n, d))
    E -= Z @ np.linalg.lstsq(Z, E, rcond=None)[0]
    return Z @ D + E, D, Z


def _loss(X, D, Z):
    R = X - Z @ D
    return 0.5 * float((R * R).sum()) / len(X)


def _rotate(d, towards, degrees):
    t = towards - (towards @ d) * d
    t /= np.linalg.norm(t)
    a = np.radians(degrees)
    return np.cos(a) * d + np.sin(a) * t


def test_the_best_decoder_for_its_codes_passes():
    X, D, Z = _state()
    rep = decoder_stationarity(X, D, Z)
    assert rep.passed and rep.max_angle_deg < 1e-5 and rep.n_alive == 6
    assert rep.relative_loss_drop < 1e-10 and rep.loss > 0
    assert np.abs(rep.loss_drop).max() < 1e-12


def test_a_rotated_atom_is_flagged_with_its_angle_and_exact_loss_drop():
    X, D, Z = _state(1)
    rng = np.random.default_rng(5)
    D_bad = D.copy()
    D_bad[0] = _rotate(D[0], rng.normal(size=D.shape[1]), 10.0)
    rep = decoder_stationarity(X, D_bad, Z)
    assert not rep.passed and "fails" in rep.message
    # Atom 0's residual with the other atoms as they are is z_0 d_0 + E: its best direction
    # is the true d_0, 10 degrees away.
    assert rep.angle_deg[0] == pytest.approx(10.0, abs=1e-8)
    fixed = D_bad.copy()
    fixed[0] = D[0]
    assert rep.loss_drop[0] == pytest.approx(_loss(X, D_bad, Z) - _loss(X, fixed, Z), rel=1e-9)
    assert rep.max_angle_deg >= 10.0 - 1e-8
    # The joint least-squares decoder, computed independently.
    D_ls = np.linalg.lstsq(Z, X, rcond=None)[0]
    best = _loss(X, D_ls, Z)
    assert rep.best_loss == pytest.approx(best, rel=1e-9)
    assert rep.relative_loss_drop == pytest.approx((rep.loss - best) / rep.loss, rel=1e-9)


def test_dead_atoms_are_excluded_and_sparse_codes_match_dense():
    X, D, Z = _state(2)
    Z[:, 3] = 0.0
    dense = decoder_stationarity(X, D, Z)
    sparse = decoder_stationarity(X, D, sp.csr_matrix(Z))
    assert not dense.alive[3] and dense.n_alive == 5 and dense.angle_deg[3] == 0.0
    np.testing.assert_allclose(sparse.angle_deg, dense.angle_deg, atol=1e-10)
    assert sparse.relative_loss_drop == pytest.approx(dense.relative_loss_drop, abs=1e-12)


def test_bias_and_normalize_change_nothing_they_should_not():
    X, D, Z = _state(3)
    D_bad = D.copy()
    D_bad[1] = _rotate(D[1], D[2], 7.0)
    ref = decoder_stationarity(X, D_bad, Z)
    b = np.linspace(-1, 1, X.shape[1])
    shifted = decoder_stationarity(X + b, D_bad, Z, bias=b)
    np.testing.assert_allclose(shifted.angle_deg, ref.angle_deg, atol=1e-9)
    s = np.linspace(0.5, 2.0, D.shape[0])
    scaled = decoder_stationarity(X, D_bad * s[:, None], Z / s, normalize=True)
    np.testing.assert_allclose(scaled.angle_deg, ref.angle_deg, atol=1e-9)
    assert scaled.loss == pytest.approx(ref.loss, rel=1e-12)


def test_the_sae_wrapper_uses_the_encoders_codes_and_b_dec():
    torch.manual_seed(0)
    sae = make_sae("relu", 8, 16, seed=0).double()
    with torch.no_grad():
        sae.b_dec.normal_()
    X = np.random.default_rng(0).normal(size=(200, 8))
    rep = sae_decoder_stationarity(sae, X, batch_size=64)
    direct = decoder_stationarity(X, sae.dictionary.detach().numpy(), sae_codes(sae, X),
                                  bias=sae.b_dec.detach().numpy())
    np.testing.assert_allclose(rep.angle_deg, direct.angle_deg, atol=1e-9)
    assert rep.loss == pytest.approx(direct.loss, rel=1e-12)


def test_bad_input_is_refused():
    X, D, Z = _state()
    with pytest.raises(ValueError, match="Z must have shape"):
        decoder_stationarity(X, D, Z[:, :3])
    Zn = Z.copy()
    Zn[0, 0] = np.nan
    with pytest.raises(ValueError, match="Z"):
        decoder_stationarity(X, D, Zn)
    with pytest.raises(ValueError, match="unit"):
        decoder_stationarity(X, 2 * D, Z)
    with pytest.raises(ValueError, match="tol_deg"):
        decoder_stationarity(X, D, Z, tol_deg=-1)
    with pytest.raises(ValueError, match="bias"):
        decoder_stationarity(X, D, Z, bias=np.zeros(3))
