"""``toysae.sae.matryoshka``: the Matryoshka SAE: the nested prefixes' losses, that a prefix
is trained on its own, bad input."""

import numpy as np
import pytest
import torch

from toysae._threads import torch_threads
from toysae.data import SyntheticConfig, SyntheticData
from toysae.sae import BatchTopKSAE, MatryoshkaSAE, TrainConfig, make_sae, train_sae

D, WIDTH = 10, 24


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with torch_threads(1):
        yield


def _x(n=64, seed=0):
    return torch.rand(n, D, generator=torch.Generator().manual_seed(seed))


def test_prefix_sizes_end_with_the_width_and_round_trip():
    sae = MatryoshkaSAE(D, WIDTH, prefix_sizes=[3, 10], k=2)
    assert sae.prefix_sizes == [3, 10, WIDTH]
    assert MatryoshkaSAE(D, WIDTH, prefix_sizes=(5, WIDTH)).prefix_sizes == [5, WIDTH]
    assert MatryoshkaSAE(D, WIDTH).prefix_sizes == [3, 6, 12, 24]
    assert MatryoshkaSAE(D, 2, k=1).prefix_sizes == [1, 2]
    rebuilt = make_sae("matryoshka", **sae.config())
    assert rebuilt.config() == sae.config() and rebuilt.prefix_sizes == [3, 10, WIDTH]
    # the same parameters and initialisation as BatchTopK at the same seed
    plain = BatchTopKSAE(D, WIDTH, k=2)
    for a, b in zip(sae.parameters(), plain.parameters(), strict=True):
        assert torch.equal(a, b)


def test_loss_is_the_sum_of_every_prefix_reconstruction():
    sae = MatryoshkaSAE(D, WIDTH, prefix_sizes=[2, 7, 15], k=4, seed=1)
    with torch.no_grad():
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(0))
        sae.b_enc[:2] = 5.0  # the smallest prefix's latents fire in this batch
    sae.train()
    x = _x()
    out = sae(x)
    parts = sae.loss_from_output(x, out)
    expected = []
    for m in (2, 7, 15, WIDTH):
        codes = out.codes.clone()
        codes[:, m:] = 0  # latents beyond the prefix zeroed
        x_hat = codes @ sae.W_dec + sae.b_dec
        expected.append(0.5 * ((x - x_hat) ** 2).sum(1).mean())
    torch.testing.assert_close(parts.reconstruction, expected[-1])
    torch.testing.assert_close(parts.auxiliary, sum(expected[:-1]))
    torch.testing.assert_close(parts.total, sum(expected))
    torch.testing.assert_close(sae.prefix_losses(x, out.codes), torch.stack(expected))
    torch.testing.assert_close(sae.prefix_reconstructions(out.codes)[-1], out.x_hat)
    # the smallest prefix's loss reaches its own latents and no others
    sae.prefix_losses(x, out.codes)[0].backward()
    g = sae.W_dec.grad
    assert g[:2].abs().sum() > 0 and g[2:].abs().max() == 0
    # with one prefix it is BatchTopK: no auxiliary term without dead latents
    one = MatryoshkaSAE(D, WIDTH, prefix_sizes=[WIDTH], k=4, seed=1)
    one.train()
    assert float(one.loss(x).auxiliary) == 0.0


def test_the_first_prefix_is_trained_to_reconstruct_alone():
    # 8 features of decaying frequency; the first 2 latents alone must explain most of x.
    toy = SyntheticData(SyntheticConfig(d=12, n_features=8, mean_active=2.0, decay=0.7,
                                        correlation="none", orthogonal=True, seed=0))
    cfg = TrainConfig(n_samples=30_000, batch_size=128, lr=1e-2, log_every=100)
    X = toy.sample(4096, seed=7).x
    errors = {}
    for name, cls in (("matryoshka", MatryoshkaSAE), ("batchtopk", BatchTopKSAE)):
        kwargs = {"prefix_sizes": [2, 16]} if name == "matryoshka" else {}
        sae = cls(12, 16, k=2, seed=0, **kwargs)
        train_sae(sae, toy, cfg, progress=False)
        with torch.no_grad():
            x = torch.from_numpy(X).float()
            codes = sae.encode(x)
            codes[:, 2:] = 0
            x_hat = codes @ sae.W_dec + sae.b_dec
        errors[name] = float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    # the plain SAE's first two latents are two arbitrary latents of sixteen
    assert errors["matryoshka"] < 0.75 * errors["batchtopk"], errors
    assert np.isfinite(list(errors.values())).all()


@pytest.mark.parametrize("bad, match", [([4, 4], "strictly increasing"),
                                        ([8, 4], "strictly increasing"),
                                        ([4, WIDTH + 1], r"<= width \(24\)"),
                                        ([0, 4], ">= 1"), ([], "empty")])
def test_bad_prefix_sizes_are_named(bad, match):
    with pytest.raises(ValueError, match="prefix_sizes") as err:
        MatryoshkaSAE(D, WIDTH, prefix_sizes=bad)
    assert err.match(match)


def test_prefix_sizes_of_the_wrong_type_are_named():
    with pytest.raises(TypeError, match="prefix_sizes"):
        MatryoshkaSAE(D, WIDTH, prefix_sizes=4)
    with pytest.raises(TypeError, match="prefix_sizes"):
        MatryoshkaSAE(D, WIDTH, prefix_sizes=[2.5, 8])
    with pytest.raises(TypeError, match="prefix_sizes"):
        MatryoshkaSAE(D, WIDTH, prefix_sizes="48")


def test_on_a_toy_tree_matryoshka_absorbs_less_than_batchtopk_at_the_same_l0():
    """A parent fires on half the samples with one of three exclusive children always
    beside it, among six independent features (true L0 2.76). At k = 2 BatchTopK merges
    the parent into its children's latents on about a third of the parent's samples
    (measured on four seeds: 0.35 each); Matryoshka, whose one-latent prefix must
    reconstruct alone, keeps a parent latent that fires (0.0 on the same seeds).
    The advantage depends on the magnitudes: with folded-normal magnitudes of mean 1
    and spread 0.25 instead of uniform ones, Matryoshka absorbed as much as BatchTopK
    (0.57-0.67 against 0.67, two seeds), so this test pins the uniform case."""
    from toysae.metrics import absorption_rate, l0

    hierarchy = ((0, 1), (0, 2), (0, 3))
    rates = (0.5, 1.0, 1.0, 1.0) + (0.3,) * 6
    cfg = SyntheticConfig(d=16, n_features=len(rates), firing="explicit", rates=rates,
                          hierarchy=hierarchy, exclusive_children=True, orthogonal=True,
                          correlation="none", magnitude="uniform", seed=0)
    data = SyntheticData(cfg)
    X, ev = data.sample(32768, seed=1).x, data.sample(8192, seed=2)
    for seed in (0, 1):
        tc = TrainConfig(n_samples=150_000, batch_size=256, lr=1e-2, seed=seed, resample_every=0)
        rates_by_arch, l0s = {}, []
        for arch, extra in [("batchtopk", {}), ("matryoshka", {"prefix_sizes": (1,)})]:
            sae = train_sae(arch, X, tc, width=len(rates),
                            sae_kwargs={"k": 2, "seed": seed, **extra}, progress=False).sae
            with torch.no_grad():
                Z = sae.eval().encode(torch.from_numpy(ev.x)).numpy()
            rates_by_arch[arch] = absorption_rate(Z, ev.codes, data.features,
                                                  sae.dictionary.numpy(), hierarchy)[0]
            l0s.append(l0(Z))
        assert abs(l0s[0] - l0s[1]) < 0.1  # the same L0
        assert rates_by_arch["batchtopk"] > 0.2, rates_by_arch
        assert rates_by_arch["matryoshka"] < 0.05, rates_by_arch
