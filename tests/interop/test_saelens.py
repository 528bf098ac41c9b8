"""``toysae.interop.saelens``: SAELens interop, checked against the real sae-lens package
(a dev dependency).

Both ways: toysae SAEs exported and loaded by ``sae_lens.SAE.load_from_disk``
give the same codes and reconstructions; SAEs built and saved by SAELens come
into toysae computing the same thing. And every way a directory can be wrong."""

import json
import os
import warnings

import pytest
import torch
from saelens_models import (
    TOYSAE_KWARGS,
    WIDTH,
    D,
    exported,
    inputs,
    random_toysae,
    randomise_saelens_,
    saelens_training_sae,
)
from safetensors.torch import load_file, save_file

from toysae.interop import (
    SAELENS_VERSION,
    export_saelens,
    load_sae_with_info,
    load_saelens,
    read_saelens,
)
from toysae.sae import ReLUSAE, make_sae

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    sae_lens = pytest.importorskip("sae_lens", reason="sae-lens is a dev dependency")
    from sae_lens.saes.sae import SAEMetadata


SAELENS_CLASS = {"relu": "StandardSAE", "relu-no-bias": "StandardSAE", "topk": "TopKSAE",
                 "batchtopk": "JumpReLUSAE", "matryoshka": "JumpReLUSAE",
                 "jumprelu": "JumpReLUSAE", "gated": "GatedSAE",
                 "matching_pursuit": "MatchingPursuitSAE"}


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def nontrivial(codes):
    """The comparison means something: some codes fire and some do not."""
    active = (codes != 0).float().mean()
    assert 0.05 < active < 0.95, f"{active:.2f} of the codes active: a trivial test input"


def saelens_outputs(directory, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sae_lens.SAE.load_from_disk(str(directory))
    with torch.no_grad():
        codes = model.encode(x)
        return model, codes, model.decode(codes), model(x)


# ------------------------------------------------------------ toysae -> SAELens
@pytest.mark.parametrize("key", sorted(TOYSAE_KWARGS))
def test_export_loads_in_saelens_with_the_same_outputs(tmp_path, key):
    sae = random_toysae(key)
    directory = export_saelens(sae, tmp_path / key, hook_name="blocks.0.hook_resid_pre")
    x = inputs()
    model, codes, x_hat, forward = saelens_outputs(directory, x)
    assert type(model).__name__ == SAELENS_CLASS[key]
    assert model.cfg.metadata.hook_name == "blocks.0.hook_resid_pre"
    with torch.no_grad():
        out = sae(x)
    nontrivial(out.codes)
    close(out.codes, codes)
    close(out.x_hat, x_hat)
    close(out.x_hat, forward)
    # ... and back into toysae: the same SAE, exactly.
    back = load_saelens(directory)
    assert type(back) is type(sae) and back.config() == sae.config() and not back.training
    for name, value in sae.state_dict().items():
        if name == "log_threshold":  # stored as exp(log_threshold): one rounding each way
            close(back.state_dict()[name], value)
        elif name == "threshold_updates":  # only whether it was ever set matters
            assert bool(back.state_dict()[name]) == bool(value)
        else:
            assert torch.equal(back.state_dict()[name], value), name
    with torch.no_grad():
        close(back(x).codes, out.codes)


@pytest.mark.parametrize("key", ["relu", "topk", "gated", "jumprelu", "matching_pursuit"])
def test_export_keeps_non_unit_decoder_rows_as_they_are(tmp_path, key):
    sae = random_toysae(key, unit_rows=False)
    directory = export_saelens(sae, tmp_path / key)
    x = inputs(1)
    _, codes, x_hat, _ = saelens_outputs(directory, x)
    with torch.no_grad():
        out = sae(x)
    nontrivial(out.codes)
    close(out.codes, codes)
    close(out.x_hat, x_hat)
    with torch.no_grad():
        assert torch.equal(load_saelens(directory, fold_decoder_norms=False)(x).codes,
                           out.codes)


def test_batchtopk_exports_its_inference_rule_as_saelens_does(tmp_path):
    sae = random_toysae("batchtopk")
    cfg = json.loads((export_saelens(sae, tmp_path / "b") / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu"
    assert cfg["metadata"]["training_architecture"] == "batchtopk"
    assert load_file(tmp_path / "b" / "sae_weights.safetensors")["threshold"].unique().tolist() \
        == [pytest.approx(0.35)]
    # A BatchTopK SAE never trained has threshold 0: a plain ReLU, in both tools.
    fresh = make_sae("batchtopk", D, WIDTH, k=3).eval()
    with torch.no_grad():
        fresh.b_enc.normal_(generator=torch.Generator().manual_seed(0))
    _, codes, _, _ = saelens_outputs(export_saelens(fresh, tmp_path / "fresh"), inputs())
    with torch.no_grad():
        close(fresh(inputs()).codes, codes)
    back = load_saelens(tmp_path / "fresh")
    assert float(back.threshold) == 0.0 and int(back.threshold_updates) == 0


def test_export_records_the_sparsity_coef_in_both_scalings(tmp_path):
    sae = random_toysae("relu")
    directory = export_saelens(sae, tmp_path / "r", sparsity_coef=0.25, model_name="toy")
    cfg = json.loads((directory / "cfg.json").read_text())
    assert cfg["metadata"]["training_architecture_details"]["l1_coefficient"] == 0.5
    assert cfg["metadata"]["model_name"] == "toy"
    assert cfg["metadata"]["sae_lens_version"] == SAELENS_VERSION
    _, info = load_sae_with_info(directory)
    assert info.source == "saelens" and info.sparsity_coef == 0.25
    with pytest.raises(ValueError, match="no sparsity penalty"):
        export_saelens(random_toysae("topk"), tmp_path / "t", sparsity_coef=0.1)


def test_export_is_deterministic_and_atomic(tmp_path, monkeypatch):
    sae = random_toysae("gated")
    a = export_saelens(sae, tmp_path / "a")
    b = export_saelens(sae, tmp_path / "b")
    for name in ("cfg.json", "sae_weights.safetensors"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    old_mask = os.umask(0o027)
    try:
        c = export_saelens(sae, tmp_path / "c")
    finally:
        os.umask(old_mask)
    assert (c.stat().st_mode & 0o777) == 0o750  # the umask's mode, not mkdtemp's 0700

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        export_saelens(sae, tmp_path / "d")
    with pytest.raises(OSError, match="disk full"):
        export_saelens(sae, a, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no temporaries
    assert (a / "cfg.json").read_bytes() == (b / "cfg.json").read_bytes()  # a untouched


def test_export_refuses_what_saelens_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="tied SAE has no SAELens counterpart"):
        export_saelens(make_sae("tied", D, WIDTH), tmp_path / "t")
    with pytest.raises(ValueError, match="tied SAE has no SAELens counterpart"):
        export_saelens(make_sae("tied", D, WIDTH, decoder_bias=True), tmp_path / "t")

    class Custom(ReLUSAE):
        pass

    with pytest.raises(ValueError, match="subclass of the registered relu SAE"):
        export_saelens(Custom(D, WIDTH), tmp_path / "c")

    class NoFormat(ReLUSAE):
        saelens_architecture = None

    class OtherFormat(ReLUSAE):
        saelens_architecture = "abstopk"

    class Unregistered(ReLUSAE):
        architecture = "unregistered"

    with pytest.raises(ValueError, match=r"architecture 'relu' has no SAELens mapping; "
                                         r"exportable: \['batchtopk', 'gated', 'jumprelu'"):
        export_saelens(NoFormat(D, WIDTH), tmp_path / "f")
    with pytest.raises(ValueError, match="maps to SAELens's 'abstopk', whose directory toysae "
                                         "does not write"):
        export_saelens(OtherFormat(D, WIDTH), tmp_path / "o")
    with pytest.raises(ValueError, match="'unregistered' is not registered"):
        export_saelens(Unregistered(D, WIDTH), tmp_path / "u")
    with pytest.raises(TypeError, match="sae must be a toysae SparseAutoencoder"):
        export_saelens(torch.nn.Linear(2, 2), tmp_path / "l")
    broken = random_toysae("relu")
    with torch.no_grad():
        broken.b_enc[3] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf in b_enc"):
        export_saelens(broken, tmp_path / "n")
    with pytest.raises(TypeError, match="hook_name must be a str"):
        export_saelens(random_toysae("relu"), tmp_path / "h", hook_name=3)
    assert not any(tmp_path.iterdir())


def test_export_replaces_only_a_saelens_directory(tmp_path):
    sae = random_toysae("relu")
    target = export_saelens(sae, tmp_path / "sae")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_saelens(sae, target)
    export_saelens(random_toysae("topk"), target, overwrite=True)
    assert json.loads((target / "cfg.json").read_text())["architecture"] == "topk"
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="not a SAELens SAE"):
        export_saelens(sae, other, overwrite=True)
    assert (other / "mine.txt").read_text() == "keep"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        export_saelens(sae, tmp_path / "file")


# ------------------------------------------------------------ SAELens -> toysae
def saelens_inference_sae(arch, seed=2, *, unit_rows=False, **cfg):
    classes = {"standard": ("StandardSAE", "StandardSAEConfig"),
               "topk": ("TopKSAE", "TopKSAEConfig"),
               "jumprelu": ("JumpReLUSAE", "JumpReLUSAEConfig"),
               "gated": ("GatedSAE", "GatedSAEConfig")}
    model_cls, cfg_cls = (getattr(sae_lens, name) for name in classes[arch])
    return randomise_saelens_(model_cls(cfg_cls(d_in=D, d_sae=WIDTH, **cfg)), seed,
                              unit_rows=unit_rows)


@pytest.mark.parametrize("arch, cfg, toysae_arch", [
    ("standard", {}, "relu"),
    ("standard", {"apply_b_dec_to_input": False}, "relu"),
    ("topk", {"k": 4, "rescale_acts_by_decoder_norm": True}, "topk"),
    ("jumprelu", {}, "jumprelu"),
    ("jumprelu", {"apply_b_dec_to_input": False}, "jumprelu"),
    ("gated", {}, "gated"),
    ("gated", {"apply_b_dec_to_input": False}, "gated"),
])
def test_saelens_sae_imports_with_the_same_outputs(tmp_path, arch, cfg, toysae_arch):
    model = saelens_inference_sae(arch, **cfg)
    model.save_model(tmp_path / "s")
    x = inputs(3)
    with torch.no_grad():
        codes, x_hat = model.encode(x), model(x)
    norms = model.W_dec.detach().norm(dim=1)
    assert (norms - 1).abs().max() > 0.1  # SAELens's rows are not unit: folding is tested
    sae = load_saelens(tmp_path / "s")
    assert sae.architecture == toysae_arch and not sae.training
    with torch.no_grad():
        out = sae(x)
    nontrivial(out.codes)
    close(out.x_hat, x_hat)
    if arch == "topk":  # ranks rescaled pre-activations: the fold leaves the codes alone
        close(out.codes, codes)
    else:  # toysae's codes are in units of unit atoms
        close(out.codes, codes * norms)
    close(sae.dictionary, sae.W_dec.detach())  # unit rows
    if arch != "topk":  # kept as SAELens has them, the codes are SAELens's own
        unfolded = load_saelens(tmp_path / "s", fold_decoder_norms=False)
        with torch.no_grad():
            close(unfolded(x).codes, codes)
            close(unfolded(x).x_hat, x_hat)


def test_hook_z_sae_reads_its_input_flattened(tmp_path):
    model = saelens_inference_sae("standard", unit_rows=True, reshape_activations="hook_z",
                                  metadata=SAEMetadata(hook_name="blocks.0.attn.hook_z"))
    model.save_model(tmp_path / "z")
    loaded = read_saelens(tmp_path / "z")
    assert any("hook_z" in note for note in loaded.notes)
    z = inputs(7).reshape(-1, 2, D // 2)  # (n, n_heads, d_head), as SAELens hooks see it
    with torch.no_grad():
        out = loaded.sae(z.flatten(1))
        nontrivial(out.codes)
        close(out.codes, model.encode(z))
        close(out.x_hat, model(z).flatten(1))


def test_topk_on_raw_pre_activations_needs_unit_rows_or_no_fold(tmp_path):
    model = saelens_inference_sae("topk", k=4)  # rescale_acts_by_decoder_norm=False
    model.save_model(tmp_path / "raw")
    with pytest.raises(ValueError, match="fold_decoder_norms=False"):
        load_saelens(tmp_path / "raw")
    x = inputs(4)
    with torch.no_grad():
        out = load_saelens(tmp_path / "raw", fold_decoder_norms=False)(x)
        close(out.codes, model.encode(x))
        close(out.x_hat, model(x))
    rescaled = saelens_inference_sae("topk", k=4, rescale_acts_by_decoder_norm=True)
    rescaled.save_model(tmp_path / "rescaled")
    with pytest.raises(ValueError, match="fold_decoder_norms=True"):
        load_saelens(tmp_path / "rescaled", fold_decoder_norms=False)
    unit = saelens_inference_sae("topk", k=4, unit_rows=True)
    unit.save_model(tmp_path / "unit")
    with torch.no_grad():
        close(load_saelens(tmp_path / "unit")(x).codes, unit.encode(x))


@pytest.mark.parametrize("kind, cfg, toysae_arch", [
    ("batchtopk", {"k": 3}, "batchtopk"),
    ("matryoshka", {"k": 3, "matryoshka_widths": [4, 9, WIDTH]}, "matryoshka"),
])
def test_saelens_batchtopk_comes_back_as_batchtopk(tmp_path, kind, cfg, toysae_arch):
    model = randomise_saelens_(saelens_training_sae(kind, **cfg))
    model.topk_threshold.fill_(0.3)  # its running inference threshold
    model.save_inference_model(tmp_path / "s")  # saved as a JumpReLU SAE
    x = inputs(5)
    _, codes, x_hat, _ = saelens_outputs(tmp_path / "s", x)
    sae = load_saelens(tmp_path / "s")
    assert sae.architecture == toysae_arch and sae.k == 3
    assert float(sae.threshold) == pytest.approx(0.3)
    if kind == "matryoshka":
        assert sae.prefix_sizes == [4, 9, WIDTH]
    with torch.no_grad():
        out = sae(x)
    nontrivial(out.codes)
    close(out.codes, codes)  # SAELens folded the decoder norms itself on saving
    close(out.x_hat, x_hat)


def test_saelens_jumprelu_with_thresholds_that_differ_stays_jumprelu(tmp_path):
    model = randomise_saelens_(saelens_training_sae("batchtopk", k=3))
    model.topk_threshold.fill_(0.3)
    model.save_inference_model(tmp_path / "s")
    weights = load_file(tmp_path / "s" / "sae_weights.safetensors")
    weights["threshold"] = weights["threshold"] + torch.linspace(0, 0.2, WIDTH)
    save_file(weights, tmp_path / "s" / "sae_weights.safetensors")
    loaded = read_saelens(tmp_path / "s")
    assert loaded.sae.architecture == "jumprelu"
    assert any("differ per latent" in note for note in loaded.notes)
    x = inputs(6)
    _, codes, x_hat, _ = saelens_outputs(tmp_path / "s", x)
    with torch.no_grad():
        close(loaded.sae(x).codes, codes)
        close(loaded.sae(x).x_hat, x_hat)


# ------------------------------------------------------------ bad directories
@pytest.mark.usefixtures("nothing_built")
def test_bad_weights_are_refused(tmp_path):
    directory = exported(tmp_path)
    weights_path = directory / "sae_weights.safetensors"
    weights = load_file(weights_path)
    save_file({**weights, "extra": torch.zeros(3)}, weights_path)
    with pytest.raises(ValueError, match="the file has"):
        load_saelens(directory)
    save_file({**weights, "b_dec": torch.zeros(5)}, weights_path)
    with pytest.raises(ValueError, match=r"b_dec has shape \(5,\)"):
        load_saelens(directory)
    save_file({**weights, "b_dec": torch.zeros(D, dtype=torch.int32)}, weights_path)
    with pytest.raises(ValueError, match="expected a float tensor"):
        load_saelens(directory)
    save_file({**weights, "b_dec": torch.full((D,), float("inf"))}, weights_path)
    with pytest.raises(ValueError, match="b_dec has NaN or Inf"):
        load_saelens(directory)
    weights_path.write_bytes(b"\x00" * 12)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_saelens(directory)


def test_jumprelu_thresholds_must_be_positive(tmp_path):
    directory = exported(tmp_path)
    weights = load_file(directory / "sae_weights.safetensors")
    weights["threshold"][[2, 5]] = 0.0
    save_file(weights, directory / "sae_weights.safetensors")
    with pytest.raises(ValueError, match=r"2 latent\(s\) \(2, 5\) have threshold <= 0"):
        load_saelens(directory)


def test_inconsistent_toysae_metadata_is_refused(tmp_path):
    directory = exported(tmp_path, "topk")
    cfg = json.loads((directory / "cfg.json").read_text())
    cfg["k"] = 4
    (directory / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="metadata.toysae.config has k=3 but the SAELens k is 4"):
        load_saelens(directory)
    cfg["k"] = 3
    cfg["metadata"]["toysae"]["architecture"] = "gated"
    (directory / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="cannot hold"):
        load_saelens(directory)
    cfg["metadata"]["toysae"] = {"architecture": "topk", "config": {"k": 3, "aux_k": 99}}
    (directory / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="not a valid topk configuration"):
        load_saelens(directory)


def test_not_a_saelens_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no SAELens SAE directory"):
        load_saelens(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a SAELens SAE directory: it has no cfg.json"):
        load_saelens(tmp_path / "empty")
    (tmp_path / "file").write_text("{}")
    with pytest.raises(ValueError, match="is a file"):
        load_saelens(tmp_path / "file")
    directory = exported(tmp_path)
    (directory / "cfg.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_saelens(directory)
    (directory / "cfg.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        load_saelens(directory)
    with pytest.raises(TypeError, match="fold_decoder_norms must be a bool"):
        load_saelens(directory, fold_decoder_norms=1)
