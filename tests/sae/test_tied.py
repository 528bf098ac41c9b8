"""``toysae.sae.tied``: the tied SAE's weights stay tied through training: each active
latent's encoder row is its decoder atom."""

import pytest
import torch

from toysae._threads import torch_threads
from toysae.sae import TiedSAE

D, WIDTH = 10, 24


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny tensors: a second thread only adds fork/join waits on a busy machine.
    with torch_threads(1):
        yield


def _x(n=64, seed=0):
    return torch.rand(n, D, generator=torch.Generator().manual_seed(seed))


def test_tied_weights_stay_tied():
    from toysae.sae import TrainConfig, train_sae

    sae = TiedSAE(D, WIDTH, seed=0)
    train_sae(sae, _x(1024).numpy(), TrainConfig(n_samples=4096, batch_size=64, lr=1e-2,
                                                 sparsity_coef=0.01), progress=False)
    assert [n for n, _ in sae.named_parameters()] == ["M", "b"]
    x = _x(1, seed=3)[0]
    codes = sae.encode(x[None])[0]
    active = int(codes.argmax())
    assert codes[active] > 0
    # the encoder row of an active latent (d code / d x) IS its decoder atom
    jac = torch.autograd.functional.jacobian(lambda v: sae.encode(v[None])[0], x)
    torch.testing.assert_close(jac[active], sae.M.detach()[active])
    one_hot = torch.zeros(1, WIDTH)
    one_hot[0, active] = 1.0
    torch.testing.assert_close(sae.decode(one_hot)[0], sae.M.detach()[active])
