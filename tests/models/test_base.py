"""``toysae.models.base``: what every host inherits, on a throwaway two-site host defined
here: the abstract methods are required, a new host is untrained until ``freeze_`` (then no
gradient reaches it), sites are checked and ordered, ``run_spliced`` puts an SAE's
reconstruction in place of a site and refuses an untrained host or a wrong width, and
``save`` writes the weights with the metadata ``load_host`` reads."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from toysae._config import JsonMixin
from toysae._io import read_safetensors
from toysae.models.base import HostBatch, HostFit, HostModel
from toysae.sae import ReLUSAE, TiedSAE


@dataclass(frozen=True)
class ChainConfig(JsonMixin):
    d: int = 4
    hidden: int = 3


class Chain(HostModel):
    """``hidden = x W1``, ``mid = ReLU(hidden)``, ``output = mid W2``."""

    sites = ("hidden", "mid")
    divergence_name = "sq_distance"

    def __init__(self, config: ChainConfig = ChainConfig()):
        super().__init__()
        self.config, self.input_dim = config, config.d
        gen = torch.Generator().manual_seed(0)
        self.W1 = nn.Parameter(torch.randn(config.d, config.hidden, generator=gen))
        self.W2 = nn.Parameter(torch.randn(config.hidden, 2, generator=gen))

    def site_width(self, site):
        return self.config.hidden

    def forward_cache(self, inputs):
        hidden = inputs @ self.W1
        return {"hidden": hidden, **self.forward_from("hidden", hidden, {})}

    def forward_from(self, site, act, cache):
        out = {}
        if site == "hidden":
            act = out["mid"] = torch.relu(act)
        return {**out, "output": act @ self.W2}

    def divergence(self, original, patched):
        return (patched - original).pow(2).sum(-1).mean(-1)

    def downstream_loss(self, output, targets):
        return (output - targets).pow(2).sum(-1).mean(-1)


def _inputs(n=6):
    return torch.randn(n, 4, generator=torch.Generator().manual_seed(1))


def test_a_host_must_implement_every_abstract_method():
    methods = ("site_width", "forward_cache", "divergence", "downstream_loss")
    no_splice = type("NoSplice", (HostModel,), {name: Chain.__dict__[name] for name in methods})
    with pytest.raises(TypeError, match="abstract method.*forward_from"):
        no_splice()
    assert isinstance(type("Full", (no_splice,), {"forward_from": Chain.forward_from})(),
                      HostModel)
    with pytest.raises(TypeError, match="abstract"):
        HostModel()


def test_a_new_host_is_untrained_until_frozen():
    host = Chain()
    assert not host.trained and host.training
    assert all(p.requires_grad for p in host.parameters())
    with pytest.raises(ValueError, match=r"^host is not trained: call Chain\.fit\(\) first"):
        host.check_trained()
    with pytest.raises(ValueError, match="^teacher is not trained"):
        host.check_trained("teacher")
    assert host.freeze_() is host
    assert host.trained and not host.training
    assert not any(p.requires_grad for p in host.parameters())
    host.check_trained()
    assert bool(host.state_dict()["_trained"])  # a saved host carries the flag


def test_sites_are_checked_and_ordered():
    host = Chain()
    assert host.check_site("mid") == "mid"
    assert host.later_sites("hidden") == ("mid",) and host.later_sites("mid") == ()
    with pytest.raises(ValueError, match=r"^site must be one of \['hidden', 'mid'\], got 'x'"):
        host.check_site("x")
    with pytest.raises(TypeError, match="^layer must be a str, got int"):
        host.check_site(3, "layer")
    with pytest.raises(ValueError, match="site must be one of"):
        host.later_sites("output")
    x = _inputs()
    assert torch.equal(host(x), host.forward_cache(x)["output"])


def test_run_spliced_puts_the_reconstruction_in_place_of_the_site():
    host = Chain().freeze_()
    sae = ReLUSAE(3, 5, seed=0)
    x = _inputs()
    run = host.run_spliced(x, "hidden", sae)
    cache = host.forward_cache(x)
    assert set(run) == {"hidden", "mid", "output", "patched/mid", "patched/output"}
    for key, value in cache.items():
        assert torch.equal(run[key], value), key
    with torch.no_grad():
        want = host.forward_from("hidden", sae(cache["hidden"]).x_hat, cache)
    assert torch.equal(run["patched/output"], want["output"])
    assert not torch.equal(run["patched/output"], run["output"])  # the SAE is not exact
    assert not run["patched/output"].requires_grad
    late = host.run_spliced(x, "mid", sae)
    assert set(late) == {"hidden", "mid", "output", "patched/output"}


def test_run_spliced_refuses_an_untrained_host_a_wrong_width_and_a_wrong_site():
    x = _inputs()
    with pytest.raises(ValueError, match="host is not trained"):
        Chain().run_spliced(x, "hidden", ReLUSAE(3, 5))
    host = Chain().freeze_()
    with pytest.raises(ValueError, match="^sae has d=4 but site 'mid' has width 3"):
        host.run_spliced(x, "mid", ReLUSAE(4, 5))
    with pytest.raises(ValueError, match="^sae has d=None"):
        host.run_spliced(x, "mid", object())
    with pytest.raises(ValueError, match="site must be one of"):
        host.run_spliced(x, "output", ReLUSAE(3, 5))


def test_run_spliced_refuses_a_wrong_width_at_a_fitted_host(host):
    with pytest.raises(ValueError, match="sae has d=7"):
        host.run_spliced(torch.zeros(3, 32), "resid_pre", TiedSAE(7, 4))


def test_save_writes_the_weights_class_and_config(tmp_path):
    host = Chain(ChainConfig(d=4, hidden=3)).freeze_()
    path = host.save(tmp_path / "chain.safetensors")
    meta, tensors = read_safetensors(path, "host file")
    assert meta["format"] == "toysae-host" and meta["class"] == "Chain"
    assert json.loads(meta["config"]) == {"d": 4, "hidden": 3} == host.config_dict()
    assert set(tensors) == {"W1", "W2", "_trained"}
    assert torch.equal(tensors["W1"], host.W1.detach()) and bool(tensors["_trained"])
    assert not list(tmp_path.glob(".*"))  # written atomically: no temporary left


def test_host_batch_and_host_fit():
    batch = HostBatch(torch.zeros(2, 4), torch.ones(2, 3), torch.zeros(2))
    assert batch._fields == ("inputs", "codes", "targets") and batch.codes.shape == (2, 3)
    fit = HostFit(success=False, message="missed the bar", n_iter=7, metrics={"r2": 0.5})
    assert fit.to_dict() == {"success": False, "message": "missed the bar", "n_iter": 7,
                             "metrics": {"r2": 0.5}}
    assert repr(fit).splitlines()[:2] == ["HostFit", "success: False"]
