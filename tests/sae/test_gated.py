"""``toysae.sae.gated``: the gated SAE's magnitude path shares the gate weights, and its
auxiliary loss trains the gate."""

import pytest
import torch

from toysae._threads import torch_threads
from toysae.sae import GatedSAE

D, WIDTH = 10, 24


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny tensors: a second thread only adds fork/join waits on a busy machine.
    with torch_threads(1):
        yield


def _x(n=64, seed=0):
    return torch.rand(n, D, generator=torch.Generator().manual_seed(seed))


def test_gated_magnitude_path_shares_the_gate_weights():
    sae = GatedSAE(D, WIDTH, seed=0)
    with torch.no_grad():
        sae.r_mag.normal_(generator=torch.Generator().manual_seed(0))
        sae.b_mag.normal_(generator=torch.Generator().manual_seed(1))
        sae.b_gate.normal_(generator=torch.Generator().manual_seed(2))
    x = _x()
    proj = (x - sae.b_dec) @ sae.W_gate
    expected = (proj + sae.b_gate > 0) * torch.relu(proj * sae.r_mag.exp() + sae.b_mag)
    torch.testing.assert_close(sae.encode(x), expected)
    parts = sae.loss(x, 0.1)
    gate_aux = 0.5 * ((torch.relu(proj + sae.b_gate) @ sae.W_dec + sae.b_dec - x) ** 2).sum(1)
    torch.testing.assert_close(parts.auxiliary, gate_aux.mean())
    parts.total.backward()
    assert sae.b_gate.grad.abs().max() > 0  # the gate learns through L1 + aux
