"""``toysae.check._activations``: activation files (one or a folder of shards, ``.npy`` or
``.safetensors``) read as float64 rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file as save_torch

from toysae.check._activations import Activations


def test_bfloat16_activations_are_widened_exactly(tmp_path):
    x = torch.randn(7, 5).to(torch.bfloat16)
    save_torch({"x": x}, str(tmp_path / "bf16.safetensors"))
    acts = Activations(tmp_path / "bf16.safetensors")
    assert np.array_equal(acts.read(2, 6), x[2:6].double().numpy())


def _npy(path, array):
    np.save(path, array)
    return path


def _truncated_npy(tmp_path):
    path = _npy(tmp_path / "a.npy", np.zeros((50, 6)))
    path.write_bytes(path.read_bytes()[:-40])
    return path, "a.npy"


def _truncated_safetensors(tmp_path):
    save_torch({"x": torch.zeros(5, 6)}, str(tmp_path / "a.safetensors"))
    path = tmp_path / "a.safetensors"
    path.write_bytes(path.read_bytes()[:-8])
    return path, "a.safetensors"


def _shards_of_two_widths(tmp_path):
    _npy(tmp_path / "s0.npy", np.zeros((5, 6)))
    _npy(tmp_path / "s1.npy", np.zeros((5, 7)))
    return tmp_path, "s1.npy has 7"


def _integer_safetensors(tmp_path):
    save_torch({"x": torch.zeros(5, 6, dtype=torch.int32)}, str(tmp_path / "a.safetensors"))
    return tmp_path / "a.safetensors", "a.safetensors"


def _not_npy(tmp_path):
    (tmp_path / "a.npy").write_bytes(b"\x93NUMPY garbage")
    return tmp_path / "a.npy", "a.npy"


@pytest.mark.parametrize("make, match", [
    (_truncated_npy, "is not a readable .npy array"),
    (_truncated_safetensors, "is truncated: shape \\(5, 6\\) needs 192 bytes"),
    (_shards_of_two_widths, "shards of .* differ in d: s0.npy has 6"),
    (_integer_safetensors, "activations must be floating point .* is I32"),
    (_not_npy, "is not a readable .npy array"),
])
def test_corrupt_activation_files_are_one_line_naming_the_file(tmp_path, make, match):
    path, named = make(tmp_path)
    with pytest.raises(ValueError, match=match) as info:
        Activations(path)
    assert str(tmp_path) in str(info.value) and named in str(info.value)
    assert "\n" not in str(info.value)


def test_nan_activations_are_refused_naming_the_file_and_row(tmp_path):
    x = np.zeros((9, 4))
    x[6, 2] = np.nan
    acts = Activations(_npy(tmp_path / "a.npy", x))
    with pytest.raises(ValueError, match=f"{tmp_path / 'a.npy'}: row 6 of the activations"):
        acts.read(0, 9)
