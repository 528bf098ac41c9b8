"""Dead-latent resampling: Anthropic's remedy for latents that stopped firing.

Every ``config.resample_every`` steps (until ``resample_until`` of the run) the
engine hands each member's dead latents (silent for ``dead_window`` steps) and
its pool of recent inputs to :func:`reinit_dead_latents_`, then zeroes Adam's
moments of the moved parameter slices (:func:`reset_optimizer_slots_`). Each
member draws with its own generator, seeded alike, so a member of a stack
resamples as it would alone. The forward pass over the pool runs in chunks of
``_tuning.RESAMPLE_FORWARD_ROWS`` rows (part of every seeded result).
:func:`resample_dead_latents_` is both steps for one SAE outside the engine.
"""

from __future__ import annotations

import torch
from torch import Tensor

from toysae import _tuning
from toysae._validation import check_choice
from toysae.sae.base import SparseAutoencoder
from toysae.sae.config import RESAMPLE_DIRECTIONS, RESAMPLE_INPUTS
from toysae.sae.stacks import SingleSAE

__all__ = ["duplicate_latents", "reinit_dead_latents_", "reset_optimizer_slots_",
           "resample_dead_latents_"]


@torch.no_grad()
def reinit_dead_latents_(sae: SparseAutoencoder, dead: Tensor, inputs: Tensor, *,
                         encoder_scale: float = 0.2,
                         generator: torch.Generator | None = None,
                         pick: str = "loss_squared", direction: str = "input") -> Tensor:
    """Anthropic's resampling ("Towards Monosemanticity", 2023) of ``sae``'s dead latents.

    dead : (width,) bool, the latents to move. inputs : (n, d), the pool of
    recent SAE inputs the new directions are drawn from.
    Each dead latent gets an input: with ``pick="loss_squared"`` (Anthropic's) drawn with
    probability proportional to the square of its reconstruction loss, with ``"worst"``
    the highest-loss inputs in order, one each. The unit input (``direction="input"``,
    Anthropic's) or its unit residual ``x - x_hat`` (``"residual"``) becomes the decoder
    row, the same vector scaled to ``encoder_scale`` x the mean alive encoder norm the
    encoder vector, the encoder bias 0. Returns the indices moved (the caller resets the
    optimizer state of those slices).

    On the reference toy at a width equal to its number of features, most inputs drawn by
    loss squared hold no missed feature, while the highest-loss ones nearly all do, and
    their residual points at the missed feature far more closely than the input
    (docs/findings.md, "What does a width-equal dictionary miss?").
    """
    check_choice(pick, "pick", RESAMPLE_INPUTS)
    check_choice(direction, "direction", RESAMPLE_DIRECTIONS)
    idx = dead.nonzero().squeeze(1)
    if idx.numel() == 0:
        return idx
    x_hat = torch.cat([sae(chunk).x_hat for chunk in inputs.split(_tuning.RESAMPLE_FORWARD_ROWS)])
    weights = (x_hat - inputs).pow(2).sum(1).pow(2)
    # An all-zero input (no feature active) has no direction: it would make a zero atom.
    has_direction = inputs.norm(dim=1) > _tuning.RESAMPLE_MIN_INPUT_NORM
    if not bool(has_direction.any()):
        return idx[:0]
    weights = torch.where(has_direction, weights, 0.0)
    if not bool(weights.sum() > 0):
        weights = has_direction.to(weights.dtype)
    if pick == "worst":
        order = torch.argsort(weights, descending=True, stable=True)
        chosen = order[:min(idx.numel(), int((weights > 0).sum()))]
        idx = idx[:chosen.numel()]  # with fewer usable inputs than latents, the rest wait
    else:
        replace = idx.numel() > int((weights > 0).sum())
        chosen = torch.multinomial(weights.cpu(), idx.numel(), replacement=replace,
                                   generator=generator).to(inputs.device)
    source = inputs - x_hat if direction == "residual" else inputs
    directions = source[chosen]
    directions = directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-12)
    norms = sae.encoder_norms()
    alive = ~dead
    scale = float(norms[alive].mean()) if bool(alive.any()) else 1.0
    sae.reinit_latents_(idx, directions, encoder_scale * scale)
    return idx


@torch.no_grad()
def reset_optimizer_slots_(optimizer: torch.optim.Optimizer, slots) -> None:
    """Zero Adam's moments on the given (parameter, index) slices, so stale statistics
    do not throw a re-initialised latent off at once."""
    for param, index in slots:
        state = optimizer.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][index] = 0.0


def resample_dead_latents_(sae: SparseAutoencoder, optimizer: torch.optim.Optimizer | None,
                           dead: Tensor, inputs: Tensor, *, encoder_scale: float = 0.2,
                           generator: torch.Generator | None = None) -> int:
    """:func:`reinit_dead_latents_` and, with an ``optimizer``, its Adam moments of the
    moved slices reset; returns how many latents moved."""
    idx = reinit_dead_latents_(sae, dead, inputs, encoder_scale=encoder_scale,
                               generator=generator)
    if optimizer is not None and idx.numel():
        reset_optimizer_slots_(optimizer, SingleSAE(sae).latent_slots(0, idx))
    return int(idx.numel())


@torch.no_grad()
def duplicate_latents(dictionary: Tensor, alive: Tensor, cos: float) -> Tensor:
    """(width,) bool: the live latents whose atom has cosine >= ``cos`` with a
    lower-indexed live atom (of each parallel group, all but the first).

    dictionary : (width, d) atoms (any norms). alive : (width,) bool."""
    D = dictionary / dictionary.norm(dim=1, keepdim=True).clamp_min(1e-12)
    G = torch.triu(D @ D.T, diagonal=1)
    G.masked_fill_(~(alive[:, None] & alive[None, :]), 0.0)
    return (G >= cos).any(0) & alive
