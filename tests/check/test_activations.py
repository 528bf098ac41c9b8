"""``toysae.check._activations``: activation files (one or a folder of shards, ``.npy`` or
``.safetensors``) read as float64 rows."""

from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import save_file as save_torch

from toysae.check._activations import Activations


def test_bfloat16_activations_are_widened_exactly(tmp_path):
    x = torch.randn(7, 5).to(torch.bfloat16)
    save_torch({"x": x}, str(tmp_path / "bf16.safetensors"))
    acts = Activations(tmp_path / "bf16.safetensors")
    assert np.array_equal(acts.read(2, 6), x[2:6].double().numpy())
