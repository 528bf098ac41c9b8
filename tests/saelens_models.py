"""SAEs with random weights on both sides of the SAELens interop, shared by the tests of
``toysae.interop`` (tests/interop/): toysae SAEs of every exportable architecture and
SAELens training SAEs, all at ``d = D`` and ``WIDTH`` latents; and exported directories
to spoil (``exported``, ``edit_cfg``)."""

import json
import warnings

import pytest
import torch

from toysae.interop import export_saelens
from toysae.sae import make_sae

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    sae_lens = pytest.importorskip("sae_lens", reason="sae-lens is a dev dependency")

D, WIDTH = 6, 16
TOYSAE_KWARGS = {"relu": {}, "relu-no-bias": {"decoder_bias": False}, "topk": {"k": 3},
                 "batchtopk": {"k": 3, "momentum": 0.05},
                 "matryoshka": {"k": 3, "prefix_sizes": [2, 6, 11]},
                 "jumprelu": {"threshold_init": 0.05, "bandwidth": 0.02}, "gated": {},
                 "matching_pursuit": {"k": 3}}


def inputs(seed=0, n=64):
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed))


def random_toysae(key, *, unit_rows=True, seed=1):
    """A toysae SAE with random weights, biases and thresholds (as if trained)."""
    sae = make_sae(key.split("-")[0], D, WIDTH, seed=3, **TOYSAE_KWARGS[key])
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if name == "log_threshold":  # thresholds around the pre-activations' scale
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5 - 1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.4)
        if unit_rows:
            sae.normalize_decoder_()
        if hasattr(sae, "threshold_updates"):  # BatchTopK's running inference threshold
            sae.threshold.fill_(0.35)
            sae.threshold_updates.fill_(7)
    return sae.eval()


def randomise_saelens_(model, seed=2, *, unit_rows=False):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.4)
            if name == "threshold":
                p.abs_().add_(0.05)
        if unit_rows:
            model.W_dec.div_(model.W_dec.norm(dim=1, keepdim=True))
    return model


def saelens_training_sae(kind, **cfg):
    names = {"standard": "StandardTrainingSAE", "jumprelu": "JumpReLUTrainingSAE",
             "gated": "GatedTrainingSAE", "topk": "TopKTrainingSAE",
             "batchtopk": "BatchTopKTrainingSAE",
             "matryoshka": "MatryoshkaBatchTopKTrainingSAE"}
    model_cls = getattr(sae_lens, names[kind])
    cfg_cls = getattr(sae_lens, names[kind] + "Config")
    return model_cls(cfg_cls(d_in=D, d_sae=WIDTH, **cfg))


def exported(tmp_path, key="jumprelu"):
    return export_saelens(random_toysae(key), tmp_path / key)


def edit_cfg(directory, **changes):
    cfg = json.loads((directory / "cfg.json").read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    (directory / "cfg.json").write_text(json.dumps(cfg))
    return directory
