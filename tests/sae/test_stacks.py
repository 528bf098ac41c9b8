"""``toysae.sae.stacks``: ``SingleSAE``, one SAE of any architecture as a stack of one: its
outputs gain a leading member axis and keep their values, penalties and auxiliary terms are
the SAE's own, latent slots select exactly the latents asked for, and the decoder steps
reach the SAE; ``MemberStack`` is abstract and its defaults act on the stack's module."""

from __future__ import annotations

import pytest
import torch

from toysae.sae import ARCHITECTURES, SAEOutput, make_sae
from toysae.sae.stacks import MemberStack, SingleSAE

D, WIDTH = 6, 8
KWARGS = {"topk": {"k": 2}, "batchtopk": {"k": 2},
          "matryoshka": {"k": 2, "prefix_sizes": [4, 8]}}


def _sae(name):
    return make_sae(name, D, WIDTH, seed=0, **KWARGS.get(name, {}))


def _x(n=10, seed=0):
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_forward_adds_the_member_axis_and_keeps_the_values(name):
    sae = _sae(name)
    stack = SingleSAE(sae)
    assert (stack.n_members, stack.d, stack.widths, stack.max_width) == (1, D, (WIDTH,), WIDTH)
    x = _x()
    out, native = stack.forward(x)
    own = sae(x)
    assert out.x_hat.shape == (1, 10, D) and out.codes.shape == (1, 10, WIDTH)
    assert torch.equal(out.x_hat[0], own.x_hat) and torch.equal(out.codes[0], own.codes)
    assert torch.equal(native.codes, own.codes)
    if own.pre_acts is None:
        assert out.pre_acts is None
    else:
        assert torch.equal(out.pre_acts[0], own.pre_acts)
    assert out.fired is None
    assert torch.equal(stack.penalties(native), sae.penalty(native)[None])
    assert stack.member(0) is sae and stack.trained_member(0) is sae
    assert stack.real_latents() is None
    assert stack.device == torch.device("cpu")


def test_a_forward_that_knows_its_fired_latents_passes_them_on():
    sae = _sae("relu")
    fired = torch.zeros(WIDTH, dtype=torch.bool)
    fired[[1, 4]] = True
    plain = sae.forward
    sae.forward = lambda x: SAEOutput(*plain(x)[:3], fired=fired)
    out, _ = SingleSAE(sae).forward(_x())
    assert out.fired.shape == (1, WIDTH) and torch.equal(out.fired[0], fired)


@pytest.mark.parametrize("name", ["relu", "gated", "topk", "matryoshka"])
def test_auxiliary_terms_are_the_saes_own(name):
    """No dead mask: None unless the architecture has an auxiliary term of its own (gated,
    matryoshka); with a (1, width) mask: the SAE's term on its one row of the mask."""
    sae = _sae(name)
    stack = SingleSAE(sae)
    x = _x()
    out, native = stack.forward(x)
    got = stack.auxiliary(x, native, None, 1.0)
    if sae.has_auxiliary_term:
        assert got.shape == (1,) and torch.equal(got[0], sae.auxiliary_loss(x, native, None, 1.0))
    else:
        assert got is None
    dead = torch.zeros(1, WIDTH, dtype=torch.bool)
    dead[0, :5] = True
    got = stack.auxiliary(x, native, dead, 0.5)
    want = sae.auxiliary_loss(x, native, dead[0], 0.5)
    assert got.shape == (1,) and torch.equal(got[0], want) and float(want.detach()) > 0


@pytest.mark.parametrize("name", ["relu", "tied", "gated", "jumprelu"])
def test_latent_slots_select_exactly_the_latents_asked_for(name):
    sae = _sae(name)
    idx = torch.tensor([2, 5])
    before = {k: v.detach().clone() for k, v in sae.state_dict().items()}
    with torch.no_grad():
        for param, index in SingleSAE(sae).latent_slots(0, idx):
            param[index] = 0.0
    touched = 0
    for key, value in sae.state_dict().items():
        param = dict(sae.named_parameters()).get(key)
        axis = next((a for p, a in sae.latent_parameters() if p is param), None)
        if axis is None:  # not a per-latent parameter: unchanged
            assert torch.equal(value, before[key]), key
            continue
        touched += 1
        assert (value.index_select(axis, idx) == 0).all(), key
        rest = torch.tensor([i for i in range(WIDTH) if i not in idx.tolist()])
        kept = before[key].index_select(axis, rest)
        assert torch.equal(value.index_select(axis, rest), kept), key
    assert touched == len(sae.latent_parameters())
    assert (sae.decoder_weight[idx] == 0).all()


def test_decoder_steps_and_gradient_recycling_reach_the_sae():
    sae = _sae("relu")
    stack = SingleSAE(sae)
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    stack.normalize_decoder_()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(WIDTH))
    x = _x()
    out, native = stack.forward(x)
    (out.x_hat - x).pow(2).sum().backward()
    assert float(torch.linalg.vecdot(sae.W_dec.grad, sae.W_dec.detach()).abs().max()) > 1e-3
    stack.remove_parallel_grad_()
    assert float(torch.linalg.vecdot(sae.W_dec.grad, sae.W_dec.detach()).abs().max()) < 1e-5
    stack.recycle_grads_()
    assert all(p.grad is None for p in sae.parameters())


def test_member_stack_is_abstract_and_its_default_recycling_drops_the_modules_grads():
    with pytest.raises(TypeError, match="abstract"):
        MemberStack()

    class DefaultRecycling(SingleSAE):
        recycle_grads_ = MemberStack.recycle_grads_

    sae = _sae("tied")
    stack = DefaultRecycling(sae)
    out, _ = stack.forward(_x())
    out.x_hat.sum().backward()
    assert any(p.grad is not None for p in sae.parameters())
    stack.recycle_grads_()
    assert all(p.grad is None for p in sae.parameters())
