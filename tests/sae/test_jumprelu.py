"""``toysae.sae.jumprelu``: the threshold gets its pseudo-gradients and moves under
training; bad settings are refused."""

import pytest
import torch

from toysae._threads import torch_threads
from toysae.sae import JumpReLUSAE

D, WIDTH = 10, 24


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny tensors: a second thread only adds fork/join waits on a busy machine.
    with torch_threads(1):
        yield


def _x(n=64, seed=0):
    return torch.rand(n, D, generator=torch.Generator().manual_seed(seed))


def test_jumprelu_threshold_gets_pseudo_gradients():
    sae = JumpReLUSAE(D, WIDTH, threshold_init=0.5, bandwidth=0.4, seed=0)
    x = _x(256)
    out = sae(x)
    theta = sae.threshold.detach()
    assert torch.equal(out.codes > 0, out.pre_acts > theta)
    # L0 alone: descent must RAISE thresholds with pre-activations in the window
    sae.penalty(out).backward()
    g = sae.log_threshold.grad
    in_window = ((out.pre_acts - theta).abs() < 0.2).any(0)
    assert in_window.any()
    assert (g[in_window] < 0).all() and (g[~in_window] == 0).all()
    # the L0 term sends nothing to the encoder
    assert sae.W_enc.grad is None or sae.W_enc.grad.abs().max() == 0
    expected = -(((out.pre_acts - theta).abs() < 0.2).float().sum(0) / 0.4) * theta / 256
    torch.testing.assert_close(g, expected)


def test_jumprelu_threshold_moves_under_training():
    from toysae.sae import TrainConfig, train_sae

    sae = JumpReLUSAE(D, WIDTH, threshold_init=0.1, bandwidth=0.1, seed=0)
    before = sae.threshold.detach().clone()
    cfg = TrainConfig(n_samples=4096, batch_size=128, lr=1e-2, sparsity_coef=0.05,
                      resample_every=0)
    train_sae(sae, _x(2048).numpy(), cfg, progress=False)
    moved = (sae.threshold.detach() - before).abs()
    assert moved.max() > 1e-3
    assert (moved > 1e-4).float().mean() > 0.3


def test_bad_jumprelu_settings():
    with pytest.raises(ValueError, match="bandwidth"):
        JumpReLUSAE(D, WIDTH, bandwidth=0.0)
    with pytest.raises(ValueError, match="threshold_init"):
        JumpReLUSAE(D, WIDTH, threshold_init=-1.0)
