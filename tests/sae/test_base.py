"""SAE architectures: registry, shapes, the maths of each nonlinearity, bad input."""

import pytest
import torch

from toysae._threads import torch_threads
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
           "jumprelu": JumpReLUSAE, "gated": GatedSAE, "matryoshka": MatryoshkaSAE}


def test_registry_holds_every_architecture():
    # The shipped seven, each under its name; a new architecture may join them
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


def test_batchtopk_keeps_k_times_batch_and_learns_a_threshold():
    sae = BatchTopKSAE(D, WIDTH, k=4, momentum=0.5, seed=2)
    with torch.no_grad():
        sae.b_enc.fill_(5.0)
    sae.train()
    x = _x(30)
    out = sae(x)
    assert int((out.codes > 0).sum()) == 4 * 30
    smallest = out.codes[out.codes > 0].min()
    torch.testing.assert_close(sae.threshold, smallest)  # the first batch sets it
    out2 = sae(_x(30, seed=9))
    smallest2 = out2.codes[out2.codes > 0].min()
    torch.testing.assert_close(sae.threshold, smallest + 0.5 * (smallest2 - smallest))
    sae.eval()
    x3 = _x(40, seed=11)
    pre = sae.encode_pre(x3)
    codes = sae.encode(x3)
    assert torch.equal(codes > 0, pre > sae.threshold)
    torch.testing.assert_close(codes[codes > 0], pre[codes > 0])


def test_jumprelu_threshold_gets_pseudo_gradients():
    sae = JumpReLUSAE(D, WIDTH, threshold_init=0.5, bandwidth=0.4, seed=0)
    x = _x(256)
    out = sae(x)
    theta = sae.threshold.detach()
    assert torch.equal(out.codes > 0, out.pre_acts > theta)
    # L0 alone: descent must RAISE thresholds with pre-activations in the window
    sae.penalty(out).backward()
    g = sae.log_threshold.grad
    in_window = ((out.pre_acts - theta).abs() < 0.2).any(0)
    assert in_window.any()
    assert (g[in_window] < 0).all() and (g[~in_window] == 0).all()
    # the L0 term sends nothing to the encoder
    assert sae.W_enc.grad is None or sae.W_enc.grad.abs().max() == 0
    expected = -(((out.pre_acts - theta).abs() < 0.2).float().sum(0) / 0.4) * theta / 256
    torch.testing.assert_close(g, expected)


def test_jumprelu_threshold_moves_under_training():
    from toysae.sae import TrainConfig, train_sae

    sae = JumpReLUSAE(D, WIDTH, threshold_init=0.1, bandwidth=0.1, seed=0)
    before = sae.threshold.detach().clone()
    cfg = TrainConfig(n_samples=4096, batch_size=128, lr=1e-2, sparsity_coef=0.05,
                      resample_every=0)
    train_sae(sae, _x(2048).numpy(), cfg, progress=False)
    moved = (sae.threshold.detach() - before).abs()
    assert moved.max() > 1e-3
    assert (moved > 1e-4).float().mean() > 0.3


def test_tied_weights_stay_tied():
    from toysae.sae import TrainConfig, train_sae

    sae = TiedSAE(D, WIDTH, seed=0)
    train_sae(sae, _x(1024).numpy(), TrainConfig(n_samples=4096, batch_size=64, lr=1e-2,
                                                 sparsity_coef=0.01), progress=False)
    assert [n for n, _ in sae.named_parameters()] == ["M", "b"]
    x = _x(1, seed=3)[0]
    codes = sae.encode(x[None])[0]
    active = int(codes.argmax())
    assert codes[active] > 0
    # the encoder row of an active latent (d code / d x) IS its decoder atom
    jac = torch.autograd.functional.jacobian(lambda v: sae.encode(v[None])[0], x)
    torch.testing.assert_close(jac[active], sae.M.detach()[active])
    one_hot = torch.zeros(1, WIDTH)
    one_hot[0, active] = 1.0
    torch.testing.assert_close(sae.decode(one_hot)[0], sae.M.detach()[active])


def test_gated_magnitude_path_shares_the_gate_weights():
    sae = GatedSAE(D, WIDTH, seed=0)
    with torch.no_grad():
        sae.r_mag.normal_(generator=torch.Generator().manual_seed(0))
        sae.b_mag.normal_(generator=torch.Generator().manual_seed(1))
        sae.b_gate.normal_(generator=torch.Generator().manual_seed(2))
    x = _x()
    proj = (x - sae.b_dec) @ sae.W_gate
    expected = (proj + sae.b_gate > 0) * torch.relu(proj * sae.r_mag.exp() + sae.b_mag)
    torch.testing.assert_close(sae.encode(x), expected)
    parts = sae.loss(x, 0.1)
    gate_aux = 0.5 * ((torch.relu(proj + sae.b_gate) @ sae.W_dec + sae.b_dec - x) ** 2).sum(1)
    torch.testing.assert_close(parts.auxiliary, gate_aux.mean())
    parts.total.backward()
    assert sae.b_gate.grad.abs().max() > 0  # the gate learns through L1 + aux


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


@pytest.mark.parametrize("cls", [TopKSAE, BatchTopKSAE, MatryoshkaSAE])
def test_bad_k(cls):
    with pytest.raises(ValueError, match="k must be <= width"):
        cls(D, WIDTH, k=WIDTH + 1)
    with pytest.raises(ValueError, match="k must be >= 1"):
        cls(D, WIDTH, k=0)
    with pytest.raises(ValueError, match="aux_k"):
        cls(D, WIDTH, k=2, aux_k=WIDTH + 1)
    assert cls(D, WIDTH, k=WIDTH).k == WIDTH


def test_bad_jumprelu_and_batchtopk_settings():
    with pytest.raises(ValueError, match="bandwidth"):
        JumpReLUSAE(D, WIDTH, bandwidth=0.0)
    with pytest.raises(ValueError, match="threshold_init"):
        JumpReLUSAE(D, WIDTH, threshold_init=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        BatchTopKSAE(D, WIDTH, momentum=0.0)


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
