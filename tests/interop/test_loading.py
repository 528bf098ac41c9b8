"""``toysae.interop.loading``: ``load_sae`` takes a toysae checkpoint or a SAELens directory
(or either file of one), and ``load_sae_with_info`` reports the recorded training
coefficient in toysae's scaling, checked against SAEs the real sae-lens package saved."""

import json
import struct

import pytest
import torch
from saelens_models import inputs, random_toysae, randomise_saelens_, saelens_training_sae
from safetensors.torch import load_file, save_file

from toysae._io import save_module_tensors, write_safetensors
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


# ------------------------------------------------------------ corrupted files
def _header(raw: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _with_header(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def _checkpoint(tmp_path):
    return save(random_toysae("relu"), tmp_path / "sae.safetensors")


def _truncated(tmp_path):
    path = _checkpoint(tmp_path)
    path.write_bytes(path.read_bytes()[:-7])
    return path


def _larger_than_the_file(tmp_path):
    path = _checkpoint(tmp_path)
    header, data = _header(path.read_bytes())
    entry = header["W_dec"]
    start, stop = entry["data_offsets"]
    entry["shape"][0] *= 100
    entry["data_offsets"] = [start, start + (stop - start) * 100]
    path.write_bytes(_with_header(header, data))
    return path


def _float64(tmp_path):
    sae = random_toysae("relu")
    return write_safetensors(tmp_path / "sae.safetensors",
                             {k: v.double() for k, v in sae.state_dict().items()},
                             {"format": FORMAT, "version": VERSION, "architecture": "relu",
                              "config": json.dumps(sae.config())})


def _nan_weights(tmp_path):
    sae = random_toysae("relu")
    with torch.no_grad():
        sae.W_dec[3, 1] = float("nan")
    return save(sae, tmp_path / "sae.safetensors")


def _saelens(tmp_path, change_cfg=None, change_weights=None):
    directory = export_saelens(random_toysae("relu"), tmp_path / "dir")
    if change_cfg is not None:
        cfg = json.loads((directory / "cfg.json").read_text())
        change_cfg(cfg)
        (directory / "cfg.json").write_text(json.dumps(cfg))
    if change_weights is not None:
        weights = load_file(directory / "sae_weights.safetensors")
        change_weights(weights)
        save_file(weights, str(directory / "sae_weights.safetensors"))
    return directory


def _saelens_truncated(tmp_path):
    directory = _saelens(tmp_path)
    weights = directory / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    return directory


def _set_nan(weights):
    weights["W_enc"][0, 0] = float("nan")


def _set_int(weights):
    weights["W_enc"] = weights["W_enc"].to(torch.int32)


@pytest.mark.parametrize("make, file, match", [
    (_truncated, "sae.safetensors", "tensors hold .* bytes but the file has"),
    (_larger_than_the_file, "sae.safetensors", "'W_enc' starts at byte"),
    (_float64, "sae.safetensors", "W_dec: the file has F64"),
    (_nan_weights, "sae.safetensors", "tensor 'W_dec' has 1 NaN or Inf entries"),
    (_saelens_truncated, "dir/sae_weights.safetensors", "not a readable safetensors file"),
    (lambda p: _saelens(p, change_weights=_set_nan), "dir/sae_weights.safetensors",
     "W_enc has NaN or Inf"),
    (lambda p: _saelens(p, change_weights=_set_int), "dir/sae_weights.safetensors",
     "W_enc has dtype I32; expected a float tensor"),
    (lambda p: _saelens(p, lambda c: c.pop("d_in")), "dir/cfg.json",
     "d_in must be an integer, got None"),
    (lambda p: _saelens(p, lambda c: c.update(d_sae="32")), "dir/cfg.json",
     "d_sae must be an integer, got '32'"),
    (lambda p: _saelens(p, lambda c: c.update(apply_b_dec_to_input="yes")), "dir/cfg.json",
     "apply_b_dec_to_input must be true or false"),
    (lambda p: _saelens(p, lambda c: c.update(metadata=[])), "dir/cfg.json",
     "metadata must be an object"),
    (lambda p: _saelens(p, lambda c: c["metadata"]["toysae"].update(config=[])),
     "dir/cfg.json", "metadata.toysae.config must be an object"),
])
def test_a_corrupt_sae_file_is_one_line_naming_the_file(tmp_path, make, file, match):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=match) as info:
        load_sae(path)
    message = str(info.value)
    assert str(tmp_path / file) in message and "\n" not in message
