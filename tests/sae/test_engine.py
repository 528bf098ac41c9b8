"""``toysae.sae.engine``: the training loop: recovery of a tiny toy by every architecture,
constraints kept, seeds, data of every kind, ghost grads, divergence and blow-ups, data
far from unit scale, threads, gradient memory, bad input, and ``RunOptions``, the one
object the trainers relay."""

import json

import numpy as np
import pytest
import torch

from toysae._threads import torch_threads
from toysae.data import SyntheticConfig, SyntheticData
from toysae.metrics import mmcs
from toysae.sae import (
    ARCHITECTURES,
    Objective,
    ReLUSAE,
    RunOptions,
    TrainConfig,
    TrainingDiverged,
    make_sae,
    train_grid_sequential,
    train_sae,
)
from toysae.sae.engine import DataScaleWarning

D = 12
TINY = SyntheticConfig(d=D, n_features=8, mean_active=2.0, decay=0.9, correlation="none",
                       orthogonal=True, seed=0)
FAST = TrainConfig(n_samples=30_000, batch_size=128, lr=1e-2, sparsity_coef=0.05,
                   log_every=25)
KWARGS = {"topk": {"k": 2}, "batchtopk": {"k": 2},
          "matryoshka": {"k": 2, "prefix_sizes": [4, 8]}}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny tensors: a second thread only adds fork/join waits on a busy machine.
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def toy():
    return SyntheticData(TINY)


def test_relu_recovers_a_tiny_toy(toy):
    res = train_sae("relu", toy, FAST, width=16, progress=False,
                    eval_fn=lambda s: {"mmcs": mmcs(toy.features, s.dictionary)})
    assert res.history["mmcs"][-1] >= 0.95
    assert res.history["mmcs"][-1] > res.history["mmcs"][0]
    assert res.history["step"][-1] == res.n_iter == FAST.n_steps
    assert res.n_samples == FAST.n_steps * FAST.batch_size
    assert res.history["loss"][-1] < res.history["loss"][0]
    assert set(res.history) >= {"step", "samples", "loss", "reconstruction", "sparsity",
                                "auxiliary", "l0", "dead", "lr", "sparsity_coef", "mmcs"}
    assert len({len(v) for v in res.history.values()}) == 1
    assert not res.sae.training and res.wall_time > 0
    payload = json.loads(res.to_json())
    assert payload["architecture"] == "relu"
    assert payload["history"]["mmcs"] == res.history["mmcs"].tolist()
    assert "ReLUSAE(d=12, width=16)" in repr(res) and res.success and "?" not in repr(res)


@pytest.mark.parametrize("name", ["tied", "topk", "batchtopk", "matryoshka", "jumprelu",
                                  "gated"])
def test_every_architecture_learns_the_tiny_toy(toy, name):
    # gated penalises ReLU(pi_gate), which runs larger than the codes: a larger coefficient
    cfg = TrainConfig(n_samples=30_000, batch_size=128, lr=1e-2,
                      sparsity_coef={"gated": 0.2}.get(name, 0.05), log_every=50)
    sae = make_sae(name, D, 16, seed=0, **KWARGS.get(name, {}))
    res = train_sae(sae, toy, cfg, progress=False)
    assert mmcs(toy.features, res.sae.dictionary) >= 0.9
    W = res.sae.decoder_weight.detach()
    torch.testing.assert_close(W.norm(dim=1), torch.ones(16))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_decoder_rows_stay_unit_norm(toy, name):
    sae = make_sae(name, D, 16, seed=1, **KWARGS.get(name, {}))
    with torch.no_grad():
        sae.decoder_weight.mul_(3.0)  # off the sphere before training: the first step fixes it
    train_sae(sae, toy, TrainConfig(n_samples=640, batch_size=64, lr=3e-2, sparsity_coef=0.1),
              progress=False)
    torch.testing.assert_close(sae.decoder_weight.detach().norm(dim=1), torch.ones(16))


def test_same_seed_same_weights(toy):
    cfg = TrainConfig(n_samples=2560, batch_size=64, seed=3)
    a = train_sae("relu", toy, cfg, width=16, progress=False).sae
    b = train_sae("relu", toy, cfg, width=16, progress=False).sae
    c = train_sae("relu", toy, TrainConfig(n_samples=2560, batch_size=64, seed=4), width=16,
                  progress=False).sae
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert not torch.equal(a.W_dec, c.W_dec)


def test_array_tensor_and_iterator_data(toy):
    X = toy.sample(4096, seed=1).x
    cfg = TrainConfig(n_samples=2048, batch_size=256)
    from_numpy = train_sae("relu", X, cfg, width=16, progress=False).sae
    from_torch = train_sae("relu", torch.from_numpy(X), cfg, width=16, progress=False).sae
    assert torch.equal(from_numpy.W_dec, from_torch.W_dec)
    batches = iter([toy.sample(100, seed=s) for s in range(5)])  # Batch objects, then it ends
    res = train_sae(ReLUSAE(D, 16), batches, cfg, progress=False)
    assert res.n_iter == 5 and res.n_samples == 500
    # logged at the end although the log step was not reached
    assert res.history["step"].tolist() == [5]


def test_sparsity_warmup_is_logged(toy):
    res = train_sae("relu", toy, TrainConfig(n_samples=6400, batch_size=64, sparsity_coef=0.2,
                                             sparsity_warmup=0.5, log_every=10), width=16,
                    progress=False)
    l1 = res.history["sparsity_coef"]
    assert l1[0] == pytest.approx(0.2 * 10 / 50) and l1[-1] == 0.2
    assert all(a <= b for a, b in zip(l1, l1[1:], strict=False))


def test_ghost_grads_move_dead_latents_in_training(toy):
    def run(ghost):
        sae = ReLUSAE(D, 16, seed=0)
        with torch.no_grad():
            sae.b_enc[:4] = -3.0
        before = sae.W_enc.detach()[:, :4].clone()
        cfg = TrainConfig(n_samples=64 * 30, batch_size=64, dead_window=5, resample_every=0,
                          dead_latent_coef=1.0 if ghost else None)
        res = train_sae(sae, toy, cfg, progress=False)
        return (sae.W_enc.detach()[:, :4] - before).abs().sum(), res

    still, res_off = run(False)
    moved, res_on = run(True)
    assert still == 0 and moved > 0
    assert max(res_on.history["auxiliary"]) > 0 and max(res_off.history["auxiliary"]) == 0


# -- failures -------------------------------------------------------------------
def test_divergence_raises_and_keeps_the_last_good_state(toy):
    sae = ReLUSAE(D, 16, seed=0)
    cfg = TrainConfig(n_samples=64 * 40, batch_size=64, lr=1e30, lr_warmup=0.0, log_every=1)
    with pytest.raises(TrainingDiverged, match="NaN or Inf") as info:
        train_sae(sae, toy, cfg, progress=False)
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, ValueError)
    assert info.value.result.sae is sae
    for p in sae.parameters():
        assert torch.isfinite(p).all()


def test_nan_in_data_is_rejected(toy):
    X = toy.sample(256, seed=0).x.copy()
    X[7, 3] = np.nan
    with pytest.raises(ValueError, match="data contains 1 NaN"):
        train_sae("relu", X, FAST, width=16, progress=False)
    good = toy.sample(64, seed=1).x
    batches = [good, good.copy(), good.copy()]
    batches[2][0, 0] = np.inf
    with pytest.raises(ValueError, match="data batch 2 contains NaN or Inf"):
        train_sae(ReLUSAE(D, 16), iter(batches), FAST, progress=False)
    # The batch check sums first: finite entries whose float32 sum overflows are no error.
    huge = np.full((64, D), 3e38, dtype=np.float32)
    with np.errstate(over="ignore"):
        assert not np.isfinite(huge.sum(dtype=np.float32))
    sae = ReLUSAE(D, 16)
    with pytest.raises(TrainingDiverged), pytest.warns(DataScaleWarning):  # not refused
        train_sae(sae, iter([huge]), FAST.replace(n_samples=64, batch_size=64),
                  progress=False)


def test_bad_training_input(toy):
    with pytest.raises(ValueError, match="d=13"):
        train_sae(ReLUSAE(13, 16), toy, FAST, progress=False)
    with pytest.raises(ValueError, match="columns"):
        train_sae(ReLUSAE(D, 16), np.zeros((10, D + 1), np.float32), FAST, progress=False)
    with pytest.raises(ValueError, match=r"data batch 0 must have shape \(n, 12\)"):
        train_sae(ReLUSAE(D, 16), iter([np.zeros((4, 3))]), FAST, progress=False)
    with pytest.raises(ValueError, match="architecture"):
        train_sae("mlp", toy, FAST, width=16, progress=False)
    with pytest.raises(ValueError, match="width is required"):
        train_sae("relu", toy, FAST, progress=False)
    with pytest.raises(ValueError, match="width"):
        train_sae("relu", toy, FAST, width=0, progress=False)
    with pytest.raises(ValueError, match="k must be <= width"):
        train_sae("topk", toy, FAST, width=4, sae_kwargs={"k": 5}, progress=False)
    with pytest.raises(TypeError, match="config"):
        train_sae("relu", toy, {"lr": 1.0}, width=16, progress=False)
    with pytest.raises(TypeError, match="eval_fn"):
        train_sae("relu", toy, FAST, width=16, eval_fn=3, progress=False)
    with pytest.raises(TypeError, match="data"):
        train_sae(ReLUSAE(D, 16), 3.0, FAST, progress=False)
    with pytest.raises(TypeError, match="sae"):
        train_sae(object(), toy, FAST, progress=False)
    with pytest.raises(ValueError, match="eval_fn returned 'loss'"):
        train_sae("relu", toy, TrainConfig(n_samples=128, batch_size=64), width=16,
                  eval_fn=lambda s: {"loss": 0.0}, progress=False)


def test_progress_bar_runs(toy, capsys):
    res = train_sae("relu", toy, TrainConfig(n_samples=640, batch_size=64, log_every=5),
                    width=16, progress=True)
    assert res.n_iter == 10
    err = capsys.readouterr().err  # tqdm draws on stderr, a bar of the run's 10 steps
    assert "0/10 [" in err and "step/s]" in err, err
    train_sae("relu", toy, TrainConfig(n_samples=640, batch_size=64, log_every=5), width=16,
              progress=False)
    assert capsys.readouterr().err == ""  # and nothing without the flag


class _Exploding(Objective):
    """The reconstruction times a factor that grows tenfold each step: finite, but diverging."""

    def __init__(self):
        self.scale = 1.0

    def __call__(self, batch, sae_input, output):
        self.scale *= 10.0
        return {"reconstruction": self.scale * 0.5 * (output.x_hat - sae_input).square()
                .sum(dim=(1, 2)) / sae_input.shape[0]}


def test_a_finite_blow_up_stops_training(toy):
    sae = ReLUSAE(D, 16, seed=0)
    before = {k: v.clone() for k, v in sae.state_dict().items()}
    cfg = TrainConfig(n_samples=64 * 40, batch_size=64, log_every=5, lr=1e-12)
    with pytest.raises(TrainingDiverged, match="grew from .* divergence_factor") as info:
        train_sae(sae, toy, cfg, objective=_Exploding(), progress=False)
    result = info.value.result
    # 10**4-fold by step 5 is not yet over the factor; by step 10 it is
    assert not result.success and "grew" in result.message and result.n_iter == 10
    assert "between step 6 and step 10" in result.message
    for k, v in sae.state_dict().items():  # restored to step 5: at lr 1e-12, the start
        torch.testing.assert_close(v, before[k])
    # the same run with a normal objective trains to the end
    assert train_sae(ReLUSAE(D, 16, seed=0), toy, cfg, progress=False).success


def test_threads_is_an_argument_and_is_restored(toy):
    seen = []
    before = torch.get_num_threads()
    cfg = TrainConfig(n_samples=256, batch_size=64, log_every=2)
    train_sae("relu", toy, cfg, width=16, progress=False, threads=2,
              eval_fn=lambda s: seen.append(torch.get_num_threads()) or {})
    assert seen and set(seen) == {2} and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        train_sae("relu", toy, cfg, width=16, progress=False, threads=0)
    with pytest.raises(TypeError, match="threads"):
        train_sae("relu", toy, cfg, width=16, progress=False, threads=1.5)


def test_weight_gradients_reuse_their_memory_across_steps(toy):
    from toysae.sae import ReLUSAEEnsemble, train_ensembles

    seen = {}

    def record(sae):
        seen.setdefault("W_dec", set()).add(sae.W_dec.grad.data_ptr())
        return {}

    sae = ReLUSAE(D, 16, seed=0)
    cfg = TrainConfig(n_samples=64 * 30, batch_size=64, log_every=5)
    train_sae(sae, toy, cfg, eval_fn=record, progress=False)
    assert len(seen["W_dec"]) == 1  # one buffer, adopted by autograd step after step
    ens = ReLUSAEEnsemble(D, [8, 16])
    ptrs = []
    train_ensembles(ens, [0.05, 0.05], toy, cfg, progress=False,
                    eval_fn=lambda s: ptrs.append(ens.W_dec.grad.data_ptr()) or {})
    assert len(set(ptrs)) == 1


def test_train_members_refuses_bad_stacks(toy):
    from toysae.sae import RunOptions, SingleSAE, train_members

    cfg = TrainConfig(n_samples=128, batch_size=64)
    quiet = RunOptions(progress=False)
    with pytest.raises(TypeError, match="stacks must be a non-empty sequence"):
        train_members([], [], toy, cfg, quiet)
    with pytest.raises(TypeError, match=r"stacks\[0\] must be a MemberStack"):
        train_members([ReLUSAE(D, 8)], [0.1], toy, cfg, quiet)
    with pytest.raises(ValueError, match=r"stacks\[1\] has d=5"):
        train_members([SingleSAE(ReLUSAE(D, 8)), SingleSAE(ReLUSAE(5, 8))], [0.1, 0.1], toy,
                      cfg, quiet)
    with pytest.raises(ValueError, match="one entry per member"):
        train_members([SingleSAE(ReLUSAE(D, 8))], [0.1, 0.2], toy, cfg, quiet)


# -- data far from unit scale: a data-scale problem, not only "lower lr" -------------------
def _named_scale(message: str) -> float:
    """The scale a warning or divergence message names."""
    import re

    return float(re.search(r"sqrt\(mean \|\|x\|\|\^2\) = ([0-9.e+-]+)", message).group(1))


def test_data_far_from_unit_scale_is_reported_before_training(toy):
    import warnings

    from toysae.sae import DataScaleWarning

    X = toy.sample(2048, seed=3).x
    scale = float(np.sqrt((X.astype(np.float64) ** 2).sum(1).mean()))
    cfg = TrainConfig(n_samples=64 * 4, batch_size=64, log_every=2)
    for factor in (1e4, 1e-4):
        with pytest.warns(DataScaleWarning, match=r"sqrt\(mean \|\|x\|\|\^2\) = [0-9.e+-]+ "
                          r".*outside \[0\.01, 1000\].*[Nn]ormalise") as record:
            train_sae("relu", X * factor, cfg, width=16, progress=False)
        assert len(record) == 1  # once per run, not per step
        assert _named_scale(str(record[0].message)) == pytest.approx(scale * factor, rel=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataScaleWarning)
        train_sae("relu", X, cfg, width=16, progress=False)  # unit scale: no warning


def test_divergence_on_tiny_data_is_a_data_scale_problem(toy):
    from toysae.sae import DataScaleWarning

    X = toy.sample(2048, seed=4).x * 1e-5
    scale = float(np.sqrt((X.astype(np.float64) ** 2).sum(1).mean()))
    cfg = TrainConfig(n_samples=128 * 100, batch_size=128, lr=0.1, lr_warmup=0.0,
                      log_every=10)
    with pytest.warns(DataScaleWarning), pytest.raises(TrainingDiverged) as info:
        train_sae("relu", X, cfg, width=16, progress=False)
    message = str(info.value)
    assert "grew from" in message and "data-scale problem" in message
    assert _named_scale(message) == pytest.approx(scale, rel=0.2)  # the first batch's, ~8e-6
    assert "outside [0.01, 1000]" in message and "Normalise the data" in message
    assert info.value.result.message == message


def test_divergence_at_unit_scale_blames_the_step_size(toy):
    cfg = TrainConfig(n_samples=64 * 40, batch_size=64, log_every=5, lr=1e-12)
    with pytest.raises(TrainingDiverged) as info:
        train_sae(ReLUSAE(D, 16, seed=0), toy, cfg, objective=_Exploding(), progress=False)
    message = str(info.value)
    assert "Lower lr" in message and "data-scale problem" not in message
    assert "sqrt(mean ||x||^2) =" in message and "within [0.01, 1000]" in message


TOY = SyntheticData(SyntheticConfig(d=D, n_features=8, mean_active=2.0, decay=0.9,
                                    correlation="none", orthogonal=True, seed=0))
# 30 steps, logged every 5, a warm-up and a decay so lr changes along the run
CFG = TrainConfig(n_samples=64 * 30, batch_size=64, lr=1e-2, sparsity_coef=0.05, log_every=5,
                  lr_warmup=0.1, lr_decay=0.2, resample_every=10, dead_window=5)


def test_run_options_are_one_object_the_trainers_relay(tmp_path):
    options = RunOptions(progress=False, eval_fn=lambda s: {"one": 1.0})
    a = train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, options=options)
    b = train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, progress=False,
                  eval_fn=lambda s: {"one": 1.0})
    assert a.history == b.history
    # keywords replace the object's fields
    c = train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, options=options, eval_fn=None)
    assert "one" not in c.history
    assert RunOptions.of(options, threads=1).threads == 1 and options.threads is None
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['bogus'\]"):
        train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, bogus=1)
    with pytest.raises(TypeError, match="options must be a RunOptions"):
        train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, options={"progress": False})
    with pytest.raises(TypeError, match="progress must be a bool"):
        RunOptions(progress=1)
    with pytest.raises(ValueError, match="train_grid"):
        train_grid_sequential(TOY, [0.05], [8], CFG, progress=False, checkpoint_every=5,
                              checkpoint_path=tmp_path / "grid.safetensors")
    # the sequential reference now takes every run option a single run does
    grid = train_grid_sequential(TOY, [0.05], [8], CFG, progress=False,
                                 record_dictionaries=True)
    assert len(grid.members[0].dictionary_history) == len(grid.members[0].history)
