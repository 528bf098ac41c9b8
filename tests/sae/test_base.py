"""``toysae.sae.base``: what every architecture shares: the registry and what ``register``
checks, shapes, the dictionary and config round trip, seeded initial atoms (none drawn on
the meta device), the loss parts, decoder-row constraints, ghost grads, the decoder bias
flag, and bad input (architecture, sizes, seeds, coefficients, inputs)."""

import pytest
import torch

from toysae._threads import torch_threads
from toysae._validation import SEED_MAX
from toysae.sae import (
    ARCHITECTURES,
    BatchTopKSAE,
    GatedSAE,
    JumpReLUSAE,
    MatryoshkaSAE,
    ReLUSAE,
    TiedSAE,
    TopKSAE,
    make_sae,
    register,
)
from toysae.sae.matching_pursuit import MatchingPursuitSAE

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


SHIPPED = {"relu": ReLUSAE, "tied": TiedSAE, "topk": TopKSAE, "batchtopk": BatchTopKSAE,
           "jumprelu": JumpReLUSAE, "gated": GatedSAE, "matryoshka": MatryoshkaSAE,
           "matching_pursuit": MatchingPursuitSAE}


def test_registry_holds_every_architecture():
    # The shipped eight, each under its name; a new architecture may join them
    # (tests/test_new_architecture.py).
    assert set(SHIPPED) <= set(ARCHITECTURES)
    assert {name: ARCHITECTURES[name] for name in SHIPPED} == SHIPPED
    for name, cls in ARCHITECTURES.items():
        assert cls.architecture == name
    # listing order, the order the experiments run and tabulate them in
    assert [name for name in ARCHITECTURES if name in SHIPPED] == list(SHIPPED)


def test_register_checks_what_an_architecture_declares():
    class NoPenalty(ReLUSAE):
        penalty_kind = "l2"

    class NoAuxK(ReLUSAE):
        dead_latent_loss = "auxk"

    with pytest.raises(ValueError, match=r"NoPenalty.penalty_kind must be one of"):
        register("nopenalty")(NoPenalty)
    with pytest.raises(ValueError, match=r"NoAuxK.dead_latent_loss is 'auxk' but the class "
                                         r"defines no aux_k_loss"):
        register("noauxk")(NoAuxK)
    with pytest.raises(RuntimeError, match="registered twice"):
        register("relu")(NoAuxK)
    assert "nopenalty" not in ARCHITECTURES and "noauxk" not in ARCHITECTURES


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_shapes_dictionary_and_config_round_trip(name):
    sae = _sae(name, seed=3)
    out = sae(_x())
    assert out.x_hat.shape == (64, D) and out.codes.shape == (64, WIDTH)
    pre = sae.encode_pre(sae.check_input(_x()))  # relu's fused forward keeps no pre_acts
    assert (out.pre_acts if out.pre_acts is not None else pre).shape == (64, WIDTH)
    assert out.pre_acts is not None or name == "relu"
    assert (out.codes >= 0).all()
    D_ = sae.dictionary
    assert D_.shape == (WIDTH, D) and D_.dtype == torch.float32 and not D_.requires_grad
    torch.testing.assert_close(D_.norm(dim=1), torch.ones(WIDTH))
    D_.zero_()  # a copy: the SAE is untouched
    assert sae.dictionary.abs().sum() > 0
    rebuilt = make_sae(name, **sae.config())
    for a, b in zip(sae.parameters(), rebuilt.parameters(), strict=True):
        assert torch.equal(a, b)
    sae.eval()  # BatchTopK's training forward is batch-level; compare like with like
    assert torch.allclose(sae.encode(_x()), sae(_x()).codes)
    # numpy in, same answer
    assert torch.allclose(sae.encode(_x().numpy()), sae.encode(_x()))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_seeded_init_is_reproducible_and_seed_dependent(name):
    a, b, c = _sae(name, 1), _sae(name, 1), _sae(name, 2)
    assert torch.equal(a.dictionary, b.dictionary)
    assert not torch.equal(a.dictionary, c.dictionary)


def test_loss_parts_follow_the_design_objective():
    sae = ReLUSAE(D, WIDTH, seed=0)
    x = _x()
    out = sae(x)
    parts = sae.loss(x, 0.2)
    expected_recon = 0.5 * ((x - out.x_hat) ** 2).sum(1).mean()
    torch.testing.assert_close(parts.reconstruction, expected_recon)
    torch.testing.assert_close(parts.sparsity, 0.2 * out.codes.abs().sum(1).mean())
    torch.testing.assert_close(parts.total, parts.reconstruction + parts.sparsity)
    assert float(parts.auxiliary) == 0.0


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_remove_parallel_grad_leaves_only_tangent_directions(name):
    sae = _sae(name)
    sae.loss(_x(), 0.1).total.backward()
    W = sae.decoder_weight
    before = W.grad.clone()
    assert ((before * W).sum(1).abs() > 1e-6).any()  # there was a radial part to remove
    sae.remove_parallel_grad_()
    torch.testing.assert_close((W.grad * W).sum(1), torch.zeros(WIDTH), atol=1e-6, rtol=0)
    tangent = before - (before * W).sum(1, keepdim=True) * W
    torch.testing.assert_close(W.grad, tangent)


def test_normalize_decoder_scales_rows_to_unit_norm():
    sae = ReLUSAE(D, WIDTH)
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.1, 5, WIDTH)[:, None])
    sae.normalize_decoder_()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(WIDTH))


def test_ghost_grads_reach_dead_latents():
    sae = ReLUSAE(D, WIDTH, seed=0)
    with torch.no_grad():
        sae.b_enc[:6] = -50.0  # latents 0..5 never fire
    x = _x()
    dead = torch.zeros(WIDTH, dtype=torch.bool)
    dead[:6] = True
    sae.loss(x, 0.1).total.backward()
    assert sae.W_enc.grad[:, :6].abs().max() == 0 and sae.W_dec.grad[:6].abs().max() == 0
    sae.zero_grad()
    parts = sae.loss(x, 0.1, dead=dead)
    assert parts.auxiliary > 0
    parts.total.backward()
    assert (sae.W_enc.grad[:, :6].abs().sum(0) > 0).all()
    assert (sae.W_dec.grad[:6].abs().sum(1) > 0).all()


# -- bad input ------------------------------------------------------------------
def test_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="architecture"):
        make_sae("resnet", D, WIDTH)
    with pytest.raises(TypeError, match="architecture"):
        make_sae(3, D, WIDTH)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_bad_width_and_d(name):
    with pytest.raises(ValueError, match="width"):
        make_sae(name, D, 0, **KWARGS.get(name, {}))
    with pytest.raises(ValueError, match="d "):
        make_sae(name, 0, WIDTH, **KWARGS.get(name, {}))
    with pytest.raises(TypeError, match="width"):
        make_sae(name, D, 2.5, **KWARGS.get(name, {}))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_input_of_the_wrong_width_is_rejected(name):
    sae = _sae(name)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 10\)"):
        sae(torch.rand(5, D + 1))
    with pytest.raises(ValueError, match="x must have shape"):
        sae.encode(torch.rand(D))
    with pytest.raises(TypeError, match="x must be"):
        sae.encode([[0.0] * D])


def test_decoder_bias_switches_the_pre_encoder_bias():
    from toysae.sae import ReLUSAEEnsemble, TrainConfig, train_sae

    x = _x(512, seed=8) + 0.5  # an offset a decoder bias would absorb
    cfg = TrainConfig(n_samples=2048, batch_size=64, lr=1e-2, sparsity_coef=0.01)
    plain = ReLUSAE(D, WIDTH, decoder_bias=False)
    train_sae(plain, x.numpy(), cfg, progress=False)
    assert "b_dec" not in dict(plain.named_parameters()) and not plain.b_dec.any()
    biased = TiedSAE(D, WIDTH, decoder_bias=True)
    train_sae(biased, x.numpy(), cfg, progress=False)
    assert biased.b_dec.abs().sum() > 0  # trained
    torch.testing.assert_close(biased(x).x_hat, biased.encode(x) @ biased.M + biased.b_dec)
    # the encoder side by explicit matrices: x - b_dec before the encoder, b_dec added after
    # the decoder; without the flag, x itself (its b_dec is a zero buffer)
    M, b, b_dec = biased.M.detach(), biased.b.detach(), biased.b_dec.detach()
    codes = torch.relu((x - b_dec) @ M.T + b)
    torch.testing.assert_close(biased.encode(x), codes)
    torch.testing.assert_close(biased(x).x_hat, codes @ M + b_dec)
    assert not torch.allclose(torch.relu(x @ M.T + b), codes)  # the subtraction matters here
    W_enc, b_enc, W_dec = (t.detach() for t in (plain.W_enc, plain.b_enc, plain.W_dec))
    torch.testing.assert_close(plain.encode(x), torch.relu(x @ W_enc + b_enc))
    torch.testing.assert_close(plain(x).x_hat, torch.relu(x @ W_enc + b_enc) @ W_dec)
    relu = ReLUSAE(D, WIDTH, seed=1)  # the default: the pre-encoder bias is on
    with torch.no_grad():
        relu.b_dec.copy_(biased.b_dec)
    W_enc, b_enc, W_dec = (t.detach() for t in (relu.W_enc, relu.b_enc, relu.W_dec))
    codes = torch.relu((x - b_dec) @ W_enc + b_enc)
    torch.testing.assert_close(relu(x).codes, codes)
    torch.testing.assert_close(relu(x).x_hat, codes @ W_dec + b_dec)
    for sae in (plain, biased):  # the flag round-trips through the registry
        rebuilt = make_sae(sae.architecture, **sae.config())
        assert rebuilt.decoder_bias == sae.decoder_bias
    assert TiedSAE(D, WIDTH).config() == {"d": D, "width": WIDTH, "seed": 0}
    with pytest.raises(ValueError, match="decoder_bias=False"):
        ReLUSAEEnsemble.from_saes([plain])
    with pytest.raises(TypeError, match="decoder_bias"):
        ReLUSAE(D, WIDTH, decoder_bias=1)


def test_initial_atoms_are_the_seeded_normal_draws_and_none_are_drawn_on_meta():
    sae = make_sae("relu", 6, 10, seed=3)
    atoms = torch.randn(10, 6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(sae.W_dec.detach(), atoms / atoms.norm(dim=1, keepdim=True))
    with torch.device("meta"):
        shapes_only = make_sae("relu", 6, 10, seed=3)
    assert shapes_only.W_dec.is_meta and tuple(shapes_only.W_dec.shape) == (10, 6)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_sae_constructors_refuse_non_ints_and_big_seeds(name):
    kwargs = {"k": 2} if name in ("topk", "batchtopk", "matryoshka") else {}
    for arg in ("d", "width", "seed", *kwargs):
        for bad in (4.0, "4", True):
            with pytest.raises(TypeError, match=arg):
                make_sae(name, **{"d": 4, "width": 8, "seed": 0, **kwargs, arg: bad})
    with pytest.raises(ValueError, match="seed must be <="):  # torch's own error before
        make_sae(name, 4, 8, seed=2**64, **kwargs)
    assert make_sae(name, 4, 8, seed=SEED_MAX, **kwargs).seed == SEED_MAX


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_sae_loss_refuses_negative_and_non_finite_coefficients(name):
    kwargs = {"k": 2} if name in ("topk", "batchtopk", "matryoshka") else {}
    sae = make_sae(name, 4, 8, **kwargs)
    x = torch.rand(5, 4)
    dead = torch.ones(8, dtype=torch.bool)
    with pytest.raises(ValueError, match="sparsity_coef must be >= 0"):
        sae.loss(x, -0.1)
    with pytest.raises(ValueError, match="sparsity_coef must be finite"):
        sae.loss(x, float("nan"))
    with pytest.raises(TypeError, match="sparsity_coef must be a number"):
        sae.loss(x, "0.1")
    with pytest.raises(ValueError, match="dead_latent_coef must be >= 0"):
        sae.loss(x, 0.1, dead=dead, dead_latent_coef=-1.0)
    assert torch.isfinite(sae.loss(x, 0.1, dead=dead, dead_latent_coef=0.5).total)
