"""``toysae.sae.ensemble``: the batched ReLU ensemble: its gradients equal single-SAE
gradients, padding never leaks, and a divergence names the member."""

import pytest
import torch

from toysae import _tuning
from toysae.data import SyntheticConfig, SyntheticData
from toysae.sae.config import TrainConfig
from toysae.sae.engine import TrainingDiverged
from toysae.sae.ensemble import ReLUSAEEnsemble, train_ensembles
from toysae.sae.relu import ReLUSAE

TOY = SyntheticData(SyntheticConfig.toy_3d())
# Short runs with frequent resampling so that the resampling path is compared too.
CFG = TrainConfig(n_samples=128 * 120, batch_size=128, lr=1e-2, sparsity_warmup=0.1,
                  dead_window=10, resample_every=30, log_every=40)


def _params(sae):
    return {k: v.detach() for k, v in sae.state_dict().items()}


@pytest.mark.parametrize("loop_work", [2 ** 40, 0])  # one bmm call / a loop of 2-D matmuls
def test_batched_gradients_equal_single_sae_gradients(monkeypatch, loop_work):
    monkeypatch.setattr(_tuning, "BMM_LOOP_WORK", loop_work)
    saes = [ReLUSAE(5, w, seed=s) for s, w in enumerate([3, 7, 4])]
    with torch.no_grad():
        for sae in saes:  # nonzero biases so that every gradient term is exercised
            sae.b_enc.normal_()
            sae.b_dec.normal_()
    ens = ReLUSAEEnsemble.from_saes(saes)
    x = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
    coefs = torch.tensor([0.1, 0.5, 0.01])
    out, native = ens(x)
    totals = (0.5 * (out.x_hat - x).square().sum((1, 2)) / 64 + coefs * ens.penalties(native))
    totals.sum().backward()
    for m, sae in enumerate(saes):
        parts = sae.loss(x, float(coefs[m]))
        parts.total.backward()  # the single SAE's fused autograd.Function
        xc = x - sae.b_dec  # and the same formula in plain autograd ops
        w = sae.width
        torch.testing.assert_close(totals[m], parts.total.detach())
        torch.testing.assert_close(out.codes[m, :, :w], torch.relu(xc @ sae.W_enc + sae.b_enc))
        for name, grad in (("W_enc", ens.W_enc.grad[m, :, :w]), ("b_enc", ens.b_enc.grad[m, :w]),
                           ("W_dec", ens.W_dec.grad[m, :w]), ("b_dec", ens.b_dec.grad[m])):
            torch.testing.assert_close(grad, getattr(sae, name).grad, msg=name)
    # the input gradient (an SAE inside a model) matches plain autograd too
    x_req = x.clone().requires_grad_(True)
    out, _ = ens(x_req)
    out.x_hat.square().sum().backward()
    x_ref = x.clone().requires_grad_(True)
    sum(saes[m].reference_forward(x_ref).x_hat.square().sum() for m in range(3)).backward()
    torch.testing.assert_close(x_req.grad, x_ref.grad, rtol=1e-5, atol=1e-5)


def test_padding_never_leaks():
    widths = [2, 9]
    ens = ReLUSAEEnsemble(3, widths, seeds=[0, 1])
    res = train_ensembles(ens, [0.05, 0.05], TOY, CFG, progress=False)
    # padded slices of the small member stay exactly zero, grads included
    for tensor in (ens.W_enc[0, :, 2:], ens.b_enc[0, 2:], ens.W_dec[0, 2:],
                   ens.W_enc.grad[0, :, 2:], ens.W_dec.grad[0, 2:], ens.b_enc.grad[0, 2:]):
        assert torch.count_nonzero(tensor) == 0
    out, _ = ens(TOY.sample(500, seed=9).x)
    assert torch.count_nonzero(out.codes[0, :, 2:]) == 0
    assert max(res[0].history["dead"]) <= 2  # padded latents are never counted dead
    single = res[1]  # one TrainResult per member, the same type train_sae returns
    assert single.sae.width == 9 and single.config.sparsity_coef == 0.05
    assert single.history is res[1].history and single.n_iter == CFG.n_steps
    assert not ens.training  # the engine leaves the ensemble in eval mode, as a single SAE
    # the small member trains exactly as it does without a wider neighbour
    alone = train_ensembles(ReLUSAEEnsemble(3, [2], seeds=[0]), [0.05], TOY, CFG,
                            progress=False)
    for name, value in _params(alone[0].sae).items():
        torch.testing.assert_close(_params(res[0].sae)[name], value, atol=1e-5, rtol=0)


def test_padding_is_masked_even_when_padded_parameters_are_garbage():
    ens = ReLUSAEEnsemble(3, [2, 9], seeds=[0, 1])
    with torch.no_grad():  # fill the small member's padded slices with junk
        ens.W_enc[0, :, 2:] = 5.0
        ens.b_enc[0, 2:] = 3.0
        ens.W_dec[0, 2:] = 7.0
    junk_enc = ens.W_enc[0, :, 2:].detach().clone()
    res = train_ensembles(ens, [0.05, 0.05], TOY, CFG, progress=False)
    assert torch.equal(ens.W_enc[0, :, 2:], junk_enc)  # zero gradient: Adam never moved it
    assert torch.count_nonzero(ens.W_enc.grad[0, :, 2:]) == 0
    out, _ = ens(TOY.sample(500, seed=9).x)
    assert torch.count_nonzero(out.codes[0, :, 2:]) == 0
    alone = train_ensembles(ReLUSAEEnsemble(3, [2], seeds=[0]), [0.05], TOY, CFG,
                            progress=False)
    for name, value in _params(alone[0].sae).items():
        torch.testing.assert_close(_params(res[0].sae)[name], value, atol=1e-5, rtol=0)
    assert res[0].sae.width == 2


def test_divergence_names_the_member():
    ens = ReLUSAEEnsemble(3, [3, 4], seeds=[0, 1])
    with torch.no_grad():
        ens.b_dec[1] = float("inf")
    with pytest.raises(TrainingDiverged, match=r"member 1 \(sparsity_coef=0.1, width=4\)"):
        train_ensembles(ens, [0.1, 0.1], TOY, CFG, progress=False)
