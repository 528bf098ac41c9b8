"""Per-step coefficient schedules of a training run: what the loop multiplies the
configured ``lr`` and ``sparsity_coef`` by at each step.

The engine (``toysae.sae.engine``) calls each once per step with the step's
0-based index and the planned number of steps, and uses
``config.lr * lr_schedule(...)`` as the step's learning rate and
``sparsity_coef_m * sparsity_schedule(...)`` as member ``m``'s sparsity
coefficient. A schedule is a pure function of the step, so a resumed run
continues it exactly; anything else that sets a coefficient step by step
belongs here beside them.
"""

from __future__ import annotations

__all__ = ["lr_schedule", "sparsity_schedule"]


def lr_schedule(step: int, n_steps: int, warmup: float, decay: float) -> float:
    """LR factor: linear warm-up over ``warmup`` of the steps, linear decay to 0 over ``decay``."""
    factor = 1.0
    warm = round(warmup * n_steps)
    if warm and step < warm:
        factor = (step + 1) / warm
    decay_steps = round(decay * n_steps)
    if decay_steps and step >= n_steps - decay_steps:
        factor = min(factor, (n_steps - step) / decay_steps)
    return factor


def sparsity_schedule(step: int, n_steps: int, warmup: float) -> float:
    """Sparsity-coefficient factor: linear warm-up from 0 over ``warmup`` of the steps."""
    warm = round(warmup * n_steps)
    return min(1.0, (step + 1) / warm) if warm else 1.0
