"""Gated SAE (Rajamanoharan et al. 2024, "Improving Dictionary Learning with Gated SAEs").

One encoder matrix, two uses: the gate decides WHICH latents fire, the
magnitude path HOW MUCH, so the L1 penalty (on the gate only) no longer
shrinks the magnitudes::

    proj = (x - b_dec) W_gate
    pi_gate = proj + b_gate                  f = [pi_gate > 0] * ReLU(pi_mag)
    pi_mag = proj * exp(r_mag) + b_mag       x_hat = f W_dec + b_dec

The step [pi_gate > 0] passes no gradient, so the gate learns from the L1
term on ReLU(pi_gate) and from the auxiliary loss: reconstructing x from
ReLU(pi_gate) through a frozen (detached) copy of the decoder, weighted by
``aux_weight`` (1 in the paper).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from toysae._validation import check_float
from toysae.sae.base import SAEOutput, SparseAutoencoder, reconstruction_loss, register


@register("gated")
class GatedSAE(SparseAutoencoder):
    """Gated SAE with weight-shared gate and magnitude paths (``r_mag`` rescales per latent)."""

    has_auxiliary_term = True  # the gate's reconstruction through the frozen decoder
    listing_order = 60
    saelens_architecture = "gated"
    saelens_training_architecture = "gated"

    def __init__(self, d: int, width: int, *, aux_weight: float = 1.0, seed: int = 0):
        super().__init__(d, width, seed=seed)
        self.aux_weight = check_float(aux_weight, "aux_weight", minimum=0.0)
        atoms = self._random_atoms(self._generator())
        self.W_gate = nn.Parameter(atoms.T.contiguous())
        self.b_gate = nn.Parameter(torch.zeros(width))
        self.r_mag = nn.Parameter(torch.zeros(width))
        self.b_mag = nn.Parameter(torch.zeros(width))
        self.W_dec = nn.Parameter(atoms.clone())
        self.b_dec = nn.Parameter(torch.zeros(d))

    def config(self) -> dict:
        return {**super().config(), "aux_weight": self.aux_weight}

    def encode_pre(self, x: Tensor) -> Tensor:
        """The gate's pre-activation ``pi_gate``."""
        return torch.addmm(self.b_gate, x - self.b_dec, self.W_gate)

    def activate(self, pre_acts: Tensor) -> Tensor:
        # proj = pi_gate - b_gate, so the magnitude path needs nothing but pi_gate.
        magnitude = torch.relu((pre_acts - self.b_gate) * self.r_mag.exp() + self.b_mag)
        return (pre_acts > 0).to(magnitude.dtype) * magnitude

    def penalty(self, out: SAEOutput) -> Tensor:
        return torch.relu(out.pre_acts).sum() / out.pre_acts.shape[0]

    def auxiliary_loss(self, x: Tensor, out: SAEOutput, dead, dead_latent_coef: float) -> Tensor:
        gate_x_hat = torch.relu(out.pre_acts) @ self.W_dec.detach() + self.b_dec.detach()
        gate_aux = self.aux_weight * reconstruction_loss(x, gate_x_hat)
        return gate_aux + super().auxiliary_loss(x, out, dead, dead_latent_coef)

    def saelens_state(self) -> dict[str, Tensor]:
        # SAELens's gated SAE calls the shared gate / magnitude matrix W_enc.
        return {"W_dec": self.W_dec, "b_dec": self.b_dec, "W_enc": self.W_gate,
                "b_gate": self.b_gate, "b_mag": self.b_mag, "r_mag": self.r_mag}

    def state_from_saelens(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"W_dec": state["W_dec"], "b_dec": state["b_dec"], "W_gate": state["W_enc"],
                "b_gate": state["b_gate"], "b_mag": state["b_mag"], "r_mag": state["r_mag"]}

    def latent_parameters(self):
        return [(self.W_gate, 1), (self.b_gate, 0), (self.r_mag, 0), (self.b_mag, 0),
                (self.W_dec, 0)]

    def encoder_norms(self) -> Tensor:
        return self.W_gate.detach().norm(dim=0)

    @torch.no_grad()
    def reinit_latents_(self, idx: Tensor, directions: Tensor, encoder_norm: float) -> None:
        self.W_dec[idx] = directions
        self.W_gate[:, idx] = directions.T * encoder_norm
        for bias in (self.b_gate, self.r_mag, self.b_mag):
            bias[idx] = 0.0
