"""The base of every host toy model: named sites, caching, splicing, frozen weights.

A host is a small torch model that an SAE sits inside. Its forward pass goes
through named *sites* in order; ``forward_cache(inputs)`` returns every site's
activation and the output in one pass, and ``forward_from(site, act, cache)``
runs the rest of the model from a site on a replacement activation (an SAE's
reconstruction), so splicing is ``forward_from(site, sae(cache[site]).x_hat,
cache)``. Activations may carry leading axes (the engine's member axis): every
later site broadcasts them against the cached earlier ones.

A host is trained once (``fit``), then frozen: its parameters never require
grad, and every objective, metric and splice refuses an untrained host.
"""

from __future__ import annotations

import abc
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from toysae._io import save_module_tensors
from toysae._result import Result
from toysae._validation import check_choice


class HostBatch(NamedTuple):
    """Samples for a host: ``inputs`` (n, input_dim) float32; ``codes`` (n, n_features) the
    true feature coefficients; ``targets`` what ``downstream_loss`` compares against
    (labels drawn from the teacher, or the TMS host's own inputs)."""

    inputs: Tensor
    codes: Tensor
    targets: Tensor


@dataclass(repr=False)
class HostFit(Result):
    """How well a host learned its task. success: it reached the stated bar."""

    success: bool
    message: str
    n_iter: int
    metrics: dict


class HostModel(nn.Module, abc.ABC):
    """A frozen toy model with named sites.

    Subclasses set ``sites`` (in forward order), ``input_dim``,
    ``divergence_name`` (what :meth:`divergence` computes, the key it is logged and
    reported under: ``"kl"`` for the residual toy), implement :meth:`site_width`,
    :meth:`forward_cache`, :meth:`forward_from`, :meth:`divergence` (how far a
    patched output is from the original one, per leading index) and
    :meth:`downstream_loss` (the task loss of an output).
    """

    sites: tuple[str, ...] = ()
    input_dim: int
    divergence_name: str

    def __init__(self):
        super().__init__()
        self.register_buffer("_trained", torch.zeros((), dtype=torch.bool))

    # -- state ------------------------------------------------------------
    @property
    def trained(self) -> bool:
        return bool(self._trained)

    def freeze_(self) -> HostModel:
        """Mark trained, stop every gradient into the host, eval mode."""
        self._trained.fill_(True)
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def check_trained(self, name: str = "host") -> None:
        if not self.trained:
            raise ValueError(f"{name} is not trained: call {type(self).__name__}.fit() first "
                             "(an untrained host has no meaningful output to preserve)")

    def check_site(self, site: str, name: str = "site") -> str:
        if not isinstance(site, str):
            raise TypeError(f"{name} must be a str, got {type(site).__name__}")
        return check_choice(site, name, self.sites)

    def later_sites(self, site: str) -> tuple[str, ...]:
        """The sites after ``site``, in order."""
        return self.sites[self.sites.index(self.check_site(site)) + 1:]

    @abc.abstractmethod
    def site_width(self, site: str) -> int:
        """Width of the activation at ``site``."""

    # -- the model ----------------------------------------------------------
    @abc.abstractmethod
    def forward_cache(self, inputs: Tensor) -> dict[str, Tensor]:
        """Every site's activation and ``"output"`` for (n, input_dim) inputs."""

    @abc.abstractmethod
    def forward_from(self, site: str, act: Tensor, cache: dict[str, Tensor]) -> dict[str, Tensor]:
        """Every site after ``site`` and ``"output"``, run on ``act`` (..., n, width) at ``site``;
        ``cache`` holds the original activations of the earlier sites."""

    def forward(self, inputs: Tensor) -> Tensor:
        return self.forward_cache(inputs)["output"]

    def run_spliced(self, inputs: Tensor, site: str, sae) -> dict[str, Tensor]:
        """Run the host with ``sae``'s reconstruction in place of the activation at ``site``.

        Returns the original cache (``"output"`` and every site) under its own
        keys and the patched run under ``"patched/<name>"``.
        """
        self.check_trained()
        site = self.check_site(site)
        if getattr(sae, "d", None) != self.site_width(site):
            raise ValueError(f"sae has d={getattr(sae, 'd', None)} but site {site!r} has width "
                             f"{self.site_width(site)}")
        with torch.no_grad():
            cache = self.forward_cache(inputs)
            patched = self.forward_from(site, sae(cache[site]).x_hat, cache)
        return {**cache, **{f"patched/{k}": v for k, v in patched.items()}}

    @abc.abstractmethod
    def divergence(self, original: Tensor, patched: Tensor) -> Tensor:
        """How far ``patched`` outputs (..., n, out) are from ``original`` (n, out): one
        value per leading index, averaged over samples."""

    @abc.abstractmethod
    def downstream_loss(self, output: Tensor, targets: Tensor) -> Tensor:
        """The task loss of ``output`` (..., n, out) against ``targets``, per leading index."""

    # -- persistence ----------------------------------------------------------
    def config_dict(self) -> dict:
        """JSON-able constructor arguments (``type(self).from_config_dict`` rebuilds it)."""
        return self.config.to_dict()

    def save(self, path: str | os.PathLike) -> Path:
        """Weights and config in one safetensors file, written atomically."""
        meta = {"format": "toysae-host", "class": type(self).__name__,
                "config": json.dumps(self.config_dict(), sort_keys=True)}
        return save_module_tensors(self, path, meta)
