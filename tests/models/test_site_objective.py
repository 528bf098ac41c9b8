"""``toysae.models.site_objective``: the site objectives train SAEs inside a host: local
recovers the functional and nuisance features, e2e keeps the output, e2e_ds reports its
downstream terms, TMS against its exact ground truth, the batched grid equals the
sequential one; bad input is refused."""

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from toysae._threads import torch_threads
from toysae.data import SyntheticConfig
from toysae.host_metrics import ground_truth_split, mlp_feature_proxy, splice_metrics
from toysae.models import ResidualToy, ResidualToyConfig, SiteObjective, TMSConfig
from toysae.sae import ReLUSAE, TrainConfig, train_sae

SMALL = ResidualToyConfig()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with torch_threads(1):
        yield


def test_local_sae_recovers_functional_and_nuisance_features(host, held):
    sae = ReLUSAE(host.input_dim, 96, seed=0)
    cfg = TrainConfig(n_samples=300_000, batch_size=256, lr=3e-3, sparsity_coef=0.1)
    train_sae(sae, host.data, cfg, objective=SiteObjective(host, "resid_pre", "local"),
              progress=False)
    split = ground_truth_split(host.data.features, sae.dictionary,
                               host.config.functional_features, host.config.nuisance_features)
    assert split["functional_mmcs"] >= 0.95 and split["nuisance_mmcs"] >= 0.95
    m = splice_metrics(host, sae, "resid_pre", held)
    assert m["fvu"] < 0.15 and 0 < m["l0"] < 20 and m["n_eval"] == 4000


def test_e2e_sae_keeps_the_output(host, held):
    sae = ReLUSAE(host.input_dim, 96, seed=0)
    cfg = TrainConfig(n_samples=300_000, batch_size=256, lr=3e-3, sparsity_coef=0.03)
    res = train_sae(sae, host.data, cfg, objective=SiteObjective(host, "resid_pre", "e2e"),
                    progress=False)
    assert "kl" in res.history and "reconstruction" not in res.history
    assert res.history["kl"][-1] < 0.5 * res.history["kl"][0]
    m = splice_metrics(host, sae, "resid_pre", held)
    assert m["kl"] < 0.03 and m["ce_increase"] < 0.03
    zero = host.forward_from("resid_pre", torch.zeros_like(held.inputs),
                             host.forward_cache(held.inputs))["output"]
    assert float(host.divergence(host.forward_cache(held.inputs)["output"], zero)) > 10 * m["kl"]
    # a local SAE at this CE increase needs about 40 active latents (measured); e2e far fewer
    assert m["l0"] < 20


def test_e2e_ds_reports_downstream_terms_and_mlp_post_works(host, held):
    sae = ReLUSAE(host.config.hidden, 96, seed=0)
    cfg = TrainConfig(n_samples=20_000, batch_size=256, lr=3e-3, sparsity_coef=0.01)
    res = train_sae(sae, host.data, cfg, objective=SiteObjective(host, "mlp_post", "e2e_ds"),
                    progress=False)
    assert {"kl", "downstream"} <= set(res.history)
    assert splice_metrics(host, sae, "mlp_post", held)["n_eval"] == 4000
    # the downstream term enters the loss the engine logs
    np.testing.assert_allclose(res.history["loss"], res.history["kl"] + res.history["downstream"]
                               + res.history["sparsity"] + res.history["auxiliary"], rtol=1e-5)
    # both terms by hand on one batch, in float64 from the host's weights: the KL of the
    # patched output and the per-coordinate squared error of the one later site, resid_post
    objective = SiteObjective(host, "mlp_post", "e2e_ds")
    batch = held.inputs[:256]
    site = objective.sae_input(batch)
    with torch.no_grad():
        out = sae(site)
        parts = objective(batch, site, out)
        doubled = SiteObjective(host, "mlp_post", "e2e_ds", downstream_coef=2.0)(batch, site, out)
    x = batch.double().numpy()
    W_in, b_in, W_out, U = (t.detach().double().numpy() for t in
                            (host.W_in, host.b_in, host.W_out, host.U))
    resid_post = x + np.maximum(x @ W_in + b_in, 0.0) @ W_out
    patched = x + out.x_hat.double().numpy() @ W_out
    log_p, log_q = (z - logsumexp(z, axis=1, keepdims=True) for z in (resid_post @ U,
                                                                      patched @ U))
    kl = float((np.exp(log_p) * (log_p - log_q)).sum(axis=1).mean())
    downstream = float(((patched - resid_post) ** 2).sum(axis=1).mean() / host.input_dim)
    assert set(parts) == {"kl", "downstream"} and downstream > 0
    assert float(parts["kl"]) == pytest.approx(kl, rel=1e-4)
    assert float(parts["downstream"]) == pytest.approx(downstream, rel=1e-4)
    assert float(doubled["downstream"]) == pytest.approx(2 * downstream, rel=1e-4)
    assert float(doubled["kl"]) == float(parts["kl"])
    # the SAE spliced at mlp_post keeps the output: far closer than ablating the site
    cache = host.forward_cache(held.inputs)
    zero = host.forward_from("mlp_post", torch.zeros_like(cache["mlp_post"]), cache)["output"]
    assert splice_metrics(host, sae, "mlp_post", held)["kl"] < 0.2 * float(
        host.divergence(cache["output"], zero))
    proxy = mlp_feature_proxy(host)
    assert proxy.shape == (host.config.data.n_features, host.config.hidden)
    np.testing.assert_allclose(np.linalg.norm(proxy, axis=1)[np.linalg.norm(proxy, axis=1) > 0],
                               1.0, atol=1e-5)


def test_tms_site_objective_and_exact_ground_truth(tms):
    sae = ReLUSAE(tms.config.hidden, 20, seed=0)
    data = tms.sample(100_000, seed=5).inputs.numpy()
    cfg = TrainConfig(n_samples=100_000, batch_size=256, lr=3e-3, sparsity_coef=0.01)
    res = train_sae(sae, data, cfg, objective=SiteObjective(tms, "hidden", "e2e"),
                    progress=False)
    m = splice_metrics(tms, sae, "hidden", tms.sample(2000, seed=6))
    assert m["ce_increase"] < tms.fit_report.metrics["zero_loss"]
    # TMS outputs are no distributions: its divergence is logged by what it is, not as "kl"
    assert "weighted_sq_distance" in res.history and "kl" not in res.history
    assert "weighted_sq_distance" in m and "kl" not in m
    assert tms.features.shape == (20, 5)
    # exact: feature i alone (at any magnitude) puts the hidden site along features[i], and
    # every hidden activation is the codes times the features scaled by their lengths there
    F = tms.features
    single = tms.forward_cache(0.7 * torch.eye(20))["hidden"]
    lengths = single.norm(dim=1) / 0.7
    torch.testing.assert_close(single / single.norm(dim=1, keepdim=True), F)
    torch.testing.assert_close(F.norm(dim=1), torch.ones(20))
    codes = tms.sample(500, seed=7).codes
    assert (codes > 0).sum(1).max() > 1  # superposed samples, not one feature at a time
    torch.testing.assert_close(tms.forward_cache(codes)["hidden"],
                               codes @ (lengths[:, None] * F), rtol=1e-5, atol=1e-6)


def test_bad_input_is_refused(host):
    untrained = ResidualToy(SMALL)
    with pytest.raises(ValueError, match="not trained"):
        SiteObjective(untrained, "resid_pre")
    with pytest.raises(ValueError, match="site must be one of"):
        SiteObjective(host, "attn_out")
    with pytest.raises(TypeError, match="site"):
        SiteObjective(host, 3)
    with pytest.raises(ValueError, match="mode"):
        SiteObjective(host, "resid_pre", "global")
    with pytest.raises(ValueError, match="downstream_coef"):
        SiteObjective(host, "resid_pre", "e2e_ds", downstream_coef=-1.0)
    with pytest.raises(TypeError, match="host"):
        SiteObjective(object(), "resid_pre")
    with pytest.raises(ValueError, match="d=32 but site 'mlp_post'"):
        train_sae(ReLUSAE(32, 8), host.data, TrainConfig(n_samples=512),
                  objective=SiteObjective(host, "mlp_post"), progress=False)
    with pytest.raises(ValueError, match="sparsity_coef"):
        TrainConfig(sparsity_coef=-0.1)
    with pytest.raises(ValueError, match=r"functional\[0\] must be <= 47"):
        ResidualToyConfig(functional=(48,))
    with pytest.raises(ValueError, match="functional must name at least one"):
        ResidualToyConfig(functional=())
    with pytest.raises(ValueError, match="every feature"):
        ResidualToyConfig(functional=tuple(range(48)))
    with pytest.raises(ValueError, match="n_classes must be >= 2"):
        ResidualToyConfig(n_classes=0)
    with pytest.raises(TypeError, match="data"):
        ResidualToyConfig(data={"d": 3})
    with pytest.raises(ValueError, match="hidden"):
        TMSConfig(hidden=0)
    with pytest.raises(ValueError, match="feature_probability"):
        TMSConfig(feature_probability=0.0)
    assert ResidualToyConfig.from_json(SMALL.to_json()) == SMALL
    assert isinstance(SMALL.data, SyntheticConfig)


@pytest.mark.parametrize("mode", ["e2e", "e2e_ds"])
def test_batched_grid_through_the_host_equals_sequential(host, mode):
    from toysae.sae import train_grid, train_grid_sequential

    cfg = TrainConfig(n_samples=128 * 40, batch_size=128, lr=3e-3, log_every=20,
                      dead_window=10, resample_every=15)
    objective = SiteObjective(host, "mlp_post", mode)
    args = (host.data, [0.003, 1.0], [16, 48], cfg)
    batched = train_grid(*args, objective=objective, d=host.config.hidden, progress=False)
    sequential = train_grid_sequential(*args, objective=objective, d=host.config.hidden,
                                       progress=False)
    assert sum(m.n_resampled for m in sequential.members) > 0
    for a, b in zip(batched.members, sequential.members, strict=True):
        assert a.n_resampled == b.n_resampled
        np.testing.assert_allclose(a.history["kl"], b.history["kl"], rtol=1e-3, atol=1e-6)
        torch.testing.assert_close(a.sae.W_dec, b.sae.W_dec, atol=1e-4, rtol=0)
