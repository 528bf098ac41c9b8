"""The residual toy: one MLP block on a residual stream whose features are known.

    resid_pre  = x                                  (the generator's x: features known)
    mlp_post   = ReLU(x W_in + b_in)                (positive-skewed, like an MLP layer)
    resid_post = x + mlp_post W_out
    logits     = resid_post U                       (C classes)

The host is trained by distillation from a *teacher* whose output distribution
depends, nonlinearly, only on a chosen subset of the true features (the
*functional* ones): ``teacher_logits = scale * ReLU(c_F A + a) V`` with ``c_F``
the functional features' coefficients. The other features (*nuisance*) carry
as much or more variance (by default the functional set is the rarer half of
the features) and do not move the teacher, so an SAE that only has to keep
the host's output need not spend latents on them, while one that reconstructs
``resid_pre`` must.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from toysae._config import JsonMixin
from toysae._validation import check_float, check_int, check_seed, shifted_seed
from toysae.data import SyntheticConfig, SyntheticData
from toysae.models.base import HostBatch, HostFit, HostModel


def _small_toy() -> SyntheticConfig:
    return SyntheticConfig(d=32, n_features=48, mean_active=4.0, decay=0.97,
                           correlation="none", seed=0)


@dataclass(frozen=True)
class ResidualToyConfig(JsonMixin):
    """The residual toy and its teacher.

    data : the generator whose ``x`` is ``resid_pre`` (d, features, firing).
    functional : indices of the features the teacher reads; None: the rarer
        half (indices ``n_features // 2`` and up), so the nuisance half fires
        more often and carries more variance.
    n_classes : classes of the output (C >= 2).
    teacher_hidden, teacher_scale : the teacher's hidden width and logit scale
        (a larger scale makes its distribution sharper).
    hidden : the host MLP's width (the width of ``mlp_post``).
    train_samples, batch_size, lr : the host's distillation run.
    seed : the teacher's weights, the host's init and its training stream.
    """

    data: SyntheticConfig = field(default_factory=_small_toy)
    functional: tuple[int, ...] | None = None
    n_classes: int = 16
    teacher_hidden: int = 32
    teacher_scale: float = 4.0
    hidden: int = 128
    train_samples: int = 800_000
    batch_size: int = 512
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.data, SyntheticConfig):
            raise TypeError(f"data must be a SyntheticConfig, got {type(self.data).__name__}")
        n = self.data.n_features
        if self.functional is not None:
            if isinstance(self.functional, (str, bytes)) or not hasattr(self.functional,
                                                                          "__len__"):
                raise TypeError(f"functional must be a sequence of feature indices, got "
                                f"{self.functional!r}")
            if len(self.functional) == 0:
                raise ValueError("functional must name at least one feature, got ()")
            for k, i in enumerate(self.functional):
                check_int(i, f"functional[{k}]", minimum=0, maximum=n - 1)
            if len(set(self.functional)) != len(self.functional):
                raise ValueError(f"functional must not repeat a feature, got {self.functional}")
            if len(self.functional) == n:
                raise ValueError("functional names every feature: no nuisance features left")
        check_int(self.n_classes, "n_classes", minimum=2)
        check_int(self.teacher_hidden, "teacher_hidden", minimum=1)
        check_float(self.teacher_scale, "teacher_scale", minimum=0.0, min_inclusive=False)
        check_int(self.hidden, "hidden", minimum=1)
        check_int(self.train_samples, "train_samples", minimum=1)
        check_int(self.batch_size, "batch_size", minimum=1)
        check_float(self.lr, "lr", minimum=0.0, min_inclusive=False)
        check_seed(self.seed)

    @property
    def functional_features(self) -> np.ndarray:
        n = self.data.n_features
        chosen = range(n // 2, n) if self.functional is None else self.functional
        return np.array(sorted(chosen), dtype=np.int64)

    @property
    def nuisance_features(self) -> np.ndarray:
        return np.setdiff1d(np.arange(self.data.n_features), self.functional_features)


class ResidualToy(HostModel):
    """The residual toy (module docstring); build with a config, then :meth:`fit`."""

    sites = ("resid_pre", "mlp_post", "resid_post")
    divergence_name = "kl"
    # fit() must explain this share of how the teacher's output varies (held-out samples):
    # 1 - KL(teacher || host) / KL(teacher || the teacher's mean distribution) >= it.
    MIN_EXPLAINED = 0.85

    def __init__(self, config: ResidualToyConfig | None = None):
        super().__init__()
        self.config = ResidualToyConfig() if config is None else config
        if not isinstance(self.config, ResidualToyConfig):
            raise TypeError(f"config must be a ResidualToyConfig, got "
                            f"{type(self.config).__name__}")
        cfg = self.config
        self.data = SyntheticData(cfg.data)
        self.input_dim = d = cfg.data.d
        gen = torch.Generator().manual_seed(cfg.seed)
        n_f, th, C = len(cfg.functional_features), cfg.teacher_hidden, cfg.n_classes
        # The teacher: fixed random weights, buffers (never trained). Unit-variance A and a
        # negative bias: one active feature moves a hidden unit by O(1) and the ReLU cuts
        # small inputs, so the output depends strongly and nonlinearly on each feature.
        self.register_buffer("teacher_A", torch.randn(n_f, th, generator=gen))
        self.register_buffer("teacher_a", -0.2 + 0.1 * torch.randn(th, generator=gen))
        self.register_buffer("teacher_V", torch.randn(th, C, generator=gen) / math.sqrt(th))
        self.register_buffer("functional", torch.from_numpy(cfg.functional_features))
        h = cfg.hidden
        self.W_in = nn.Parameter(torch.randn(d, h, generator=gen) / math.sqrt(d))
        self.b_in = nn.Parameter(torch.zeros(h))
        self.W_out = nn.Parameter(torch.randn(h, d, generator=gen) / math.sqrt(h) * 0.1)
        self.U = nn.Parameter(torch.randn(d, C, generator=gen) / math.sqrt(d))

    def site_width(self, site: str) -> int:
        return self.config.hidden if self.check_site(site) == "mlp_post" else self.input_dim

    # -- teacher and data ---------------------------------------------------------
    def teacher_logits(self, codes: Tensor) -> Tensor:
        """(n, n_features) true coefficients -> (n, C) teacher logits."""
        c_f = codes[:, self.functional]
        hidden = torch.relu(c_f @ self.teacher_A + self.teacher_a)
        return self.config.teacher_scale * (hidden @ self.teacher_V)

    def sample(self, n: int, seed: int) -> HostBatch:
        """``n`` samples: resid_pre inputs, true codes, labels drawn from the teacher."""
        batch = self.data.sample(n, seed=seed)
        codes = torch.from_numpy(batch.codes)
        gen = torch.Generator().manual_seed(int(seed) + 7919)
        probs = torch.softmax(self.teacher_logits(codes), dim=1)
        labels = torch.multinomial(probs, 1, generator=gen).squeeze(1)
        return HostBatch(torch.from_numpy(batch.x), codes, labels)

    # -- the model ---------------------------------------------------------------
    def forward_cache(self, inputs: Tensor) -> dict[str, Tensor]:
        mlp_post = torch.relu(inputs @ self.W_in + self.b_in)
        resid_post = inputs + mlp_post @ self.W_out
        return {"resid_pre": inputs, "mlp_post": mlp_post, "resid_post": resid_post,
                "output": resid_post @ self.U}

    def forward_from(self, site: str, act: Tensor, cache: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        if site == "resid_pre":
            out["mlp_post"] = torch.relu(act @ self.W_in + self.b_in)
            out["resid_post"] = act + out["mlp_post"] @ self.W_out
        elif site == "mlp_post":
            out["resid_post"] = cache["resid_pre"] + act @ self.W_out
        elif site == "resid_post":
            out["resid_post"] = act
        else:
            self.check_site(site)
        out["output"] = out["resid_post"] @ self.U
        if site == "resid_post":
            del out["resid_post"]
        return out

    def divergence(self, original: Tensor, patched: Tensor) -> Tensor:
        """``KL(p_original || p_patched)`` per leading index, mean over samples (nats)."""
        return kl_divergence(original, patched)

    def downstream_loss(self, output: Tensor, targets: Tensor) -> Tensor:
        """Cross-entropy of the logits against labels, per leading index (nats)."""
        logp = torch.log_softmax(output, dim=-1)
        index = targets.expand(*logp.shape[:-1]).unsqueeze(-1)
        return -logp.gather(-1, index).squeeze(-1).mean(dim=-1)

    # -- training -----------------------------------------------------------------
    def fit(self, *, progress: bool = False) -> HostFit:
        """Distil the teacher into the host (soft targets), then freeze it.

        Raises ``RuntimeError`` if, on 20,000 held-out samples, the host explains
        less than ``MIN_EXPLAINED`` of how the teacher's output varies:
        ``1 - KL(teacher || host) / KL(teacher || mean teacher)``, where the mean
        teacher is the teacher's average distribution (the best constant output).
        """
        cfg = self.config
        opt = torch.optim.Adam(self.parameters(), lr=cfg.lr)
        steps = math.ceil(cfg.train_samples / cfg.batch_size)
        per_chunk = max(1, 65536 // cfg.batch_size)
        step = 0
        for chunk in range(math.ceil(steps / per_chunk)):
            batch = self.data.sample(per_chunk * cfg.batch_size,
                                     seed=shifted_seed(cfg.seed, chunk, 1000))
            X, codes = torch.from_numpy(batch.x), torch.from_numpy(batch.codes)
            with torch.no_grad():
                target = torch.log_softmax(self.teacher_logits(codes), dim=1)
            for xb, tb in zip(X.split(cfg.batch_size), target.split(cfg.batch_size),
                              strict=True):
                if step == steps:
                    break
                lr_factor = min(1.0, 2.0 * (steps - step) / steps)  # linear decay, last half
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * lr_factor
                logits = self.forward_cache(xb)["output"]
                loss = nn.functional.kl_div(torch.log_softmax(logits, dim=1), tb,
                                            log_target=True, reduction="batchmean")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
        self.freeze_()
        held = self.sample(20_000, seed=10_000_019)
        with torch.no_grad():
            logits = self.forward_cache(held.inputs)["output"]
            teacher = self.teacher_logits(held.codes)
            log_t = torch.log_softmax(teacher, dim=1)
            log_mean = torch.logsumexp(log_t, dim=0) - math.log(len(log_t))
            spread = float((log_t.exp() * (log_t - log_mean)).sum(1).mean())
            kl = float(kl_divergence(teacher, logits))
            agreement = float((logits.argmax(1) == teacher.argmax(1)).float().mean())
            ce_host = float(self.downstream_loss(logits, held.targets))
            ce_teacher = float(self.downstream_loss(teacher, held.targets))
        explained = 1.0 - kl / spread
        message = (f"host vs teacher on 20000 held-out samples: explains {explained:.3f} of "
                   f"the teacher's variation (bar {self.MIN_EXPLAINED}; KL(teacher||host) "
                   f"{kl:.4f} nats vs {spread:.4f} for the best constant output), argmax "
                   f"agreement {agreement:.3f}; CE against teacher labels {ce_host:.4f} "
                   f"(teacher's own {ce_teacher:.4f})")
        if explained < self.MIN_EXPLAINED:
            raise RuntimeError(f"the residual toy did not learn its teacher: {message}")
        return HostFit(True, message, step, {"explained": explained, "kl": kl,
                                             "teacher_spread": spread, "agreement": agreement,
                                             "ce_host": ce_host, "ce_teacher": ce_teacher})


def kl_divergence(original_logits: Tensor, patched_logits: Tensor) -> Tensor:
    """``KL(softmax(original) || softmax(patched))``, mean over samples, per leading index.

    The direction of Braun et al. (2024): the original distribution weighs the
    log-ratio, as ``F.kl_div(log p_patched, log p_original, log_target=True,
    reduction="batchmean")`` computes it.
    """
    log_o = torch.log_softmax(original_logits, dim=-1)
    log_p = torch.log_softmax(patched_logits, dim=-1)
    return (log_o.exp() * (log_o - log_p)).sum(dim=-1).mean(dim=-1)
