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


# -- the width-equal remedies: worst inputs, residual directions, duplicates ------------
def test_worst_inputs_and_residual_directions_point_at_the_missing_feature():
    """A 4-latent SAE on 4 orthonormal features knows 0-2; every input holds feature 3 at a
    known size beside the others, one at a larger size. "worst" moves the dead latent onto
    that input; "residual" makes its atom feature 3 itself, "input" the whole input."""
    from toysae.sae.resampling import reinit_dead_latents_

    F = torch.eye(6)[:4]
    sae = ReLUSAE(6, 4, decoder_bias=False, seed=0)
    with torch.no_grad():
        sae.W_dec[:3], sae.W_enc[:, :3], sae.b_enc[:3] = F[:3], F[:3].T, 0.0
    codes = torch.tensor([[1.0, 0.5, 0.0, 0.2], [0.3, 1.0, 0.0, 0.9], [0.0, 0.0, 1.0, 0.1]])
    x = codes @ F
    dead = torch.tensor([False, False, False, True])
    for direction, expected in [("residual", F[3]), ("input", x[1] / x[1].norm())]:
        probe = ReLUSAE(6, 4, decoder_bias=False, seed=0)
        probe.load_state_dict(sae.state_dict())
        with torch.no_grad():
            probe.W_dec[3] = torch.tensor([0.0, 0, 0, 0, 1, 0])  # off every feature
            probe.W_enc[:, 3], probe.b_enc[3] = 0.0, -1.0  # never fires
        idx = reinit_dead_latents_(probe, dead, x, pick="worst", direction=direction)
        assert idx.tolist() == [3]
        assert torch.allclose(probe.W_dec[3], expected, atol=1e-5), direction


def test_worst_moves_no_more_latents_than_there_are_inputs_with_a_loss(toy):
    from toysae.sae.resampling import reinit_dead_latents_

    sae = ReLUSAE(D, 16, seed=0)
    x = torch.from_numpy(toy.sample(3, seed=5).x)
    x = x[x.norm(dim=1) > 0]
    dead = torch.ones(16, dtype=torch.bool)
    idx = reinit_dead_latents_(sae, dead, x, pick="worst")
    assert idx.numel() == x.shape[0]  # one input each; the rest wait for the next round


def test_duplicate_latents_flags_all_but_the_first_of_each_parallel_group():
    from toysae.sae.resampling import duplicate_latents

    D_ = torch.tensor([[1.0, 0, 0], [0, 1, 0], [2, 0.01, 0], [0, 0, 1], [0, 0.99, 0.05]])
    alive = torch.ones(5, dtype=torch.bool)
    assert duplicate_latents(D_, alive, 0.95).tolist() == [False, False, True, False, True]
    # a dead twin is no duplicate, and a live atom beside only a dead twin keeps its place
    alive[0] = False
    assert duplicate_latents(D_, alive, 0.95).tolist() == [False, False, False, False, True]
    assert not duplicate_latents(D_, torch.ones(5, dtype=torch.bool), 1.0).any()


def test_the_trainer_resamples_a_duplicate_that_never_dies(toy):
    """Two latents start as the same atom; without duplicate resampling they stay parallel
    (a flat direction of the objective), with it one of them moves."""
    def trained(cos):
        sae = ReLUSAE(D, 8, seed=1)
        with torch.no_grad():
            sae.W_dec[1], sae.W_enc[:, 1], sae.b_enc[1] = sae.W_dec[0], sae.W_enc[:, 0], \
                sae.b_enc[0]
        cfg = TrainConfig(n_samples=256 * 60, batch_size=256, lr=1e-3, resample_every=20,
                          resample_until=1.0, dead_window=1000, resample_duplicates=cos,
                          log_every=20)
        result = train_sae(sae, toy, cfg, progress=False)
        D_ = sae.dictionary
        return result.n_resampled, float(D_[0] @ D_[1] / D_[0].norm() / D_[1].norm())

    moved, _ = trained(0.95)
    still, cos = trained(0.0)
    assert moved >= 1 and still == 0
    assert cos > 0.95  # left alone, the pair stays parallel


@pytest.mark.parametrize(("field", "value"), [("resample_inputs", "best"),
                                              ("resample_direction", "output"),
                                              ("resample_duplicates", 1.5),
                                              ("resample_duplicates", -0.1)])
def test_resampling_options_are_checked(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_resample_max_moves_at_most_its_share_of_the_width_a_round(toy):
    """Every latent of a 64-wide SAE silenced: uncapped, the first round moves all of them;
    with resample_max 0.05, three (5% of 64) a round."""
    def moved(cap):
        sae = ReLUSAE(D, 64, seed=0)
        with torch.no_grad():
            sae.b_enc[:] = -100.0
        cfg = TrainConfig(n_samples=256 * 12, batch_size=256, lr=1e-3, resample_every=10,
                          resample_until=1.0, dead_window=5, resample_max=cap, log_every=4,
                          sparsity_coef=0.0)
        return train_sae(sae, toy, cfg, progress=False).n_resampled

    assert moved(None) == 64
    assert moved(0.05) == 3


def test_resample_after_sets_the_silence_that_resamples_apart_from_dead_window(toy):
    """With dead_window 1000 nothing is ever dead for the engine's count; resample_after 5
    still resamples the silenced latents, and the history's dead count stays 0."""
    sae = ReLUSAE(D, 16, seed=0)
    with torch.no_grad():
        sae.b_enc[:4] = -100.0
    cfg = TrainConfig(n_samples=256 * 12, batch_size=256, lr=1e-3, resample_every=10,
                      resample_until=1.0, dead_window=1000, resample_after=5, log_every=4)
    result = train_sae(sae, toy, cfg, progress=False)
    assert result.n_resampled >= 4
    assert max(result.history["dead"]) == 0
    with pytest.raises(ValueError, match="resample_after"):
        TrainConfig(resample_after=0)
    with pytest.raises(ValueError, match="resample_max"):
        TrainConfig(resample_max=0.0)


def test_reinit_refuses_an_unknown_pick_or_direction(toy):
    from toysae.sae.resampling import reinit_dead_latents_

    sae, x = ReLUSAE(D, 4, seed=0), torch.from_numpy(toy.sample(8, seed=1).x)
    dead = torch.ones(4, dtype=torch.bool)
    with pytest.raises(ValueError, match="pick"):
        reinit_dead_latents_(sae, dead, x, pick="best")
    with pytest.raises(ValueError, match="direction"):
        reinit_dead_latents_(sae, dead, x, direction="output")
