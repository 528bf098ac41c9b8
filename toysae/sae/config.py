"""``TrainConfig``: the hyperparameters of the training engine, one frozen dataclass."""

from __future__ import annotations

import math
from dataclasses import dataclass

from toysae._config import JsonMixin
from toysae._validation import check_choice, check_float, check_int, check_seed

#: How resampling picks its pool inputs, and what of them becomes the atom.
RESAMPLE_INPUTS = ("loss_squared", "worst")
RESAMPLE_DIRECTIONS = ("input", "residual")
#: The resampling remedies for a dictionary as wide as the number of features
#: (``TrainConfig(**WIDTH_EQUAL_RESAMPLING)``): duplicates resampled with the dead, from the
#: worst inputs along their residuals, after 100 silent steps, until 90% of the run, with a
#: full-size encoder and at most 2% of the width a round (without that cap, moving a wide
#: dictionary's hundreds of spare latents at once wrecks it).
WIDTH_EQUAL_RESAMPLING = {"resample_duplicates": 0.9, "resample_inputs": "worst",
                          "resample_direction": "residual", "resample_after": 100,
                          "resample_until": 0.9, "resample_encoder_scale": 1.0,
                          "resample_max": 0.02}


@dataclass(frozen=True)
class TrainConfig(JsonMixin):
    """Hyperparameters of :func:`toysae.sae.train_sae` and every batched run.

    The defaults were tuned for the ReLU SAE at width 1024 on the uncorrelated
    reference toy with 1M samples (a grid over lr x sparsity_coef x batch size x
    resampling, 2-4 data seeds each; benchmarks/bench_sae_recovery.py
    measures the result). Batch 256 beats 1024 at a fixed sample budget
    because 4x the steps matter more than the less noisy gradient; lr above
    ~1e-2 at this batch starts to lose rare features or collapse. Resampling is
    Anthropic's by default; :data:`WIDTH_EQUAL_RESAMPLING` is the recipe that lets a
    dictionary as wide as the number of features find the rare ones without costing the
    wide one anything (``bench_sae_recovery.py --compare``; docs/findings.md, "What does a
    width-equal dictionary miss?").

    n_samples : training samples in total; steps = ceil(n_samples / batch_size).
    batch_size : samples per step.
    lr : peak Adam learning rate; ``beta1``, ``beta2``, ``eps`` are Adam's.
    lr_warmup, lr_decay : fractions of the steps spent warming the LR up
        linearly from 0, and decaying it linearly to 0 at the end.
    sparsity_coef : weight of the architecture's penalty (its ``penalty_kind``:
        L1 for relu/tied/gated, where it is the per-sample ``lam`` of the
        dictionary-learning objective; L0 for jumprelu; unused by topk/batchtopk).
    sparsity_warmup : fraction of the steps over which it ramps up linearly from 0.
    target_l0 : train to this L0 (mean active latents per sample) instead of at a
        fixed coefficient: from ``sparsity_coef`` as its start, an integral
        controller moves each member's coefficient on a log scale by
        ``l0_gain`` times the batch's relative L0 error per step, within
        ``[l0_coef_min, l0_coef_max]`` (``toysae.sae.l0_control``). None: no
        control. Only for architectures with a penalty; a topk-style SAE's L0 is its ``k``.
    l0_gain : the controller's step of ``log(sparsity_coef)`` per step at a relative
        L0 error of 1 (0 switches control off, keeping the start coefficient).
    l0_damping : the gain's factor while the L0 is already moving towards the
        target (1: a plain integral controller, which overshoots JumpReLU's slow
        threshold; ``benchmarks/bench_l0_control.py`` measures the settling).
    l0_coef_min, l0_coef_max : the bounds the controlled coefficient stays within.
    dead_window : a latent that has not fired for this many steps is dead
        (for the logged count, the dead-latent loss and resampling).
    resample_every : resample dead latents every this many steps (0: never),
        while ``step < resample_until * n_steps``.
    resample_pool : how many recent training inputs are scored for resampling.
    resample_encoder_scale : new encoder vectors get this times the mean alive
        encoder norm (Anthropic used 0.2).
    resample_inputs : which pool inputs the resampled latents start from:
        ``"loss_squared"`` (Anthropic: drawn with probability proportional to the square
        of their reconstruction loss) or ``"worst"`` (the highest-loss inputs, one each).
    resample_direction : what becomes a resampled latent's atom: ``"input"`` (Anthropic:
        the unit input) or ``"residual"`` (the unit residual ``x - x_hat``: the part of
        the input its reconstruction lacks).
    resample_after : resample a latent once it has not fired for this many steps (None:
        ``dead_window``, which also sets the logged dead count and the dead-latent losses).
    resample_max : resample at most this fraction of the width per round (None: every
        dead latent at once); the lowest-indexed wait first.
    resample_duplicates : also resample every live latent whose atom has cosine at or
        above this with a lower-indexed live atom (0: off). Two parallel atoms split one
        feature's code at the same L1 cost, so no gradient separates them; at a width
        equal to the number of features each such pair is a feature missed.
    dead_latent_coef : weight of the architecture's dead-latent loss (ghost
        grads for the L1 architectures, AuxK for topk/batchtopk); None takes
        the architecture's default (ghost grads off, AuxK 1/32); 0 turns it off.
    divergence_factor : training stops with ``TrainingDiverged`` when a
        member's loss at a logging step exceeds this many times its loss at
        the first step (a finite blow-up), as it does on NaN or Inf.
    log_every : steps between history rows (and divergence checks).
    seed : seeds the data order/stream and resampling.
    """

    n_samples: int = 1_000_000
    batch_size: int = 256
    lr: float = 7e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    lr_warmup: float = 0.02
    lr_decay: float = 0.3
    sparsity_coef: float = 0.04
    sparsity_warmup: float = 0.05
    target_l0: float | None = None
    l0_gain: float = 0.03
    l0_damping: float = 0.1
    l0_coef_min: float = 1e-6
    l0_coef_max: float = 1e3
    dead_window: int = 200
    resample_every: int = 250
    resample_until: float = 0.6
    resample_pool: int = 8192
    resample_encoder_scale: float = 0.2
    resample_inputs: str = "loss_squared"
    resample_direction: str = "input"
    resample_duplicates: float = 0.0
    resample_after: int | None = None
    resample_max: float | None = None
    dead_latent_coef: float | None = None
    divergence_factor: float = 1e4
    log_every: int = 50
    seed: int = 0

    def __post_init__(self):
        check_int(self.n_samples, "n_samples", minimum=1)
        check_int(self.batch_size, "batch_size", minimum=1)
        check_float(self.lr, "lr", minimum=0.0, min_inclusive=False)
        check_float(self.beta1, "beta1", minimum=0.0, maximum=1.0, max_inclusive=False)
        check_float(self.beta2, "beta2", minimum=0.0, maximum=1.0, max_inclusive=False)
        check_float(self.eps, "eps", minimum=0.0, min_inclusive=False)
        for name in ("lr_warmup", "lr_decay", "sparsity_warmup", "resample_until"):
            check_float(getattr(self, name), name, minimum=0.0, maximum=1.0)
        if self.lr_warmup + self.lr_decay > 1:
            raise ValueError(f"lr_warmup + lr_decay must be <= 1, got {self.lr_warmup} + "
                             f"{self.lr_decay}")
        check_float(self.sparsity_coef, "sparsity_coef", minimum=0.0)
        self._check_l0_control()
        check_int(self.dead_window, "dead_window", minimum=1)
        check_int(self.resample_every, "resample_every", minimum=0)
        check_int(self.resample_pool, "resample_pool", minimum=1)
        check_float(self.resample_encoder_scale, "resample_encoder_scale", minimum=0.0)
        check_choice(self.resample_inputs, "resample_inputs", RESAMPLE_INPUTS)
        check_choice(self.resample_direction, "resample_direction", RESAMPLE_DIRECTIONS)
        check_float(self.resample_duplicates, "resample_duplicates", minimum=0.0, maximum=1.0)
        if self.resample_after is not None:
            check_int(self.resample_after, "resample_after", minimum=1)
        if self.resample_max is not None:
            check_float(self.resample_max, "resample_max", minimum=0.0, maximum=1.0,
                        min_inclusive=False)
        if self.dead_latent_coef is not None:
            check_float(self.dead_latent_coef, "dead_latent_coef", minimum=0.0)
        check_float(self.divergence_factor, "divergence_factor", minimum=1.0,
                    min_inclusive=False)
        check_int(self.log_every, "log_every", minimum=1)
        check_seed(self.seed)

    def _check_l0_control(self) -> None:
        check_float(self.l0_gain, "l0_gain", minimum=0.0)
        check_float(self.l0_damping, "l0_damping", minimum=0.0, maximum=1.0)
        check_float(self.l0_coef_min, "l0_coef_min", minimum=0.0, min_inclusive=False)
        check_float(self.l0_coef_max, "l0_coef_max", minimum=0.0, min_inclusive=False)
        if self.l0_coef_min >= self.l0_coef_max:
            raise ValueError(f"l0_coef_min must be < l0_coef_max, got {self.l0_coef_min} >= "
                             f"{self.l0_coef_max}")
        if self.target_l0 is None:
            return
        check_float(self.target_l0, "target_l0", minimum=0.0, min_inclusive=False)
        if not self.l0_coef_min <= self.sparsity_coef <= self.l0_coef_max:
            raise ValueError(f"with target_l0, sparsity_coef is the controller's start and must "
                             f"lie in [l0_coef_min, l0_coef_max] = [{self.l0_coef_min:g}, "
                             f"{self.l0_coef_max:g}], got {self.sparsity_coef}")

    @property
    def n_steps(self) -> int:
        """Planned steps: ``ceil(n_samples / batch_size)``."""
        return math.ceil(self.n_samples / self.batch_size)

    def replace(self, **changes) -> TrainConfig:
        """A copy with ``changes`` applied (validated like a new config)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})
