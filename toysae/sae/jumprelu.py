"""JumpReLU SAE (Rajamanoharan et al. 2024, "Jumping Ahead").

``f = pre * H(pre - theta)`` with a learned per-latent threshold
``theta = exp(log_threshold)``, and an L0 penalty ``sparsity_coef * sum_i H(pre_i - theta_i)``.
The step function has zero derivative almost everywhere, so the threshold
learns through straight-through pseudo-derivatives with a rectangle kernel
``K(u) = [|u| < 1/2]`` of width ``bandwidth``:

    d JumpReLU / d theta = -(theta / bandwidth) K((pre - theta) / bandwidth)
    d H / d theta        = -(1 / bandwidth)     K((pre - theta) / bandwidth)

(the L0 term sends no gradient to ``pre``). Pre-activations within
``bandwidth / 2`` of a threshold therefore push it: down where reconstruction
wants the latent on, up where the L0 penalty wants it off.

The forward pass is :class:`toysae.sae._fused.FusedForward` with these
pseudo-derivatives; its sparse path lists the entries above ``theta -
bandwidth / 2``, which holds both the active latents and the window.
:class:`_JumpReLU` is the same activation for ``activate`` (plain autograd).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from toysae._validation import check_float, listed_latents
from toysae.sae._fused import FusedSAEMixin, Selection, fused_forward
from toysae.sae.base import SAEOutput, SparseAutoencoder, register


def _window(pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
    return ((pre - threshold).abs() < bandwidth / 2).to(pre.dtype)


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, threshold, bandwidth):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx, grad):
        pre, threshold = ctx.saved_tensors
        grad_pre = grad * (pre > threshold)
        grad_threshold = -(threshold / ctx.bandwidth) * _window(pre, threshold, ctx.bandwidth)
        return grad_pre, (grad * grad_threshold).sum(0), None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, threshold, bandwidth):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad):
        pre, threshold = ctx.saved_tensors
        grad_threshold = -_window(pre, threshold, ctx.bandwidth) / ctx.bandwidth
        return None, (grad * grad_threshold).sum(0), None


@register("jumprelu")
class JumpReLUSAE(FusedSAEMixin, SparseAutoencoder):
    """Per-latent learned threshold; the sparsity coefficient weighs an L0 penalty.

    ``threshold_init`` and ``bandwidth`` are in the units of the data (the
    toys' active magnitudes are ~U[0, 1)); the defaults recover the tiny toys of
    the tests, where 0.05 / 0.05 left thresholds too low to sparsify in time.
    """

    penalty_kind = "l0"
    listing_order = 50
    saelens_architecture = "jumprelu"
    saelens_training_architecture = "jumprelu"
    saelens_penalty_details = {"jumprelu_sparsity_loss_mode": "step"}  # the step L0 penalty

    def __init__(self, d: int, width: int, *, threshold_init: float = 0.1,
                 bandwidth: float = 0.1, seed: int = 0):
        super().__init__(d, width, seed=seed)
        self.threshold_init = check_float(threshold_init, "threshold_init", minimum=0.0,
                                          min_inclusive=False)
        self.bandwidth = check_float(bandwidth, "bandwidth", minimum=0.0, min_inclusive=False)
        self._init_untied_()
        self._init_buffers()
        self.log_threshold = nn.Parameter(torch.full((width,), math.log(self.threshold_init)))

    def config(self) -> dict:
        return {**super().config(), "threshold_init": self.threshold_init,
                "bandwidth": self.bandwidth}

    @property
    def threshold(self) -> Tensor:
        """(width,) current thresholds ``exp(log_threshold)``."""
        return self.log_threshold.exp()

    def encode_pre(self, x: Tensor) -> Tensor:
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc)

    def activate(self, pre_acts: Tensor) -> Tensor:
        return _JumpReLU.apply(pre_acts, self.threshold, self.bandwidth)

    def forward(self, x) -> SAEOutput:
        x = self.check_input(x)
        out = fused_forward(x, self.W_enc, self.b_enc, self.W_dec, self.b_dec,
                            Selection("threshold", bandwidth=self.bandwidth),
                            threshold=self.threshold, spare=self._backward_buffers)
        return SAEOutput(out.x_hat, out.codes, out.pre, fired=out.fired)

    def penalty(self, out: SAEOutput) -> Tensor:
        """Mean L0 of the codes, differentiable in the thresholds."""
        steps = _Step.apply(out.pre_acts, self.threshold, self.bandwidth)
        return steps.sum() / steps.shape[0]

    def saelens_details(self) -> dict:
        return {"jumprelu_bandwidth": self.bandwidth,
                "jumprelu_init_threshold": self.threshold_init}

    def saelens_state(self) -> dict[str, Tensor]:
        # Exactly the float32 thresholds toysae's forward pass compares against.
        return {**super().saelens_state(), "threshold": self.threshold}

    @classmethod
    def config_from_saelens(cls, cfg: dict, details: dict, state: dict[str, Tensor]) -> dict:
        config = {}
        for key, arg in (("jumprelu_init_threshold", "threshold_init"),
                         ("jumprelu_bandwidth", "bandwidth")):
            value = details.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and math.isfinite(value) and value > 0:
                config[arg] = float(value)
        return config

    def state_from_saelens(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        threshold = state["threshold"]
        if not bool((threshold > 0).all()):
            raise ValueError(f"JumpReLU thresholds must be > 0 for toysae, which stores log "
                             f"thresholds; {listed_latents(threshold <= 0)} have threshold "
                             f"<= 0")
        return {**super().state_from_saelens(state), "log_threshold": threshold.log()}

    def latent_parameters(self):
        return [*super().latent_parameters(), (self.log_threshold, 0)]

    @torch.no_grad()
    def reinit_latents_(self, idx: Tensor, directions: Tensor, encoder_norm: float) -> None:
        super().reinit_latents_(idx, directions, encoder_norm)
        self.log_threshold[idx] = math.log(self.threshold_init)
