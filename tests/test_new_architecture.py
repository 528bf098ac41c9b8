"""A new architecture is one file: a throwaway one, defined and registered here, goes through
training (and a resumed run), the checkpoint round trip, SAELens's format both ways (with the
real sae-lens) and the architectures-under-theory experiment's selection, with no other file
naming it. docs/design.md, "Add an architecture", is the recipe this follows."""

from __future__ import annotations

import json
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from torch import Tensor

import toysae.sae
from toysae._threads import torch_threads
from toysae.data import SyntheticConfig, SyntheticData
from toysae.experiments import architectures_under_theory as aut
from toysae.interop import export_saelens, load_sae_with_info, load_saelens
from toysae.sae import (
    ARCHITECTURES,
    SparseAutoencoder,
    TrainConfig,
    make_sae,
    register,
    start_coef,
)
from toysae.sae import load as load_checkpoint
from toysae.sae import save as save_checkpoint

NAME = "plainrelu"
D, WIDTH = 8, 16
SHIPPED = ("relu", "tied", "topk", "batchtopk", "jumprelu", "gated", "matryoshka",
           "matching_pursuit")


class PlainReLUSAE(SparseAutoencoder):
    """Untied ReLU SAE in plain autograd ops (the base class's forward pass), whose encoder
    bias starts at ``bias_init``: what SAELens's standard SAE computes, so it is saved as one.
    """

    saelens_architecture = "standard"  # saelens_training_architecture None: "standard" too

    def __init__(self, d: int, width: int, *, bias_init: float = 0.0, seed: int = 0):
        super().__init__(d, width, seed=seed)
        self.bias_init = float(bias_init)
        self._init_untied_()
        with torch.no_grad():
            self.b_enc.fill_(self.bias_init)

    def config(self) -> dict:
        return {**super().config(), "bias_init": self.bias_init}

    def encode_pre(self, x: Tensor) -> Tensor:
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc)

    def activate(self, pre_acts: Tensor) -> Tensor:
        return torch.relu(pre_acts)


@pytest.fixture(autouse=True)
def plain():
    """PlainReLUSAE registered for one test, so every other test sees the shipped set."""
    register(NAME)(PlainReLUSAE)
    try:
        with torch_threads(1):
            yield PlainReLUSAE
    finally:
        del ARCHITECTURES[NAME]


@pytest.fixture(scope="module")
def toy():
    return SyntheticData(SyntheticConfig(n_features=12, d=D, mean_active=2.0, seed=1))


def trained(toy, **train) -> tuple[SparseAutoencoder, object]:
    sae = make_sae(NAME, D, WIDTH, bias_init=-0.3, seed=2)  # some latents start dead
    config = TrainConfig(n_samples=128 * 40, batch_size=128, sparsity_coef=0.02, log_every=10,
                         dead_window=10, resample_every=15, resample_until=0.8, seed=3)
    return sae, toysae.sae.train_sae(sae, toy, config, progress=False, **train)


def test_it_is_registered_after_the_shipped_ones():
    assert set(SHIPPED) < set(ARCHITECTURES)
    assert list(ARCHITECTURES) == [*SHIPPED, NAME]  # listing_order 100 by default
    sae = make_sae(NAME, D, WIDTH, bias_init=0.5)
    assert type(sae) is PlainReLUSAE and sae.architecture == NAME
    assert torch.equal(sae.b_enc, torch.full((WIDTH,), 0.5))


def test_it_trains_and_resumes_through_the_engine(toy, tmp_path):
    sae, result = trained(toy)
    assert result.success and result.n_iter == 40
    loss = result.history["loss"]
    assert loss[-1] < loss[0]
    assert result.n_resampled > 0  # resampling reaches its latents through the base class
    # Interrupted at its third logging step (30), the run resumes from its checkpoint at
    # step 25 and ends bit-identical to the run never interrupted.
    calls = []

    def interrupt_at_30(_):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return {}

    path = tmp_path / "run.safetensors"
    with pytest.raises(KeyboardInterrupt):
        trained(toy, checkpoint_every=25, checkpoint_path=path, eval_fn=interrupt_at_30)
    again, resumed = trained(toy, resume_from=path)
    assert resumed.success and np.array_equal(resumed.history["loss"], loss)
    assert resumed.n_resampled == result.n_resampled
    for key, value in sae.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key


def test_it_round_trips_through_a_checkpoint(toy, tmp_path):
    sae, result = trained(toy)
    path = save_checkpoint(sae, tmp_path / "sae.safetensors", sparsity_coef=0.02)
    back = load_checkpoint(path, architecture=NAME)
    assert type(back) is PlainReLUSAE and back.config() == sae.config() and not back.training
    for key, value in sae.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    _, info = load_sae_with_info(path)
    assert info.architecture == NAME and info.sparsity_coef == 0.02


def test_it_goes_to_saelens_and_back(toy, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sae_lens = pytest.importorskip("sae_lens", reason="sae-lens is a dev dependency")
    sae, _ = trained(toy)
    sae.eval()
    directory = export_saelens(sae, tmp_path / "sae", sparsity_coef=0.02)
    cfg = json.loads((directory / "cfg.json").read_text())
    assert cfg["architecture"] == "standard"
    assert cfg["metadata"]["training_architecture"] == "standard"
    assert cfg["metadata"]["training_architecture_details"] == {"l1_coefficient": 0.04}
    x = torch.from_numpy(toy.sample(64, seed=9).x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sae_lens.SAE.load_from_disk(str(directory))
    with torch.no_grad():
        out = sae(x)
        assert 0 < float((out.codes > 0).float().mean()) < 1
        torch.testing.assert_close(model.encode(x), out.codes, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(model(x), out.x_hat, rtol=1e-6, atol=1e-6)
    back, info = load_sae_with_info(directory)
    assert type(back) is PlainReLUSAE and back.config() == sae.config()
    assert info.source == "saelens" and info.sparsity_coef == 0.02
    for key, value in sae.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    # A standard SAE that SAELens made and wrote still comes in as relu (listed first).
    sae_lens.StandardSAE(sae_lens.StandardSAEConfig(d_in=D, d_sae=WIDTH)).save_model(
        tmp_path / "theirs")
    assert load_saelens(tmp_path / "theirs").architecture == "relu"


def test_the_experiment_selects_it_and_runs_it(toy):
    assert aut.architectures() == (*SHIPPED, NAME)
    assert NAME not in aut.k_architectures()  # an L1 penalty: trained to the target L0
    assert aut.k_architectures() == ("topk", "batchtopk", "matryoshka", "matching_pursuit")
    assert aut.Config().architectures == aut.architectures()
    config = aut.Config(data=SyntheticConfig.synth_small(n_features=64, d=16, tree_roots=1),
                        width=16, architectures=(NAME,), seeds=(0,), l0_fractions=(1.0,),
                        n_train=2048, train=aut.train_recipe(4096), n_eval=256, n_check=128,
                        dictlearn_samples=256, dictlearn_epochs=1, track=NAME, track_points=2,
                        track_check=64, n_boot=100)
    result = aut.run(config)
    assert [r.name for r in result.runs] == [NAME, aut.DICTLEARN]
    run = result.runs[0]
    # trained by the L0 controller from the L1 start: the coefficient it ended at is kept
    assert run.k is None and run.target_l0 == result.targets[0]
    assert run.sparsity_coef != start_coef("l1")
    assert np.isfinite(run.l0) and 0 <= run.mcc <= 1


def test_a_module_of_its_own_is_found_when_toysae_sae_is_imported(tmp_path, monkeypatch):
    """The one new file: toysae.sae imports every module of its package, so a module that
    registers an architecture needs no line elsewhere (here the package's path gets a
    folder beside it, so that no file is written into the source tree)."""
    (tmp_path / "scaled_relu.py").write_text(textwrap.dedent(f'''
        from toysae.sae.base import register
        from {__name__} import PlainReLUSAE


        @register("scaledrelu")
        class ScaledReLUSAE(PlainReLUSAE):
            listing_order = 15  # between relu and tied
    '''))
    monkeypatch.setattr(toysae.sae, "__path__", [*toysae.sae.__path__, str(tmp_path)])
    try:
        toysae.sae._import_modules()
        assert "scaledrelu" in ARCHITECTURES
        assert list(ARCHITECTURES)[:3] == ["relu", "scaledrelu", "tied"]
        assert type(make_sae("scaledrelu", D, WIDTH)).__name__ == "ScaledReLUSAE"
    finally:
        ARCHITECTURES.pop("scaledrelu", None)
        sys.modules.pop("toysae.sae.scaled_relu", None)
