"""``toysae.sae._fused``: the sparsity-aware SAE step: dense == sparse gradients for every
fused architecture and the batched ensemble on both sides of the switch, the path each
batch takes, training on the sparse path, and recycled output memory."""

import pytest
import torch

from toysae import _tuning
from toysae._threads import torch_threads
from toysae.data import SyntheticConfig, SyntheticData
from toysae.metrics import mmcs
from toysae.sae import ReLUSAE, ReLUSAEEnsemble, TrainConfig, make_sae, train_sae
from toysae.sae._fused import current_step_path, step_path
from toysae.sae._sparse_kernels import ActiveSet
from toysae.sae.base import SparseAutoencoder

D, WIDTH, N = 16, 256, 96


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture
def small_steps_switch(monkeypatch):
    """Let steps of test size take the sparse path on "auto" (the density rule alone)."""
    monkeypatch.setattr(_tuning, "SPARSE_STEP_MIN_WORK", 1)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# -- dense and sparse paths give the same gradients ---------------------------------------
KWARGS = {"topk": {}, "batchtopk": {}, "matryoshka": {"prefix_sizes": [32, 96]},
          "jumprelu": {"threshold_init": 0.5, "bandwidth": 0.3}}


def _sae(name: str, dense: bool):
    """An SAE whose codes are sparse (about 2% active) or dense (about 30%)."""
    kwargs = dict(KWARGS.get(name, {}))
    if name in ("topk", "batchtopk", "matryoshka"):
        kwargs["k"] = 80 if dense else 5
    sae = make_sae(name, D, WIDTH, seed=3, **kwargs)
    with torch.no_grad():
        sae.b_dec.normal_(0.0, 0.3, generator=_gen(13))
        sae.b_enc.normal_(0.0, 0.2, generator=_gen(14))
        if name in ("relu", "jumprelu"):
            sae.b_enc.sub_(0.0 if dense else 1.2)
    return sae.train()


def _x():
    return torch.rand(N, D, generator=_gen(15))


def _step(sae, x, path):
    """One step's loss parts (a custom objective term with an input gradient, the
    architecture's penalty and, for the top-k SAEs, AuxK) and every gradient."""
    x = x.clone().requires_grad_(True)
    with step_path(path):
        out = sae(x)
    weights = torch.linspace(0.5, 2.0, D)
    custom = (weights * (out.x_hat - x) ** 2).sum() / N + 0.05 * (out.codes ** 2).sum() / N
    dead = torch.zeros(WIDTH, dtype=torch.bool)
    dead[::7] = True
    parts = sae.loss_from_output(x, out, 0.1, dead=dead if sae.dead_latent_loss == "auxk"
                                 else None, dead_latent_coef=0.5)
    (custom + parts.total).backward()
    grads = {name: p.grad.clone() for name, p in sae.named_parameters()}
    grads["x"] = x.grad.clone()
    sae.zero_grad(set_to_none=True)
    return out, grads


def _plain_autograd(sae, x):
    out = SparseAutoencoder.forward(sae, x)
    if sae.architecture == "matryoshka":
        out = out._replace(prefix_x_hats=tuple(sae.prefix_reconstructions(out.codes)[:-1]))
    return out


@pytest.mark.parametrize("name", ["relu", "topk", "batchtopk", "matryoshka", "jumprelu"])
@pytest.mark.parametrize("dense", [False, True], ids=["sparse-codes", "dense-codes"])
def test_sparse_and_dense_paths_give_the_same_gradients(name, dense, small_steps_switch):
    x = _x()
    runs = {}
    for path in ("dense", "sparse", "auto"):
        sae = _sae(name, dense)
        out, grads = _step(sae, x, path)
        runs[path] = out, grads, out.x_hat.grad_fn.active is not None
    density = float((runs["dense"][0].codes > 0).float().mean())
    assert (density > _tuning.SPARSE_STEP_MAX_DENSITY) == dense, density
    assert not runs["dense"][2] and runs["sparse"][2]
    assert runs["auto"][2] is not dense  # auto takes the path the density calls for
    # plain autograd of the same formula
    sae = _sae(name, dense)
    original = type(sae).forward
    type(sae).forward = _plain_autograd
    try:
        ref_out, ref = _step(sae, x, "dense")
    finally:
        type(sae).forward = original
    fired = (ref_out.codes > 0).any(0)
    assert 0 < int(fired.sum()) < WIDTH
    for path, (out, grads, sparse) in runs.items():
        torch.testing.assert_close(out.x_hat, ref_out.x_hat, rtol=1e-5, atol=1e-5)
        assert torch.equal(out.codes > 0, ref_out.codes > 0), path
        # the sparse path reads the fired latents off its entries (JumpReLU lists a window
        # of inactive ones too), the dense path leaves them to the codes
        assert (out.fired is not None) == sparse, path
        assert torch.equal(out.fired_latents(), fired), path
        torch.testing.assert_close(out.codes, ref_out.codes, rtol=1e-5, atol=1e-6)
        for key, expected in ref.items():
            assert expected.abs().max() > 0, key
            scale = float(expected.abs().max())
            torch.testing.assert_close(grads[key], expected, rtol=1e-4, atol=1e-5 * scale,
                                       msg=f"{name} {path} {key}")


@pytest.mark.parametrize("aux_k, every", [(6, 9), (120, 2)], ids=["sparse-aux", "dense-aux"])
def test_auxk_gradient_merges_into_the_sparse_path_or_goes_dense(aux_k, every,
                                                                  small_steps_switch,
                                                                  monkeypatch):
    """AuxK sends a gradient to the pre-activations of the dead latents it picks: merged
    into the active entries when it is sparse, a dense encoder product when it is not."""
    merges = []
    merged = ActiveSet.merged
    monkeypatch.setattr(ActiveSet, "merged", lambda *a: merges.append(1) or merged(*a))
    x = _x()
    dead = torch.zeros(WIDTH, dtype=torch.bool)
    dead[::every] = True
    grads = {}
    for path in ("dense", "sparse", "auto"):
        sae = make_sae("topk", D, WIDTH, k=5, aux_k=aux_k, seed=3).train()
        with step_path(path):
            out = sae(x)
        aux = sae.aux_k_loss(x, out, dead)
        assert aux > 0
        merges.clear()
        (sae.loss_from_output(x, out).total + aux).backward()
        grads[path] = {n: p.grad.clone() for n, p in sae.named_parameters()}
        assert len(merges) == (path == "sparse" or (path == "auto" and aux_k < 10))
    for path in ("sparse", "auto"):
        for key, expected in grads["dense"].items():
            scale = float(expected.abs().max())
            torch.testing.assert_close(grads[path][key], expected, rtol=1e-4,
                                       atol=1e-5 * scale, msg=f"{path} {key}")
    # the dead latents learn through AuxK alone (TopK never picks them here)
    assert grads["auto"]["W_enc"][:, dead].abs().sum(0).gt(0).float().mean() > 0.5


@pytest.mark.parametrize("name", ["relu", "topk", "batchtopk", "matryoshka", "jumprelu"])
def test_a_batch_where_nothing_fires_takes_the_sparse_path_cleanly(name):
    sae = _sae(name, dense=False)
    with torch.no_grad():
        sae.b_enc.fill_(-100.0)
    x = _x().requires_grad_(True)
    with step_path("sparse"):
        out = sae(x)
    assert out.x_hat.grad_fn.active.nnz == 0 and not out.codes.any()
    torch.testing.assert_close(out.x_hat, sae.b_dec.detach().expand(N, D))
    (out.x_hat - 1.0).square().sum().backward()
    assert sae.W_dec.grad.abs().max() == 0 and sae.W_enc.grad.abs().max() == 0
    assert sae.b_dec.grad.abs().max() > 0 and x.grad.abs().max() == 0


def test_jumprelu_sparse_path_lists_the_window_below_the_threshold():
    sae = _sae("jumprelu", dense=False)
    x = _x()
    with step_path("sparse"):
        out = sae(x)
    active = out.x_hat.grad_fn.active
    theta = sae.threshold.detach()
    listed = torch.zeros(N, WIDTH, dtype=torch.bool)
    listed[active.rows, active.cols] = True
    assert torch.equal(listed, out.pre_acts.detach() > theta - sae.bandwidth / 2)
    window_only = listed & (out.codes == 0)
    assert window_only.any()  # entries the threshold's gradient reads, not active
    sae.penalty(out).backward()  # the L0 term alone: thresholds move, the encoder does not
    assert sae.log_threshold.grad.abs().max() > 0
    assert sae.W_enc.grad is None or sae.W_enc.grad.abs().max() == 0


def test_batchtopk_sparse_path_keeps_the_threshold_statistic():
    x = _x()
    sae_d, sae_s = _sae("batchtopk", False), _sae("batchtopk", False)
    with step_path("dense"):
        out_d = sae_d(x)
    with step_path("sparse"):
        out_s = sae_s(x)
    assert torch.equal(out_s.codes, out_d.codes)
    assert int((out_s.codes > 0).sum()) == 5 * N
    torch.testing.assert_close(sae_s.threshold, out_s.codes[out_s.codes > 0].min())
    torch.testing.assert_close(sae_s.threshold, sae_d.threshold)
    # inference thresholds; both paths agree there too
    sae_s.eval()
    with step_path("sparse"):
        eval_s = sae_s(x)
    with step_path("dense"):
        eval_d = sae_s(x)
    torch.testing.assert_close(eval_s.x_hat, eval_d.x_hat, rtol=1e-5, atol=1e-5)
    assert torch.equal(eval_s.codes > 0, out_s.pre_acts > sae_s.threshold)


def test_ensemble_members_take_the_path_their_own_density_calls_for(small_steps_switch):
    saes = [ReLUSAE(D, w, seed=s) for s, w in enumerate((WIDTH // 2, WIDTH, WIDTH))]
    with torch.no_grad():
        for s, shift in zip(saes, (1.2, 0.0, 1.2), strict=True):
            s.b_enc.normal_(0.0, 0.2, generator=_gen(16)).sub_(shift)
            s.b_dec.normal_(0.0, 0.3, generator=_gen(17))
    x = _x()
    runs = {}
    for path in ("dense", "sparse", "auto"):
        ens = ReLUSAEEnsemble.from_saes(saes)  # padded: widths differ
        xx = x.clone().requires_grad_(True)
        with step_path(path):
            out, _ = ens(xx)
        loss = (out.x_hat - xx).square().sum() + 0.3 * out.codes.sum(dim=(1, 2)).sum() / N
        loss.backward()
        grads = {k: p.grad for k, p in ens.named_parameters()}
        grads["x"] = xx.grad
        actives = out.x_hat.grad_fn.actives
        runs[path] = out, grads, None if actives is None else [a is not None for a in actives]
    assert runs["dense"][2] is None and runs["sparse"][2] == [True] * 3
    assert runs["auto"][2] == [True, False, True]  # the middle member's codes are dense
    for path in ("sparse", "auto"):
        out, grads, _ = runs[path]
        torch.testing.assert_close(out.x_hat, runs["dense"][0].x_hat, rtol=1e-5, atol=1e-5)
        for key, expected in runs["dense"][1].items():
            scale = float(expected.abs().max())
            torch.testing.assert_close(grads[key], expected, rtol=1e-4, atol=1e-5 * scale,
                                       msg=f"{path} {key}")
        padded = grads["W_dec"][0, WIDTH // 2:]
        assert padded.abs().max() == 0 and grads["W_enc"][0, :, WIDTH // 2:].abs().max() == 0


@pytest.mark.parametrize("name", ["relu", "topk"])
def test_training_on_the_sparse_path_keeps_unit_rows_and_tangent_gradients(name):
    toy = SyntheticData(SyntheticConfig(d=D, n_features=48, seed=1))
    sae = make_sae(name, D, WIDTH, seed=0, **({"k": 4} if name == "topk" else {}))
    cfg = TrainConfig(n_samples=64 * 30, batch_size=64, lr=3e-3, sparsity_coef=0.05,
                      log_every=10)
    with step_path("sparse"):
        res = train_sae(sae, toy, cfg, progress=False)
        assert res.success and current_step_path() == "sparse"
        torch.testing.assert_close(sae.W_dec.detach().norm(dim=1), torch.ones(WIDTH))
        sae.loss(torch.from_numpy(toy.sample(64, seed=2).x), 0.05).total.backward()
    assert current_step_path() == "auto"
    sae.remove_parallel_grad_()
    radial = (sae.W_dec.grad * sae.W_dec.detach()).sum(1)
    assert radial.abs().max() < 1e-5 * sae.W_dec.grad.abs().max()
    # bit-reproducible: the same seed gives the same SAE on the sparse path
    again = make_sae(name, D, WIDTH, seed=0, **({"k": 4} if name == "topk" else {}))
    with step_path("sparse"):
        train_sae(again, toy, cfg, progress=False)
    for a, b in zip(sae.parameters(), again.parameters(), strict=True):
        assert torch.equal(a.detach(), b.detach())


@pytest.mark.parametrize("name", ["relu", "topk", "matryoshka"])
def test_the_radial_parts_read_off_the_entries_serve_only_the_gradient_they_came_from(
        name, monkeypatch):
    """After a sparse backward pass the decoder gradient's radial parts come from its
    entries (no pass over the gradient); once the gradient has changed in place since
    (here doubled, as clipping or a second loss would), the projection reads them anew."""
    base_passes = []
    base = SparseAutoencoder.remove_parallel_grad_
    monkeypatch.setattr(SparseAutoencoder, "remove_parallel_grad_",
                        lambda self: base_passes.append(1) or base(self))

    def tangent(g, W):
        return g - torch.linalg.vecdot(g, W)[:, None] * W

    x = _x()
    for path, change in (("sparse", False), ("sparse", True), ("dense", False)):
        sae = _sae(name, dense=False)
        with step_path(path):
            out = sae(x)
        (0.5 * (out.x_hat - x).square().sum() / N + 0.1 * out.codes.sum() / N).backward()
        if change:
            sae.W_dec.grad.mul_(2.0)
        expected = tangent(sae.W_dec.grad.clone(), sae.W_dec.detach())
        base_passes.clear()
        sae.remove_parallel_grad_()
        torch.testing.assert_close(sae.W_dec.grad, expected, rtol=1e-5, atol=1e-6)
        assert len(base_passes) == (0 if path == "sparse" and not change else 1), (path, change)


def test_step_path_names_a_bad_path():
    with pytest.raises(ValueError, match="path"):
        with step_path("fast"):
            pass


# -- training on the sparse path reaches the dense path's MMCS ------------------------------
def test_sparse_step_training_matches_dense_mmcs_on_the_reference_toy():
    """The README's reference toy and SAE (width 1024), same seed, same samples (a short
    run; benchmarks/bench_sae.py --parity runs the README's 300k samples): every step on
    the sparse path ends at the dense path's MMCS."""
    data = SyntheticData(SyntheticConfig())
    config = TrainConfig(n_samples=60_000, batch_size=256, log_every=47)
    scores = {}
    for path in ("dense", "sparse"):
        with step_path(path):
            res = train_sae("relu", data, config, width=1024, progress=False, threads=1)
        scores[path] = mmcs(data.features, res.sae.dictionary)
        assert res.success and res.n_iter == config.n_steps
    assert scores["dense"] > 0.5  # it learned; MMCS is still climbing at this budget
    assert abs(scores["sparse"] - scores["dense"]) <= 0.002, scores


@pytest.mark.parametrize("arch", ["relu", "topk", "batchtopk"])
@pytest.mark.parametrize("path", ["dense", "sparse"])
def test_forward_outputs_recycle_memory_only_once_nothing_holds_it(arch, path):
    """A training step's pre-activations and codes reuse the memory of an earlier step's
    (a fresh multi-MB buffer page-faults on every step) only once no tensor holds it: an
    output kept by the caller, even detached, is never overwritten, and the memory
    alternates between two buffers while the caller keeps the last step's outputs."""
    sae = make_sae(arch, 24, 64, seed=0, **({} if arch == "relu" else {"k": 4}))
    x = torch.randn(256, 24, generator=torch.Generator().manual_seed(0))
    kept, pointers = [], []
    with step_path(path):
        for step in range(4):
            out = sae(x * (1 + step))
            # the copy is taken before the backward pass and this step's forward of the
            # next step, and compared after both: neither may write into held codes
            kept.append((out.codes.detach(), out.codes.detach().clone()))
            out.x_hat.square().sum().backward()
            pointers.append(out.codes.data_ptr())
            del out
            for held, copy in kept:  # this step's codes and the previous step's
                assert torch.equal(held, copy), step
            if len(kept) > 1:  # the caller lets go of all but the last step's outputs
                kept.pop(0)
            held, copy = kept[-1]
            assert torch.equal(held, copy)
        assert kept[-1][0].any()  # codes an overwrite would change
    assert pointers[2] == pointers[0] and pointers[3] == pointers[1] != pointers[0]
    with torch.no_grad():  # inference: fresh memory every call, never a recycled buffer
        first, second = sae(x).codes, sae(x).codes
    assert first.data_ptr() != second.data_ptr()
    assert first.data_ptr() not in pointers[:2] and second.data_ptr() not in pointers[:2]
