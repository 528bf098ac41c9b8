"""Training an SAE at a site of a frozen host: the engine's objectives ``local``, ``e2e``,
``e2e_ds`` (Braun et al. 2024, "Identifying Functionally Important Features with
End-to-End Sparse Dictionary Learning").

The data batches are host inputs; ``sae_input`` runs the frozen host to the
site. Per member, with ``a`` the site's activation and ``a_hat`` the SAE's
reconstruction spliced in:

- ``local``: ``reconstruction = mean_n 1/2 ||a - a_hat||^2`` at the site;
- ``e2e``: ``host.divergence(output, patched output)``, logged under
  ``host.divergence_name``: ``kl``, ``KL(p_original || p_patched)`` in nats, mean
  over samples, for the residual toy; ``weighted_sq_distance``, the
  importance-weighted squared distance of the outputs, for the TMS host;
- ``e2e_ds``: ``e2e`` plus ``downstream = sum over later sites of
  mean_n ||a_s - a_hat_s||^2 / width_s`` (the mean squared error per
  coordinate of each later site's patched activation; Braun et al. weigh
  these terms, and so can ``downstream_coef``).

The engine adds ``sparsity_coef * penalty``. Braun et al.'s code divides the
Lp penalty by the input width ``d``; toysae does not (one coefficient is one
trade-off at every width), so their coefficient ``c`` is toysae's ``c / d``.
The host never trains: its parameters do not require grad, and the gradient
reaches the SAE through the host's later layers.
"""

from __future__ import annotations

from torch import Tensor

from toysae._validation import check_choice, check_float
from toysae.models.base import HostModel
from toysae.sae.base import SAEOutput, reconstruction_loss
from toysae.sae.training_objective import Objective

MODES = ("local", "e2e", "e2e_ds")


class SiteObjective(Objective):
    """An objective for SAEs at ``site`` of ``host`` (``mode``: local, e2e or e2e_ds)."""

    def __init__(self, host: HostModel, site: str, mode: str = "local", *,
                 downstream_coef: float = 1.0):
        if not isinstance(host, HostModel):
            raise TypeError(f"host must be a toysae.models.HostModel, got {type(host).__name__}")
        host.check_trained()
        self.host, self.site = host, host.check_site(site)
        self.mode = check_choice(mode, "mode", MODES)
        self.downstream_coef = check_float(downstream_coef, "downstream_coef", minimum=0.0)
        self._batch: Tensor | None = None
        self._cache: dict[str, Tensor] = {}

    def describe(self) -> str:
        return f"{self.mode} at {self.site}"

    def batch_width(self, d: int) -> int:
        width = self.host.site_width(self.site)
        if d != width:
            raise ValueError(f"the SAE has d={d} but site {self.site!r} of the host has width "
                             f"{width}")
        return self.host.input_dim

    def cache(self, batch: Tensor) -> dict[str, Tensor]:
        """The host's activations on ``batch`` (computed once per batch)."""
        if batch is not self._batch:
            self._cache = {k: v.detach() for k, v in self.host.forward_cache(batch).items()}
            self._batch = batch
        return self._cache

    def sae_input(self, batch: Tensor) -> Tensor:
        return self.cache(batch)[self.site]

    def __call__(self, batch: Tensor, sae_input: Tensor, output: SAEOutput) -> dict[str, Tensor]:
        if self.mode == "local":
            return {"reconstruction": reconstruction_loss(sae_input, output.x_hat)}
        cache = self.cache(batch)
        patched = self.host.forward_from(self.site, output.x_hat, cache)
        parts = {self.host.divergence_name: self.host.divergence(cache["output"],
                                                                  patched["output"])}
        if self.mode == "e2e_ds":
            later = [s for s in self.host.later_sites(self.site)]
            if later:
                parts["downstream"] = self.downstream_coef * sum(
                    (patched[s] - cache[s]).square().mean(dim=(-2, -1)) for s in later)
        return parts
