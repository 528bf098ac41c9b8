"""``toysae.sae.relu``: the ReLU SAE's hand-written fused backward matches autograd, alone
and under the trainer's loss parts."""

import pytest
import torch

from toysae._threads import torch_threads
from toysae.sae import ReLUSAE

D, WIDTH = 10, 24


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny tensors: a second thread only adds fork/join waits on a busy machine.
    with torch_threads(1):
        yield


def _x(n=64, seed=0):
    return torch.rand(n, D, generator=torch.Generator().manual_seed(seed))


def _autograd_grads(sae, out_fn, x, coef, *, x_grad=False):
    x = x.clone().requires_grad_(x_grad)
    out = out_fn(x)
    # any objective: a weighted squared error on x_hat plus the L1 penalty on the codes
    weights = torch.linspace(0.5, 2.0, x.shape[1])
    loss = (weights * (out.x_hat - x) ** 2).sum() / x.shape[0] + coef * out.codes.sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in sae.named_parameters()}
    if x_grad:
        grads["x"] = x.grad.clone()
    for p in sae.parameters():
        p.grad = None
    return loss.detach(), out, grads


def test_relu_hand_written_backward_matches_autograd():
    sae = ReLUSAE(D, WIDTH, seed=4)
    with torch.no_grad():
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(0))
        sae.b_enc.normal_(generator=torch.Generator().manual_seed(1))
    x = _x(48, seed=5)
    # the fused autograd.Function against the same formula in plain autograd ops
    loss, out, fused = _autograd_grads(sae, sae, x, 0.3, x_grad=True)
    ref_loss, ref, auto = _autograd_grads(sae, sae.reference_forward, x, 0.3, x_grad=True)
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(out.x_hat, ref.x_hat)
    torch.testing.assert_close(out.codes, sae.encode(x))
    assert out.pre_acts is None and ref.pre_acts.shape == (48, WIDTH)
    for n in auto:
        assert auto[n].abs().max() > 0, n
        torch.testing.assert_close(fused[n], auto[n], rtol=1e-5, atol=1e-6, msg=n)
    # and under the trainer's own loss parts
    parts = sae.loss(x, 0.3)
    parts.total.backward()
    fused = {n: p.grad.clone() for n, p in sae.named_parameters()}
    for p in sae.parameters():
        p.grad = None
    xc = x - sae.b_dec
    codes = torch.relu(xc @ sae.W_enc + sae.b_enc)
    x_hat = codes @ sae.W_dec + sae.b_dec
    plain = 0.5 * ((x - x_hat) ** 2).sum(1).mean() + 0.3 * codes.sum(1).mean()
    plain.backward()
    torch.testing.assert_close(parts.total.detach(), plain.detach())
    for n, p in sae.named_parameters():
        torch.testing.assert_close(fused[n], p.grad, rtol=1e-5, atol=1e-6, msg=n)
