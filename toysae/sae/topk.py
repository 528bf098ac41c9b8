"""TopK SAE (Gao et al. 2024, "Scaling and evaluating sparse autoencoders").

``f = ReLU(TopK(pre))`` with ``pre = (x - b_dec) W_enc + b_enc``: the ``k``
largest pre-activations of each sample are kept, everything else is 0, so
sparsity is set by ``k`` and no penalty is needed. Dead latents are revived by
AuxK: the ``aux_k`` largest dead pre-activations try to reconstruct the
residual (its loss is normalised by the residual's variance). The forward pass
is :class:`toysae.sae._fused.FusedForward` (its sparse path at small ``k / width``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from toysae._validation import check_int
from toysae.sae._fused import FusedSAEMixin, Selection, fused_forward
from toysae.sae._sparse_kernels import row_topk
from toysae.sae.base import SAEOutput, SparseAutoencoder, register


def check_k(k, width: int, name: str = "k") -> int:
    k = check_int(k, name, minimum=1)
    if k > width:
        raise ValueError(f"{name} must be <= width ({width}), got {k}")
    return k


def aux_k_loss(sae: SparseAutoencoder, x: Tensor, out: SAEOutput, dead: Tensor,
               aux_k: int) -> Tensor:
    """Normalised MSE of the residual reconstructed by the top ``aux_k`` dead latents.

    Computed on the dead latents' columns alone (``n * n_dead * d`` multiply-adds, not
    ``n * width * d``), so its gradient reaches only those pre-activations.
    """
    residual = (x - out.x_hat).detach()
    idx = dead.nonzero().squeeze(1)
    dead_pre = out.pre_acts.index_select(1, idx)
    values, pos = dead_pre.topk(min(aux_k, idx.numel()), dim=1)
    acts = torch.zeros_like(dead_pre).scatter_(1, pos, torch.relu(values))
    residual_hat = acts @ sae.decoder_weight.index_select(0, idx)
    variance = (residual - residual.mean(0)).pow(2).sum().clamp_min(1e-12)
    return (residual_hat - residual).pow(2).sum() / variance


@register("topk")
class TopKSAE(FusedSAEMixin, SparseAutoencoder):
    """Exactly ``k`` latents selected per sample (fewer nonzero only where a selected
    pre-activation is <= 0). ``aux_k`` defaults to ``min(width, max(1, d // 2))``."""

    penalty_kind = "none"
    dead_latent_loss = "auxk"
    default_dead_latent_coef = 1 / 32  # Gao et al. 2024's AuxK weight
    listing_order = 30
    saelens_architecture = "topk"
    saelens_training_architecture = "topk"

    def __init__(self, d: int, width: int, *, k: int = 8, aux_k: int | None = None,
                 seed: int = 0):
        super().__init__(d, width, seed=seed)
        self.k = check_k(k, self.width)
        self.aux_k = check_k(min(self.width, max(1, self.d // 2)) if aux_k is None else aux_k,
                             self.width, "aux_k")
        self._init_untied_()
        self._init_buffers()

    def config(self) -> dict:
        return {**super().config(), "k": self.k, "aux_k": self.aux_k}

    def encode_pre(self, x: Tensor) -> Tensor:
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc)

    def activate(self, pre_acts: Tensor) -> Tensor:
        values, idx = row_topk(pre_acts, self.k)
        return torch.zeros_like(pre_acts).scatter_(1, idx, torch.relu(values))

    def forward(self, x) -> SAEOutput:
        x = self.check_input(x)
        out = fused_forward(x, self.W_enc, self.b_enc, self.W_dec, self.b_dec,
                            Selection("topk", self.k), spare=self._backward_buffers)
        return SAEOutput(out.x_hat, out.codes, out.pre, fired=out.fired)

    def penalty(self, out: SAEOutput) -> Tensor:
        return out.codes.new_zeros(())

    def aux_k_loss(self, x: Tensor, out: SAEOutput, dead: Tensor) -> Tensor:
        return aux_k_loss(self, x, out, dead, self.aux_k)

    def saelens_cfg(self) -> dict:
        # SAELens's TopK ranks raw pre-activations unless told to rescale; so does toysae's.
        return {"k": self.k, "rescale_acts_by_decoder_norm": False}

    @classmethod
    def config_from_saelens(cls, cfg: dict, details: dict, state: dict[str, Tensor]) -> dict:
        return {"k": cfg["k"]}

    @classmethod
    def check_saelens_record(cls, config: dict, cfg: dict, state: dict[str, Tensor]) -> None:
        if config.get("k") != cfg["k"]:
            raise ValueError(f"metadata.toysae.config has k={config.get('k')!r} but the "
                             f"SAELens k is {cfg['k']}")
