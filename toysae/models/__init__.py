"""Host toy models with named sites, and the objectives that train SAEs inside them.

- :class:`ResidualToy`: one MLP block on a residual stream whose features are
  known (sites ``resid_pre``, ``mlp_post``, ``resid_post``), distilled from a
  teacher that reads only the *functional* features;
- :class:`TMSHost`: Elhage et al.'s toy model of superposition (site ``hidden``);
- :class:`SiteObjective`: ``local``, ``e2e`` or ``e2e_ds`` training of an SAE at a
  site, as an objective of the one training engine;
- :func:`load_host`: read a host written by ``host.save(path)``.
"""

from __future__ import annotations

import json
import os

from toysae._io import read_safetensors
from toysae.models.base import HostBatch, HostFit, HostModel
from toysae.models.residual import ResidualToy, ResidualToyConfig
from toysae.models.site_objective import MODES, SiteObjective
from toysae.models.tms import TMSConfig, TMSHost

HOSTS = {"ResidualToy": (ResidualToy, ResidualToyConfig), "TMSHost": (TMSHost, TMSConfig)}


def load_host(path: str | os.PathLike) -> HostModel:
    """A host saved by :meth:`HostModel.save`, frozen; ValueError for a foreign file."""
    meta, tensors = read_safetensors(path, "host file")
    if meta.get("format") != "toysae-host" or meta.get("class") not in HOSTS:
        raise ValueError(f"{path} is not a toysae host file (metadata {meta!r})")
    cls, config_cls = HOSTS[meta["class"]]
    host = cls(config_cls.from_dict(json.loads(meta["config"])))
    host.load_state_dict(tensors, strict=True)
    if not host.trained:
        raise ValueError(f"{path} holds an untrained host")
    return host.freeze_()


__all__ = ["HOSTS", "MODES", "HostBatch", "HostFit", "HostModel", "ResidualToy",
           "ResidualToyConfig", "SiteObjective", "TMSConfig", "TMSHost", "load_host"]
