"""Tied SAE (Cunningham et al. 2023): ``x_hat = M^T ReLU(M x + b)``.

One matrix ``M`` (width, d) is both encoder and decoder, so the weights cannot
come untied: a latent reads its input along exactly the atom it writes back.
There is no decoder bias, as in the paper; ``decoder_bias=True`` adds one in
Anthropic's pre-bias form (``f = ReLU((x - b_dec) M^T + b)``, ``x_hat = f M +
b_dec``), the single difference the recipe comparison needs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from toysae.sae.base import SparseAutoencoder, register


@register("tied")
class TiedSAE(SparseAutoencoder):
    """``f = ReLU(x M^T + b)``, ``x_hat = f M``; rows of ``M`` are the atoms."""

    listing_order = 20

    def __init__(self, d: int, width: int, *, decoder_bias: bool = False, seed: int = 0):
        super().__init__(d, width, seed=seed)
        if not isinstance(decoder_bias, bool):
            raise TypeError(f"decoder_bias must be a bool, got {decoder_bias!r}")
        self.decoder_bias = decoder_bias
        self.M = nn.Parameter(self._random_atoms(self._generator()))
        self.b = nn.Parameter(torch.zeros(width))
        if decoder_bias:
            self.b_dec = nn.Parameter(torch.zeros(d))

    def check_saelens_format(self) -> None:
        raise ValueError("sae: the tied SAE has no SAELens counterpart (SAELens has no "
                         "architecture whose encoder and decoder are one matrix); export an "
                         "untied architecture such as relu instead")

    def config(self) -> dict:
        return {**super().config(), **({"decoder_bias": True} if self.decoder_bias else {})}

    def encode_pre(self, x: Tensor) -> Tensor:
        return torch.addmm(self.b, x - self.b_dec if self.decoder_bias else x, self.M.T)

    def activate(self, pre_acts: Tensor) -> Tensor:
        return torch.relu(pre_acts)

    def decode(self, codes: Tensor) -> Tensor:
        return torch.addmm(self.b_dec, codes, self.M) if self.decoder_bias else codes @ self.M

    @property
    def decoder_weight(self) -> Tensor:
        return self.M

    def latent_parameters(self):
        return [(self.M, 0), (self.b, 0)]

    def encoder_norms(self) -> Tensor:
        return self.M.detach().norm(dim=1)

    @torch.no_grad()
    def reinit_latents_(self, idx: Tensor, directions: Tensor, encoder_norm: float) -> None:
        # The encoder IS the unit decoder row, so encoder_norm cannot apply.
        self.M[idx] = directions
        self.b[idx] = 0.0
