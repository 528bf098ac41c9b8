"""``toysae.interop.loading``: ``load_sae`` takes a toysae checkpoint or a SAELens directory
(or either file of one), and ``load_sae_with_info`` reports the recorded training
coefficient in toysae's scaling, checked against SAEs the real sae-lens package saved."""

import json

import pytest
import torch
from saelens_models import inputs, random_toysae, randomise_saelens_, saelens_training_sae

from toysae._io import save_module_tensors
from toysae.interop import export_saelens, load_sae, load_sae_with_info
from toysae.sae import save
from toysae.sae.checkpoint import FORMAT, VERSION


@pytest.mark.parametrize("kind, cfg, coef", [
    ("standard", {"l1_coefficient": 3.0}, 1.5),
    ("gated", {"l1_coefficient": 0.5}, 0.25),
    ("jumprelu", {"l0_coefficient": 2.0}, 1.0),
    ("jumprelu", {"l0_coefficient": 2.0, "jumprelu_sparsity_loss_mode": "tanh"}, None),
    ("topk", {"k": 3}, None),
])
def test_saelens_training_coefficient_in_toysae_scaling(tmp_path, kind, cfg, coef):
    model = randomise_saelens_(saelens_training_sae(kind, **cfg))
    if kind == "jumprelu":
        with torch.no_grad():
            model.threshold.abs_().add_(0.05)
    model.save_inference_model(tmp_path / "s")
    sae, info = load_sae_with_info(tmp_path / "s")
    assert info.source == "saelens" and info.path == str(tmp_path / "s")
    assert info.architecture == sae.architecture
    assert info.sparsity_coef == coef
    if kind == "jumprelu":  # SAELens's bandwidth and initial threshold carry over
        assert sae.bandwidth == 0.05 and sae.threshold_init == 0.01
    # A run whose activations SAELens normalised: its coefficient is in other units.
    (tmp_path / "s" / "runner_cfg.json").write_text(
        json.dumps({"sae": {"normalize_activations": "expected_average_only_in"}}))
    _, info = load_sae_with_info(tmp_path / "s")
    assert info.sparsity_coef is None
    if coef is not None:
        assert any("normalised" in note for note in info.notes)


# ------------------------------------------------------------ load_sae
def test_load_sae_takes_a_checkpoint_or_a_saelens_directory(tmp_path):
    sae = random_toysae("topk")
    path = save(sae, tmp_path / "sae.safetensors")
    loaded, info = load_sae_with_info(path)
    assert info.source == "toysae" and info.sparsity_coef is None and info.notes == ()
    assert loaded.config() == sae.config()
    trained = save(sae, tmp_path / "trained.safetensors", sparsity_coef=0.125)
    assert load_sae_with_info(trained)[1].sparsity_coef == 0.125
    bad = save_module_tensors(sae, tmp_path / "bad.safetensors", {
        "format": FORMAT, "version": VERSION, "architecture": "topk",
        "config": json.dumps(sae.config()), "training": json.dumps({"sparsity_coef": -1})})
    with pytest.raises(ValueError, match="bad sparsity_coef"):
        load_sae_with_info(bad)
    directory = export_saelens(sae, tmp_path / "dir")
    x = inputs()
    with torch.no_grad():
        for target in (directory, directory / "cfg.json", directory / "sae_weights.safetensors"):
            assert torch.equal(load_sae(target)(x).x_hat, sae(x).x_hat)
    with pytest.raises(FileNotFoundError, match="no SAE at"):
        load_sae(tmp_path / "missing")
    (tmp_path / "noise.bin").write_bytes(b"not an sae")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_sae(tmp_path / "noise.bin")
