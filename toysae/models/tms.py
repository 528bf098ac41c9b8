"""The TMS host (Elhage et al. 2022, "Toy Models of Superposition").

    hidden = f W              W (n_features, hidden): row i is feature i's direction
    f_hat  = ReLU(hidden W^T + b)

trained to reconstruct sparse features ``f`` (each present with probability
``feature_probability``, magnitude U[0, 1)) under per-feature importance
``I_i = importance_decay**i``: loss ``mean_n sum_i I_i (f_i - f_hat_i)^2``.
With more features than hidden dimensions and sparse inputs, the trained
``W`` stores features in superposition. Site ``hidden``; its ground truth is
exact: feature ``i``'s direction there is row ``i`` of ``W`` (normalised).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from toysae._config import JsonMixin
from toysae._validation import check_float, check_int, check_seed, shifted_seed
from toysae.models.base import HostBatch, HostFit, HostModel


@dataclass(frozen=True)
class TMSConfig(JsonMixin):
    """n_features, hidden: the model's sizes (hidden < n_features for superposition).
    feature_probability : each feature's rate. importance_decay : ``I_i = decay**i``.
    train_samples, batch_size, lr, seed : the training run."""

    n_features: int = 20
    hidden: int = 5
    feature_probability: float = 0.05
    importance_decay: float = 0.9
    train_samples: int = 2_000_000
    batch_size: int = 1024
    lr: float = 1e-2
    seed: int = 0

    def __post_init__(self):
        check_int(self.n_features, "n_features", minimum=1)
        check_int(self.hidden, "hidden", minimum=1)
        check_float(self.feature_probability, "feature_probability", minimum=0.0,
                    maximum=1.0, min_inclusive=False)
        check_float(self.importance_decay, "importance_decay", minimum=0.0, maximum=1.0,
                    min_inclusive=False)
        check_int(self.train_samples, "train_samples", minimum=1)
        check_int(self.batch_size, "batch_size", minimum=1)
        check_float(self.lr, "lr", minimum=0.0, min_inclusive=False)
        check_seed(self.seed)


class TMSHost(HostModel):
    """The TMS model (module docstring); build with a config, then :meth:`fit`."""

    sites = ("hidden",)
    # divergence() is no KL: the outputs are feature reconstructions, not distributions
    divergence_name = "weighted_sq_distance"
    # fit() must reach this fraction of the zero model's loss on held-out samples, or less
    MAX_LOSS_RATIO = 0.8

    def __init__(self, config: TMSConfig | None = None):
        super().__init__()
        self.config = TMSConfig() if config is None else config
        if not isinstance(self.config, TMSConfig):
            raise TypeError(f"config must be a TMSConfig, got {type(self.config).__name__}")
        cfg = self.config
        self.input_dim = cfg.n_features
        gen = torch.Generator().manual_seed(cfg.seed)
        self.W = nn.Parameter(torch.randn(cfg.n_features, cfg.hidden, generator=gen)
                              * math.sqrt(2.0 / (cfg.n_features + cfg.hidden)))
        self.b = nn.Parameter(torch.zeros(cfg.n_features))
        self.register_buffer("importance", cfg.importance_decay ** torch.arange(
            cfg.n_features, dtype=torch.float32))

    def site_width(self, site: str) -> int:
        self.check_site(site)
        return self.config.hidden

    @property
    def features(self) -> Tensor:
        """(n_features, hidden) unit directions of the features at ``hidden``."""
        W = self.W.detach()
        return W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def sample(self, n: int, seed: int) -> HostBatch:
        """``n`` sparse feature vectors (inputs = codes = targets)."""
        n = check_int(n, "n", minimum=1)
        gen = torch.Generator().manual_seed(check_seed(seed))
        present = torch.rand(n, self.config.n_features, generator=gen) \
            < self.config.feature_probability
        f = torch.rand(n, self.config.n_features, generator=gen) * present
        return HostBatch(f, f, f)

    def forward_cache(self, inputs: Tensor) -> dict[str, Tensor]:
        hidden = inputs @ self.W
        return {"hidden": hidden, "output": torch.relu(hidden @ self.W.T + self.b)}

    def forward_from(self, site: str, act: Tensor, cache: dict[str, Tensor]) -> dict[str, Tensor]:
        self.check_site(site)
        return {"output": torch.relu(act @ self.W.T + self.b)}

    def divergence(self, original: Tensor, patched: Tensor) -> Tensor:
        """Importance-weighted squared distance of the outputs, per leading index."""
        return ((patched - original).square() * self.importance).sum(dim=-1).mean(dim=-1)

    def downstream_loss(self, output: Tensor, targets: Tensor) -> Tensor:
        """The model's own loss: importance-weighted reconstruction of its inputs."""
        return ((output - targets).square() * self.importance).sum(dim=-1).mean(dim=-1)

    def fit(self, *, progress: bool = False) -> HostFit:
        """Train on fresh sparse samples, then freeze. RuntimeError if the loss on 20,000
        held-out samples is not at most ``MAX_LOSS_RATIO`` x that of the all-zero output."""
        cfg = self.config
        opt = torch.optim.Adam(self.parameters(), lr=cfg.lr)
        steps = math.ceil(cfg.train_samples / cfg.batch_size)
        for step in range(steps):
            f = self.sample(cfg.batch_size, seed=shifted_seed(cfg.seed, step, 1_000_003)).inputs
            loss = self.downstream_loss(self.forward_cache(f)["output"], f)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        self.freeze_()
        held = self.sample(20_000, seed=10_000_019).inputs
        with torch.no_grad():
            loss = float(self.downstream_loss(self.forward_cache(held)["output"], held))
            zero = float(self.downstream_loss(torch.zeros_like(held), held))
        message = (f"TMS loss on 20000 held-out samples {loss:.5f}, {loss / zero:.3f} of the "
                   f"all-zero output's {zero:.5f} (bar {self.MAX_LOSS_RATIO})")
        if loss > self.MAX_LOSS_RATIO * zero:
            raise RuntimeError(f"the TMS host did not learn: {message}")
        return HostFit(True, message, steps, {"loss": loss, "zero_loss": zero})
