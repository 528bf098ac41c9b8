"""``toysae.sae.matching_pursuit``: the encoder is greedy matching pursuit (against an
independent numpy pursuit, for each stopping rule), its gradients are the pursuit's
(gradcheck) and reach the decoder, its bias and, through AuxK, the dead atoms; it trains,
round-trips through a checkpoint and goes to SAELens and back (with the real sae-lens);
the experiment gives it k; bad settings are named."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from toysae._threads import torch_threads
from toysae.data import SyntheticConfig, SyntheticData
from toysae.experiments import architectures_under_theory as aut
from toysae.interop import export_saelens, load_saelens, read_saelens
from toysae.sae import TrainConfig, load, make_sae, save, train_sae
from toysae.sae.matching_pursuit import MatchingPursuitSAE, matching_pursuit

D, WIDTH = 6, 12
NAME = "matching_pursuit"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny tensors: a second thread only adds fork/join waits on a busy machine.
    with torch_threads(1):
        yield


def _sae(seed=1, **kwargs) -> MatchingPursuitSAE:
    """An MP SAE with unit random atoms and a nonzero decoder bias."""
    sae = make_sae(NAME, D, WIDTH, seed=seed, **kwargs)
    with torch.no_grad():
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(seed)).mul_(0.3)
    return sae.eval()


def _x(n=48, seed=0):
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed))


def numpy_pursuit(X, atoms, bias, k, threshold=0.0, stop_on_repeat=False):
    """Matching pursuit written out per sample in float64: codes (n, width), the order in
    which each sample chose its atoms, and why each stopped."""
    X, atoms, bias = (np.asarray(a, dtype=np.float64) for a in (X, atoms, bias))
    codes = np.zeros((len(X), len(atoms)))
    orders, reasons = [], []
    for n, x in enumerate(X):
        r, order, reason = x - bias, [], "k steps"
        for _ in range(k):
            scores = atoms @ r
            i = int(np.argmax(scores))
            if scores[i] <= 0:
                reason = "nothing left to add"
                break
            repeat = i in order
            codes[n, i] += scores[i]
            r = r - scores[i] * atoms[i]
            order.append(i)
            if stop_on_repeat and repeat:
                reason = "repeat"
                break
            if threshold > 0 and np.linalg.norm(r) < threshold:
                reason = "threshold"
                break
        orders.append(order)
        reasons.append(reason)
    return codes, orders, reasons


def _with_k(sae, k, **changes):
    """``sae`` with ``k`` steps (and other ``changes`` to its config), the same weights."""
    other = make_sae(NAME, **{**sae.config(), "k": k, **changes})
    other.load_state_dict(sae.state_dict())
    return other.eval()


def _same_pursuit(sae, x, **rule):
    ref, orders, reasons = numpy_pursuit(x.numpy(), sae.W_dec.detach().numpy(),
                                         sae.b_dec.detach().numpy(), sae.k, **rule)
    with torch.no_grad():
        codes = sae.encode(x).numpy()
    assert np.array_equal(codes > 0, ref > 0)  # the same atoms selected ...
    np.testing.assert_allclose(codes, ref, rtol=1e-5, atol=1e-5)  # ... with the same weights
    return orders, reasons


def test_the_encoder_is_greedy_matching_pursuit_for_k_steps():
    sae = _sae(k=5)
    x = _x()
    orders, reasons = _same_pursuit(sae, x)
    assert set(reasons) == {"k steps"}
    assert any(len(set(order)) < len(order) for order in orders)  # an atom chosen again
    with torch.no_grad():
        out = sae(x)
    assert ((out.codes > 0).sum(1) <= 5).all() and (out.codes >= 0).all()
    torch.testing.assert_close(out.x_hat, out.codes @ sae.W_dec + sae.b_dec)
    torch.testing.assert_close(out.pre_acts, (x - sae.b_dec) @ sae.W_dec.T)  # step 1's scores
    torch.testing.assert_close(sae.encode_pre(x), out.pre_acts)
    # Each step takes off the residual's projection on an atom: its norm never grows.
    with torch.no_grad():
        norms = [torch.linalg.vector_norm(x - _with_k(sae, k)(x).x_hat, dim=1)
                 for k in range(1, 6)]
    assert all((b <= a + 1e-6).all() for a, b in zip(norms[:-1], norms[1:], strict=True))
    assert (norms[-1] < norms[0]).all()


def test_an_input_no_atom_correlates_with_gets_no_codes():
    sae = _sae()
    with torch.no_grad():
        sae.W_dec.abs_()  # every atom in the positive orthant ...
        sae.b_dec.zero_()
    x = -torch.rand(5, D) - 0.1  # ... and every input in the negative one
    with torch.no_grad():
        out = sae(x)
    assert (out.pre_acts < 0).all()
    assert torch.equal(out.codes, torch.zeros(5, WIDTH)) and torch.equal(out.x_hat,
                                                                         torch.zeros(5, D))


def test_a_residual_threshold_stops_each_sample_once_it_is_reached():
    sae = _sae(k=6, residual_threshold=0.9)
    x = _x(64, seed=1)
    orders, reasons = _same_pursuit(sae, x, threshold=0.9)
    assert {"threshold", "k steps"} <= set(reasons)  # the rule decides for some, not all
    with torch.no_grad():
        residual = torch.linalg.vector_norm(x - sae(x).x_hat, dim=1)
    stopped = torch.tensor([reason == "threshold" for reason in reasons])
    assert (residual[stopped] < 0.9).all() and (residual[~stopped] >= 0.9).all()
    # Without the threshold the same SAE keeps going past it.
    early = torch.tensor([len(order) < 6 for order in orders]) & stopped
    free = _with_k(sae, 6, residual_threshold=0.0)
    with torch.no_grad():
        further = torch.linalg.vector_norm(x - free(x).x_hat, dim=1)[early]
    assert early.any() and (further < residual[early]).all()
    # A threshold no residual gets below leaves the k-step pursuit; one every residual is
    # below stops each sample after its first step.
    assert torch.equal(_with_k(sae, 6, residual_threshold=1e-9).encode(x), free.encode(x))
    assert ((_with_k(sae, 6, residual_threshold=1e9).encode(x) > 0).sum(1) == 1).all()


def test_stop_on_repeat_stops_where_the_support_stops_growing():
    sae = _sae(k=10, stop_on_repeat=True)
    x = _x(64, seed=2)
    orders, reasons = _same_pursuit(sae, x, stop_on_repeat=True)
    assert "repeat" in reasons
    for order, reason in zip(orders, reasons, strict=True):
        if reason == "repeat":  # the last atom is the first one chosen twice
            assert order[-1] in order[:-1] and len(set(order)) == len(order) - 1


def test_gradients_are_the_pursuits_and_reach_the_decoder_and_its_bias():
    gen = torch.Generator().manual_seed(4)
    atoms = torch.randn(WIDTH, D, generator=gen, dtype=torch.float64)
    atoms = (atoms / atoms.norm(dim=1, keepdim=True)).requires_grad_()
    residual = torch.randn(5, D, generator=gen, dtype=torch.float64, requires_grad=True)
    # Which atom wins is piecewise constant; within a piece the codes are smooth.
    assert torch.autograd.gradcheck(lambda r, w: matching_pursuit(r, w, 3)[:2],
                                    (residual, atoms))
    sae = _sae(k=2).train()
    x = _x(8)
    out = sae(x)
    sae.loss_from_output(x, out).total.backward()
    chosen = (out.codes > 0).any(0)
    assert chosen.any() and not chosen.all()
    assert (sae.W_dec.grad[chosen].abs().sum(1) > 0).all()
    assert (sae.W_dec.grad[~chosen] == 0).all()  # no atom learns from a pursuit it lost
    assert sae.b_dec.grad.abs().sum() > 0


def test_aux_k_reaches_dead_atoms_through_the_residual():
    sae = _sae(k=1).train()
    x = _x(16)
    out = sae(x)
    dead = ~(out.codes > 0).any(0)
    assert dead.sum() >= 3
    parts = sae.loss_from_output(x, out, dead=dead, dead_latent_coef=1 / 32)
    assert parts.auxiliary > 0 and float(parts.sparsity) == 0
    parts.total.backward()
    # The aux_k dead atoms most correlated with each residual, at those correlations,
    # reconstruct it (normalised by its variance); they learn, no other dead one does.
    residual = (x - out.x_hat).detach()
    atoms = sae.W_dec.detach()[dead]
    top = (residual @ atoms.T).topk(sae.aux_k, dim=1)
    acts = torch.zeros(len(x), int(dead.sum())).scatter_(1, top.indices, top.values.relu())
    expected = ((acts @ atoms - residual).square().sum()
                / (residual - residual.mean(0)).square().sum())
    torch.testing.assert_close(parts.auxiliary, expected / 32)
    reached = torch.zeros(int(dead.sum()), dtype=torch.bool)
    reached[top.indices[top.values > 0]] = True
    grads = sae.W_dec.grad[dead].abs().sum(1)
    assert reached.any() and (grads[reached] > 0).all() and (grads[~reached] == 0).all()


def test_it_trains_and_its_loss_falls():
    toy = SyntheticData(SyntheticConfig(n_features=16, d=8, mean_active=2.0, seed=1))
    sae = make_sae(NAME, 8, 24, k=2, seed=2)
    before = sae.dictionary
    config = TrainConfig(n_samples=128 * 60, batch_size=128, log_every=10, dead_window=10,
                         resample_every=0, seed=3)
    result = train_sae(sae, toy, config, progress=False)
    loss = result.history["loss"]
    assert result.success and loss[-1] < 0.7 * loss[0]
    assert (sae.dictionary - before).abs().max() > 0.05  # the atoms moved
    torch.testing.assert_close(sae.W_dec.detach().norm(dim=1), torch.ones(24))


def test_checkpoint_round_trip(tmp_path):
    sae = _sae(k=4, residual_threshold=0.25, stop_on_repeat=True, aux_k=5)
    path = save(sae, tmp_path / "mp.safetensors")
    back = load(path)
    assert type(back) is MatchingPursuitSAE and back.config() == sae.config()
    assert sorted(back.state_dict()) == ["W_dec", "b_dec"]
    for key, value in sae.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    assert torch.equal(back.encode(_x()), sae.encode(_x()))


# ------------------------------------------------------------------ SAELens
def _sae_lens():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("sae_lens", reason="sae-lens is a dev dependency")


def _saelens_outputs(sae_lens, directory, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sae_lens.SAE.load_from_disk(str(directory))
    with torch.no_grad():
        return type(model).__name__, model.encode(x), model(x)


@pytest.mark.parametrize("kwargs", [{"k": 3}, {"k": 7, "residual_threshold": 0.8},
                                    {"k": 9, "stop_on_repeat": True}])
def test_it_goes_to_saelens_and_back(tmp_path, kwargs):
    sae_lens = _sae_lens()
    sae = _sae(**kwargs)
    directory = export_saelens(sae, tmp_path / "mp")
    cfg = json.loads((directory / "cfg.json").read_text())
    assert cfg["architecture"] == NAME and cfg["metadata"]["training_architecture"] == NAME
    assert (cfg["max_iterations"], cfg["residual_threshold"],
            cfg["stop_on_duplicate_support"]) == (sae.k, sae.residual_threshold,
                                                  sae.stop_on_repeat)
    x = _x(64, seed=5)
    name, codes, x_hat = _saelens_outputs(sae_lens, directory, x)
    with torch.no_grad():
        out = sae(x)
    assert name == "MatchingPursuitSAE"
    torch.testing.assert_close(codes, out.codes, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_hat, out.x_hat, rtol=1e-5, atol=1e-5)
    back = load_saelens(directory)
    assert type(back) is MatchingPursuitSAE and back.config() == sae.config()
    for key, value in sae.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def _saelens_mp(sae_lens, seed=2, unit_rows=True, **cfg):
    model = sae_lens.MatchingPursuitSAE(sae_lens.MatchingPursuitSAEConfig(d_in=D, d_sae=WIDTH,
                                                                          **cfg))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.W_dec.copy_(torch.randn(WIDTH, D, generator=gen))
        if unit_rows:
            model.W_dec.div_(model.W_dec.norm(dim=1, keepdim=True))
        model.b_dec.copy_(torch.randn(D, generator=gen) * 0.3)
    return model


def test_a_saelens_made_sae_comes_in_computing_the_same(tmp_path):
    sae_lens = _sae_lens()
    x = _x(64, seed=6)
    # SAELens's defaults: residual_threshold 0.01, d_in steps, stop on a repeated support.
    model = _saelens_mp(sae_lens)
    model.save_model(tmp_path / "default")
    sae = load_saelens(tmp_path / "default")
    assert (sae.k, sae.residual_threshold, sae.stop_on_repeat) == (D, 0.01, True)
    with torch.no_grad():
        codes, x_hat = model.encode(x), model(x)
        torch.testing.assert_close(sae(x).codes, codes, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sae(x).x_hat, x_hat, rtol=1e-5, atol=1e-5)
    # Without b_dec on the input SAELens's tied SAE uses none at all.
    model = _saelens_mp(sae_lens, apply_b_dec_to_input=False, max_iterations=4,
                        residual_threshold=0.0, stop_on_duplicate_support=False)
    model.save_model(tmp_path / "nobias")
    loaded = read_saelens(tmp_path / "nobias")
    assert any("b_dec is read as 0" in note for note in loaded.notes)
    assert loaded.sae.k == 4 and torch.equal(loaded.sae.b_dec, torch.zeros(D))
    with torch.no_grad():
        torch.testing.assert_close(loaded.sae(x).codes, model.encode(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(loaded.sae(x).x_hat, model(x), rtol=1e-5, atol=1e-5)
    # Rows that are not unit cannot be folded (the pursuit would choose differently); kept
    # as they are, toysae's pursuit is SAELens's.
    model = _saelens_mp(sae_lens, unit_rows=False, max_iterations=3)
    model.save_model(tmp_path / "free")
    with pytest.raises(ValueError, match="raw decoder rows.*fold_decoder_norms=False"):
        load_saelens(tmp_path / "free")
    kept = load_saelens(tmp_path / "free", fold_decoder_norms=False)
    with torch.no_grad():
        torch.testing.assert_close(kept(x).codes, model.encode(x), rtol=1e-5, atol=1e-5)


def test_a_record_that_contradicts_the_saelens_fields_is_refused(tmp_path):
    directory = export_saelens(_sae(k=3), tmp_path / "mp")
    cfg = json.loads((directory / "cfg.json").read_text())
    cfg["max_iterations"] = 5
    (directory / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"metadata.toysae.config has k=3 but the SAELens "
                                         r"fields give 5"):
        load_saelens(directory)


# ------------------------------------------------------------------ elsewhere
def test_the_experiment_gives_it_k_and_runs_it():
    assert NAME in aut.architectures() and NAME in aut.k_architectures()
    config = aut.Config(data=SyntheticConfig.synth_small(n_features=64, d=16, tree_roots=1),
                        width=16, architectures=(NAME,), seeds=(0,), l0_fractions=(1.0,),
                        n_train=2048, train=aut.train_recipe(4096), n_eval=256, n_check=128,
                        dictlearn_samples=256, dictlearn_epochs=1, track=NAME, track_points=2,
                        track_check=64, n_boot=100)
    result = aut.run(config)
    run = result.runs[0]
    assert run.name == NAME and run.sparsity_coef is None
    assert run.k == run.target_l0 == max(1, round(result.true_l0)) and 0 < run.l0 <= run.k
    assert 0 <= run.mcc <= 1 and np.isfinite(run.amortisation_gap)


def test_activate_alone_is_refused():
    sae = _sae()
    with pytest.raises(NotImplementedError, match="use encode"):
        sae.activate(sae.encode_pre(_x()))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"k": 0}, ValueError, "k must be >= 1"),
    ({"k": 2.0}, TypeError, "k must be an int"),
    ({"residual_threshold": -0.1}, ValueError, "residual_threshold must be >= 0"),
    ({"residual_threshold": float("nan")}, ValueError, "residual_threshold must be finite"),
    ({"residual_threshold": "0.1"}, TypeError, "residual_threshold must be a number"),
    ({"stop_on_repeat": 1}, TypeError, "stop_on_repeat must be a bool"),
    ({"aux_k": WIDTH + 1}, ValueError, "aux_k must be <= width"),
])
def test_bad_settings_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        MatchingPursuitSAE(D, WIDTH, **kwargs)
    assert MatchingPursuitSAE(D, WIDTH, k=3 * WIDTH).k == 3 * WIDTH  # steps, not latents
