"""``toysae.sae.topk``: TopK keeps exactly k per sample (the largest), AuxK reaches dead
latents of every TopK family, and k is checked."""

import pytest
import torch

from toysae._threads import torch_threads
from toysae.sae import BatchTopKSAE, MatryoshkaSAE, TopKSAE, make_sae

D, WIDTH = 10, 24
KWARGS = {"topk": {"k": 3}, "batchtopk": {"k": 3},
          "matryoshka": {"k": 3, "prefix_sizes": [4, 12]}}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny tensors: a second thread only adds fork/join waits on a busy machine.
    with torch_threads(1):
        yield


def _sae(name, seed=0):
    return make_sae(name, D, WIDTH, seed=seed, **KWARGS.get(name, {}))


def _x(n=64, seed=0):
    return torch.rand(n, D, generator=torch.Generator().manual_seed(seed))


def test_topk_keeps_exactly_k_per_sample():
    sae = TopKSAE(D, WIDTH, k=5, seed=1)
    pre = sae.encode_pre(sae.check_input(_x(200)))
    codes = sae.activate(pre)
    counts = (codes > 0).sum(1)
    enough = (pre > 0).sum(1) >= 5
    assert enough.any()
    assert (counts[enough] == 5).all() and (counts <= 5).all()
    # the kept ones are the largest pre-activations
    kth = pre.topk(5, dim=1).values[:, -1:]
    assert ((codes > 0) <= (pre >= kth)).all()
    with torch.no_grad():
        sae.b_enc.fill_(10.0)  # every pre-activation positive: exactly k everywhere
    assert ((sae.encode(_x(50)) > 0).sum(1) == 5).all()


@pytest.mark.parametrize("name", ["topk", "batchtopk", "matryoshka"])
def test_aux_k_reaches_dead_latents(name):
    sae = _sae(name)
    sae.train()
    with torch.no_grad():
        # TopK's dead latents: pre-activations positive but never among the top k
        sae.b_enc[:6] = 1.0
        sae.b_enc[6:] = 50.0
    dead = torch.zeros(WIDTH, dtype=torch.bool)
    dead[:6] = True
    x = _x()
    sae.loss(x).total.backward()
    assert sae.W_dec.grad[:6].abs().max() == 0
    sae.zero_grad()
    parts = sae.loss(x, dead=dead, dead_latent_coef=1 / 32)
    assert parts.auxiliary > 0
    parts.total.backward()
    assert (sae.W_dec.grad[:6].abs().sum(1) > 0).all()
    assert (sae.W_enc.grad[:, :6].abs().sum(0) > 0).all()


@pytest.mark.parametrize("cls", [TopKSAE, BatchTopKSAE, MatryoshkaSAE])
def test_bad_k(cls):
    with pytest.raises(ValueError, match="k must be <= width"):
        cls(D, WIDTH, k=WIDTH + 1)
    with pytest.raises(ValueError, match="k must be >= 1"):
        cls(D, WIDTH, k=0)
    with pytest.raises(ValueError, match="aux_k"):
        cls(D, WIDTH, k=2, aux_k=WIDTH + 1)
    assert cls(D, WIDTH, k=WIDTH).k == WIDTH
