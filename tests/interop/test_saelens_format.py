"""``toysae.interop._saelens_format``: SAELens's directory format itself. A ``cfg.json``
is read into the fields that decide the forward pass (defaults, notes, accepted spellings)
and refused, before any SAE is built, for everything toysae cannot read; the weight
file's header is checked against it, tensor names, shapes and dtypes."""

from __future__ import annotations

import json

import pytest
import torch
from saelens_models import edit_cfg, exported
from safetensors.torch import save_file

from toysae.interop import load_saelens
from toysae.interop._saelens_format import (
    CFG_FILENAME,
    WEIGHTS_FILENAME,
    check_tensor_header,
    expected_shapes,
    read_cfg,
)


def _write_cfg(directory, **fields):
    """A minimal SAELens 6 cfg.json of a standard SAE, with ``fields`` on top."""
    directory.mkdir(exist_ok=True)
    cfg = {"architecture": "standard", "d_in": 4, "d_sae": 8,
           "metadata": {"sae_lens_version": "6.54.12"}, **fields}
    (directory / CFG_FILENAME).write_text(json.dumps(cfg))
    return directory


@pytest.mark.usefixtures("nothing_built")
@pytest.mark.parametrize("changes, message", [
    ({"architecture": "transcoder"}, "'transcoder' has no toysae counterpart"),
    ({"architecture": "batchtopk"}, "save_inference_model"),
    ({"architecture": "mystery"}, "'mystery' is not a SAELens SAE architecture"),
    ({"architecture": None}, "None is not a SAELens SAE architecture"),
    ({"d_sae": 17}, r"W_enc has shape \(6, 16\), but cfg.json \(d_in=6, d_sae=17\)"),
    ({"d_in": "6"}, "d_in must be an integer"),
    ({"d_sae": 0}, "d_sae must be >= 1"),
    ({"dtype": "int8"}, "dtype 'int8' is not one of"),
    ({"normalize_activations": "layer_norm"}, "normalize_activations is 'layer_norm'"),
    ({"apply_b_dec_to_input": "yes"}, "apply_b_dec_to_input must be true or false"),
    ({"metadata": {"sae_lens_version": "5.9.1"}}, "written by SAELens 5.9.1"),
    ({"metadata": {}}, r"written by SAELens < 6 \(no version\)"),
])
def test_bad_cfg_is_refused_before_anything_is_built(tmp_path, changes, message):
    directory = edit_cfg(exported(tmp_path), **changes)
    with pytest.raises(ValueError, match=message):
        load_saelens(directory)


@pytest.mark.usefixtures("nothing_built")
def test_bad_topk_k_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"k must be in \[1, 16\], got 17"):
        load_saelens(edit_cfg(exported(tmp_path, "topk"), k=17))


def test_a_minimal_cfg_reads_with_saelens_defaults(tmp_path):
    cfg = read_cfg(_write_cfg(tmp_path / "s"))
    assert (cfg.architecture, cfg.d_in, cfg.d_sae) == ("standard", 4, 8)
    assert cfg.dtype == torch.float32 and cfg.apply_b_dec_to_input is True
    assert cfg.k is None and cfg.rescale_acts_by_decoder_norm is False
    assert cfg.reshape == "none" and cfg.notes == [] and cfg.details == {}
    assert cfg.training_architecture is None and cfg.toysae is None
    topk = read_cfg(_write_cfg(tmp_path / "k", architecture="topk", d_sae=128))
    assert topk.k == 100 and topk.rescale_acts_by_decoder_norm is False  # SAELens's defaults


def test_matching_pursuit_stopping_rules_read_with_saelens_defaults(tmp_path):
    cfg = read_cfg(_write_cfg(tmp_path / "m", architecture="matching_pursuit"))
    assert cfg.own == {"residual_threshold": 0.01, "max_iterations": None,
                       "stop_on_duplicate_support": True}
    cfg = read_cfg(_write_cfg(tmp_path / "n", architecture="matching_pursuit",
                              residual_threshold=0, max_iterations=5.0,
                              stop_on_duplicate_support=False))
    assert cfg.own == {"residual_threshold": 0.0, "max_iterations": 5,
                       "stop_on_duplicate_support": False}
    assert read_cfg(_write_cfg(tmp_path / "s")).own == {}
    assert read_cfg(_write_cfg(tmp_path / "k", architecture="topk", k=3)).own == {
        "k": 3, "rescale_acts_by_decoder_norm": False}


def test_accepted_spellings_and_the_notes_they_bring(tmp_path):
    cfg = read_cfg(_write_cfg(tmp_path / "s", architecture="topk", k=3.0, d_sae=8.0,
                              dtype="torch.bfloat16", reshape_activations="hook_z",
                              rescale_acts_by_decoder_norm=True,
                              metadata={"sae_lens_version": "10.0.1",
                                        "training_architecture": "batchtopk",
                                        "training_architecture_details": {"k": 3}}))
    assert (cfg.k, cfg.d_sae) == (3, 8) and type(cfg.k) is int  # integral floats read as ints
    assert cfg.dtype == torch.bfloat16 and cfg.rescale_acts_by_decoder_norm is True
    assert cfg.training_architecture == "batchtopk" and cfg.details == {"k": 3}
    assert len(cfg.notes) == 2
    assert "SAELens computes in bfloat16" in cfg.notes[0] and "hook_z" in cfg.notes[1]
    # the version at the top level (older 6.x files) counts too; 10 is read as a number
    assert read_cfg(_write_cfg(tmp_path / "t", sae_lens_version="6.0.0", metadata={})).d_in == 4


@pytest.mark.parametrize("fields, message", [
    ({"metadata": {"sae_lens_version": "v6.1"}}, "written by SAELens v6.1"),
    ({"metadata": []}, "metadata must be an object"),
    ({"architecture": "matryoshka_batchtopk"}, "save_inference_model"),
    ({"d_in": True}, "d_in must be an integer, got True"),
    ({"d_in": 4.5}, "d_in must be an integer, got 4.5"),
    ({"reshape_activations": "hook_q"}, "reshape_activations 'hook_q' is not"),
    ({"architecture": "topk", "k": 2, "rescale_acts_by_decoder_norm": 1},
     "rescale_acts_by_decoder_norm must be true or false"),
    ({"architecture": "matching_pursuit", "residual_threshold": "0.1"},
     "residual_threshold must be a finite number"),
    ({"architecture": "matching_pursuit", "residual_threshold": float("inf")},
     "residual_threshold must be a finite number"),
    ({"architecture": "matching_pursuit", "max_iterations": 0}, "max_iterations must be >= 1"),
    ({"architecture": "matching_pursuit", "stop_on_duplicate_support": "no"},
     "stop_on_duplicate_support must be true or false"),
    ({"metadata": {"sae_lens_version": "6.1", "training_architecture_details": [1]}},
     "training_architecture_details must be an object"),
    ({"metadata": {"sae_lens_version": "6.1", "toysae": "relu"}},
     "metadata.toysae must be an object"),
])
def test_cfg_fields_toysae_cannot_read_are_refused(tmp_path, fields, message):
    with pytest.raises(ValueError, match=message):
        read_cfg(_write_cfg(tmp_path / "s", **fields))


def test_expected_shapes_per_architecture(tmp_path):
    def shapes(arch, keys=()):
        return expected_shapes(read_cfg(_write_cfg(tmp_path / arch, architecture=arch, k=2)),
                               keys)

    common = {"W_enc": (4, 8), "W_dec": (8, 4), "b_dec": (4,)}
    assert shapes("standard") == shapes("topk") == {**common, "b_enc": (8,)}
    assert shapes("gated") == {**common, "b_gate": (8,), "b_mag": (8,), "r_mag": (8,)}
    assert shapes("jumprelu") == {**common, "b_enc": (8,), "threshold": (8,)}
    # matching pursuit's encoder is its decoder: no W_enc, no b_enc
    assert shapes("matching_pursuit") == {"W_dec": (8, 4), "b_dec": (4,)}
    # an older checkpoint's log_threshold is read in its place
    assert shapes("jumprelu", {"log_threshold"}) == {**common, "b_enc": (8,),
                                                     "log_threshold": (8,)}


def test_the_weight_header_is_checked_against_the_cfg(tmp_path):
    directory = _write_cfg(tmp_path / "s")
    cfg = read_cfg(directory)
    weights = {"W_enc": torch.zeros(4, 8), "W_dec": torch.zeros(8, 4),
               "b_enc": torch.zeros(8), "b_dec": torch.zeros(4)}
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        save_file({k: v.to(dtype) for k, v in weights.items()}, directory / WEIGHTS_FILENAME)
        check_tensor_header(directory, cfg)  # every float dtype SAELens writes is accepted
    save_file({**weights, "W_dec": torch.zeros(4, 8)}, directory / WEIGHTS_FILENAME)
    with pytest.raises(ValueError, match=r"W_dec has shape \(4, 8\), but cfg.json"):
        check_tensor_header(directory, cfg)
    del weights["b_enc"]
    save_file(weights, directory / WEIGHTS_FILENAME)
    with pytest.raises(ValueError, match=r"has tensors \['W_dec', 'W_enc', 'b_dec', 'b_enc'\]"):
        check_tensor_header(directory, cfg)
    (directory / WEIGHTS_FILENAME).unlink()
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        check_tensor_header(directory, cfg)
