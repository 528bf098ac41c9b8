"""Target-L0 training: an integral controller that steers each member's sparsity
coefficient so that its codes end with ``config.target_l0`` active latents per sample.

A penalty (L1 or L0) sets sparsity only indirectly: the coefficient that gives a
wanted L0 depends on the data, the width and the architecture, and a coefficient
calibrated by short trial runs lands far off in a long one. Instead the engine
measures each member's L0 on every training batch and moves the coefficient,
on a log scale, against the relative error of a smoothed L0::

    s_t     = a s_{t-1} + (1 - a) L0_t             (a = SMOOTHING)
    v_t     = a v_{t-1} + (1 - a) (s_t - s_{t-1})  (the L0's trend)
    e_t     = clip((s_t - target) / target, -1, 1)
    g_t     = gain * (damping if e_t v_t < 0 else 1)
    log c_t = clip(log c_{t-1} + g_t e_t, log coef_min, log coef_max)

The step is on ``log c`` so that one gain serves coefficients from 1e-4 to 10
(L1 lams, L0 weights); the error is relative and clipped so that it serves
targets from 1 to thousands of latents, and a wild batch cannot throw the
coefficient across its range. The gain drops to ``damping`` times itself while
the L0 is already moving towards the target (SynthSAEBench's controller does
the same; Chanin & Garriga-Alonso 2026, arXiv 2602.14687): under Adam the
weights move at a rate set by the learning rate, not by the coefficient, so
the L0 answers a coefficient change late, and a plain integral controller
(damping 1) keeps pushing until the L0 overshoots: JumpReLU on the reference
toy swung between 3 and 6 around a target of 5 and ended 24% high after 1,200
steps, where the damped one ends within 2%. The gain is not scaled by the
learning rate's schedule: while the LR decays the encoder still drifts, and a
controller slowed with it ended 3-5% above the target.
``benchmarks/bench_l0_control.py`` measures the settling and the cost per step.

The controller holds while the sparsity warm-up ramps the coefficient in (the L0
of those steps says nothing about the full coefficient), and runs through
resampling, whose fresh latents fire little at their small encoder norm. Its
state is part of a training checkpoint, so a resumed run continues it
bit-identically. A target it does not reach is reported, never silent: when the
coefficient sat at a bound for the last ``PINNED_SHARE`` of the steps, or the
smoothed L0 ends more than ``MISS_TOLERANCE`` from the target, the member's
result has ``success=False`` and says which. The start matters for JumpReLU: a
coefficient far above the one the target needs lifts thresholds above every
pre-activation, where no gradient brings them back; start low and let the
controller raise it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["MISS_TOLERANCE", "PINNED_SHARE", "SMOOTHING", "UNIT_SCALE_START", "L0Controller",
           "start_coef"]

#: Weight of the past in the exponential averages of the L0 and of its change per step
#: (a window of about 10 steps): enough to see a trend through the batches' noise.
SMOOTHING = 0.9

#: A controlled member whose smoothed L0 ends further than this from the target (relative)
#: did not reach it: its result reports failure.
MISS_TOLERANCE = 0.05

#: A member whose coefficient sat at a bound for this share of the last steps did not
#: reach its target: its result reports failure.
PINNED_SHARE = 0.2


#: A start below what the toys' targets need, by what the penalty weighs, for data with
#: ``E ||x||^2 = 1`` (``benchmarks/bench_l0_control.py`` settles from it): low, since a
#: JumpReLU started too high loses its thresholds for good.
UNIT_SCALE_START = {"l1": 0.03, "l0": 0.001}


def start_coef(penalty_kind: str, data_scale: float = 1.0) -> float:
    """The controller's start (:data:`UNIT_SCALE_START`) for data whose
    ``sqrt(E ||x||^2)`` is ``data_scale``: an L1 weight scales with the data, an L0
    weight with its square (the reconstruction term scales with the square)."""
    if penalty_kind not in UNIT_SCALE_START:
        raise ValueError(f"penalty_kind must be one of {sorted(UNIT_SCALE_START)}, got "
                         f"{penalty_kind!r}")
    if not (isinstance(data_scale, (int, float)) and math.isfinite(data_scale)
            and data_scale > 0):
        raise ValueError(f"data_scale must be a positive number, got {data_scale!r}")
    return UNIT_SCALE_START[penalty_kind] * data_scale ** (1 if penalty_kind == "l1" else 2)


class L0Controller:
    """Per-member integral control of ``log(sparsity_coef)`` towards ``target`` L0.

    start_coefs : each member's coefficient before control (the config's, or a grid's).
    target : wanted mean active latents per sample. gain : step of ``log c`` per
    step at a relative error of 1. coef_min, coef_max : the coefficient's bounds.
    """

    def __init__(self, start_coefs: list[float], target: float, gain: float, damping: float,
                 coef_min: float, coef_max: float):
        self.target, self.gain, self.damping = float(target), float(gain), float(damping)
        self.coef_min, self.coef_max = float(coef_min), float(coef_max)
        # float64 so that a long run's many small steps accumulate without rounding drift
        self.log_coef = torch.tensor([math.log(c) for c in start_coefs], dtype=torch.float64)
        self.bound_run = torch.zeros(len(start_coefs), dtype=torch.int64)
        # the L0 the error is taken from, and its rate of change, once control has begun
        self.smoothed: Tensor | None = None
        self.trend: Tensor | None = None
        self._log_min, self._log_max = math.log(self.coef_min), math.log(self.coef_max)

    @property
    def coefs(self) -> list[float]:
        """Each member's current coefficient."""
        return self.log_coef.exp().tolist()

    def update(self, l0: Tensor) -> Tensor:
        """One step: the members' batch L0 ``(n_members,)`` in, their new coefficients
        ``(n_members,)`` (float64) out."""
        l0 = l0.detach().double().cpu()
        if self.smoothed is None:
            self.smoothed, self.trend = l0.clone(), torch.zeros_like(l0)
        before = self.smoothed.clone()
        self.smoothed.mul_(SMOOTHING).add_(l0, alpha=1 - SMOOTHING)
        self.trend.mul_(SMOOTHING).add_(self.smoothed - before, alpha=1 - SMOOTHING)
        error = ((self.smoothed - self.target) / self.target).clamp_(-1.0, 1.0)
        closing = error * self.trend < 0  # already moving towards the target
        gain = torch.where(closing, self.gain * self.damping, self.gain)
        self.log_coef.add_(gain * error).clamp_(self._log_min, self._log_max)
        at_bound = (self.log_coef <= self._log_min) | (self.log_coef >= self._log_max)
        self.bound_run.add_(1).masked_fill_(~at_bound, 0)
        return self.log_coef.exp()

    def pinned(self, n_steps: int) -> list[bool]:
        """Per member: whether its coefficient sat at a bound for the last
        ``PINNED_SHARE`` of ``n_steps`` (the target was out of reach)."""
        need = max(1, math.ceil(PINNED_SHARE * n_steps))
        return (self.bound_run >= need).tolist()

    def shortfall(self, k: int, n_steps: int) -> str | None:
        """Why member ``k`` did not reach the target after ``n_steps`` steps, or None."""
        if self.smoothed is None:
            return (f"target_l0={self.target:g} not reached: the run ended inside the sparsity "
                    "warm-up, before control began")
        if self.pinned(n_steps)[k]:
            return (f"target_l0={self.target:g} not reached: the sparsity coefficient sat at "
                    f"its bound {self.bound_of(k)} for the last {int(self.bound_run[k])} steps")
        miss = float(self.smoothed[k]) / self.target - 1
        if abs(miss) > MISS_TOLERANCE:
            return (f"target_l0={self.target:g} not reached: the training L0 ended at "
                    f"{float(self.smoothed[k]):.3g} ({miss:+.1%}, beyond "
                    f"{MISS_TOLERANCE:.0%}) with the coefficient at {self.coefs[k]:.3g}")
        return None

    def bound_of(self, k: int) -> str:
        """Which bound member ``k`` sits at, as ``'l0_coef_max=1000'``."""
        upper = float(self.log_coef[k]) >= self._log_max
        return f"l0_coef_max={self.coef_max:g}" if upper else f"l0_coef_min={self.coef_min:g}"

    def state_tensors(self) -> dict[str, Tensor]:
        """The state a checkpoint keeps (``smoothed`` and ``trend`` once control has begun)."""
        state = {"log_coef": self.log_coef.clone(), "bound_run": self.bound_run.clone()}
        if self.smoothed is not None:
            state.update(smoothed=self.smoothed.clone(), trend=self.trend.clone())
        return state

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        self.log_coef.copy_(tensors["log_coef"])
        self.bound_run.copy_(tensors["bound_run"])
        if "smoothed" in tensors:
            self.smoothed, self.trend = tensors["smoothed"].clone(), tensors["trend"].clone()
