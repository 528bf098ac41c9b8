"""``toysae.models.residual``: the residual toy learns its teacher, mlp_post is positively
skewed, splicing a site's own activation is exact (over a member axis too), and the KL
and cross-entropy on hand-made logits."""

import math

import pytest
import torch

from toysae._threads import torch_threads
from toysae.models import ResidualToy, ResidualToyConfig
from toysae.models.residual import kl_divergence


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with torch_threads(1):
        yield


def test_residual_toy_learns_its_teacher(host):
    report = host.fit_report
    assert report.success and report.metrics["explained"] >= ResidualToy.MIN_EXPLAINED
    assert report.metrics["kl"] <= 0.15 * report.metrics["teacher_spread"]
    assert host.trained and not any(p.requires_grad for p in host.parameters())
    cfg = host.config
    assert len(cfg.functional_features) + len(cfg.nuisance_features) == cfg.data.n_features
    # nuisance features carry more variance than the functional ones, and do not move the teacher
    codes = host.sample(5000, seed=1).codes
    power = codes.square().sum(0)
    assert power[cfg.nuisance_features].sum() > power[cfg.functional_features].sum()
    shuffled = codes.clone()
    shuffled[:, cfg.nuisance_features] = shuffled[torch.randperm(5000), :][:,
                                                                          cfg.nuisance_features]
    torch.testing.assert_close(host.teacher_logits(codes), host.teacher_logits(shuffled))


def test_mlp_post_is_positive_skewed(host, held):
    act = host.forward_cache(held.inputs)["mlp_post"]
    assert (act >= 0).all() and float((act > 0).float().mean()) < 0.9
    centred = act - act.mean(0)
    skew = (centred ** 3).mean(0) / centred.pow(2).mean(0).clamp_min(1e-12) ** 1.5
    assert float(skew.median()) > 0.5


@pytest.mark.parametrize("site", ResidualToy.sites)
def test_splicing_the_sites_own_activation_is_exact(host, held, site):
    cache = host.forward_cache(held.inputs)
    out = host.forward_from(site, cache[site], cache)
    assert torch.equal(out["output"], cache["output"])
    ce = host.downstream_loss(cache["output"], held.targets)
    assert float(host.downstream_loss(out["output"], held.targets) - ce) == 0.0
    zeros = host.forward_from(site, torch.zeros_like(cache[site]), cache)["output"]
    assert float(host.downstream_loss(zeros, held.targets) - ce) > 0.1  # ablation hurts
    assert float(host.divergence(cache["output"], cache["output"])) == 0.0


def test_splicing_broadcasts_over_a_member_axis(host, held):
    cache = host.forward_cache(held.inputs)
    stacked = torch.stack([cache["resid_pre"], torch.zeros_like(cache["resid_pre"])])
    out = host.forward_from("resid_pre", stacked, cache)["output"]
    kl = host.divergence(cache["output"], out)
    assert kl.shape == (2,) and float(kl[0]) == 0.0 and float(kl[1]) > 0.1


def test_kl_and_ce_on_hand_made_logits():
    same = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    assert float(kl_divergence(same, same)) == 0.0
    # KL(p || q) for p = (1/2, 1/2), q = softmax(0, log 3) = (1/4, 3/4)
    p, q = torch.zeros(1, 2), torch.tensor([[0.0, math.log(3.0)]])
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert float(kl_divergence(p, q)) == pytest.approx(expected, rel=1e-6)
    assert float(kl_divergence(q, p)) != pytest.approx(expected)  # the direction matters
    host = ResidualToy(ResidualToyConfig(n_classes=2))
    ce = host.downstream_loss(q, torch.tensor([1]))
    assert float(ce) == pytest.approx(-math.log(0.75), rel=1e-6)
