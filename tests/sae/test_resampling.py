"""``toysae.sae.resampling``: dead latents resampled from inputs revive (encoder scale,
zeroed Adam state), and the trainer resamples the latents that stay dead."""

import pytest
import torch

from toysae._threads import torch_threads
from toysae.data import SyntheticConfig, SyntheticData
from toysae.sae import ReLUSAE, TrainConfig, resample_dead_latents_, train_sae

D = 12
TINY = SyntheticConfig(d=D, n_features=8, mean_active=2.0, decay=0.9, correlation="none",
                       orthogonal=True, seed=0)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny tensors: a second thread only adds fork/join waits on a busy machine.
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def toy():
    return SyntheticData(TINY)


# -- dead latents ---------------------------------------------------------------
def test_resampling_revives_dead_latents(toy):
    sae = ReLUSAE(D, 16, seed=0)
    dead = torch.zeros(16, dtype=torch.bool)
    dead[:5] = True
    with torch.no_grad():
        sae.b_enc[:5] = -100.0
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3)
    x = torch.from_numpy(toy.sample(512, seed=2).x)
    assert (x.norm(dim=1) == 0).any()  # empty samples must never become atoms
    sae.loss(x, 0.1).total.backward()
    opt.step()
    sae.normalize_decoder_()
    assert (sae(x).codes[:, :5] == 0).all()
    alive_norm = float(sae.encoder_norms()[5:].mean())
    moved = resample_dead_latents_(sae, opt, dead, x, encoder_scale=0.2,
                                   generator=torch.Generator().manual_seed(0))
    assert moved == 5
    assert (sae(x).codes[:, :5] > 0).any(0).all()  # every one fires again
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(16))
    torch.testing.assert_close(sae.encoder_norms()[:5], torch.full((5,), 0.2 * alive_norm))
    assert (sae.b_enc[:5] == 0).all()
    # each new atom is one of the inputs, normalised
    cos = (sae.W_dec[:5].detach() @ (x / x.norm(dim=1, keepdim=True).clamp_min(1e-9)).T)
    cos = cos.max(1).values
    torch.testing.assert_close(cos, torch.ones(5))
    state = opt.state[sae.W_enc]
    assert (state["exp_avg"][:, :5] == 0).all() and (state["exp_avg_sq"][:, :5] == 0).all()
    assert (state["exp_avg_sq"][:, 5:] != 0).any()
    assert (opt.state[sae.W_dec]["exp_avg"][:5] == 0).all()


def test_trainer_resamples_latents_that_stay_dead(toy):
    sae = ReLUSAE(D, 16, seed=0)
    with torch.no_grad():
        sae.b_enc[:4] = -100.0
    cfg = TrainConfig(n_samples=64 * 60, batch_size=64, dead_window=10, resample_every=20,
                      resample_until=0.5, sparsity_coef=0.01)
    res = train_sae(sae, toy, cfg, progress=False)
    assert res.n_resampled >= 4
    codes = sae(toy.sample(2048, seed=7).x).codes
    assert (codes[:, :4] > 0).any(0).all()
    off = TrainConfig(n_samples=64 * 60, batch_size=64, dead_window=10, resample_every=0)
    sae2 = ReLUSAE(D, 16, seed=0)
    with torch.no_grad():
        sae2.b_enc[:4] = -100.0
    res2 = train_sae(sae2, toy, off, progress=False)
    assert res2.n_resampled == 0 and res2.history["dead"][-1] >= 4
