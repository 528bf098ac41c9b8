"""ReLU + L1 SAE, untied, in Anthropic's pre-bias form.

    f = ReLU((x - b_dec) @ W_enc + b_enc)        W_enc (d, width), b_enc (width,)
    x_hat = f @ W_dec + b_dec                     W_dec (width, d), b_dec (d,)

(Bricken et al. 2023, "Towards Monosemanticity"). Row ``i`` of ``W_dec`` is
latent ``i``'s atom. The forward pass is :class:`toysae.sae._fused.FusedForward`,
one ``torch.autograd.Function`` with a hand-written backward (in-place
element-wise work, ReLU's fused threshold kernel, weight gradients and the
(n, width) scratch written into recycled buffers) on a dense path (five
matmuls) or, when the codes are sparse, a sparse one (only the encoder's
product dense): it composes with any loss on ``x_hat`` and the codes, so every
objective of the training engine takes the fast path.
:meth:`ReLUSAE.reference_forward` is the same model in plain autograd ops,
kept as the reference the fast path is tested and benchmarked against.
"""

from __future__ import annotations

import torch
from torch import Tensor

from toysae.sae._fused import FusedSAEMixin, Selection, fused_forward
from toysae.sae.base import SAEOutput, SparseAutoencoder, register

RELU = Selection("relu")


@register("relu")
class ReLUSAE(FusedSAEMixin, SparseAutoencoder):
    """Untied ReLU SAE with an L1 penalty; seeded tied initialisation (``W_enc = W_dec^T``).

    decoder_bias : with True (default, Bricken et al.) ``b_dec`` is trained,
        subtracted before encoding and added after decoding; with False it is a
        fixed zero buffer (no pre-encoder bias, as in Cunningham et al.).
    Its forward output leaves ``pre_acts`` None (the fused forward clamps them in
    place); ghost grads compute the dead latents' pre-activations on their own.
    The backward pass reuses buffers kept with the module (``recycle_grads_``), so
    one SAE runs one backward pass at a time (autograd on the CPU does).
    """

    listing_order = 10
    saelens_architecture = "standard"
    saelens_training_architecture = "standard"
    saelens_penalty_details = {"lp_norm": 1.0}  # SAELens's standard SAE: an L1 penalty

    def __init__(self, d: int, width: int, *, decoder_bias: bool = True, seed: int = 0):
        super().__init__(d, width, seed=seed)
        if not isinstance(decoder_bias, bool):
            raise TypeError(f"decoder_bias must be a bool, got {decoder_bias!r}")
        self.decoder_bias = decoder_bias
        self._init_untied_()
        if not decoder_bias:
            del self.b_dec
            self.register_buffer("b_dec", torch.zeros(self.d))
        self._init_buffers()

    def config(self) -> dict:
        return {**super().config(), **({} if self.decoder_bias else {"decoder_bias": False})}

    def encode_pre(self, x: Tensor) -> Tensor:
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc)

    def activate(self, pre_acts: Tensor) -> Tensor:
        return torch.relu(pre_acts)

    def forward(self, x) -> SAEOutput:
        x = self.check_input(x)
        out = fused_forward(x, self.W_enc, self.b_enc, self.W_dec, self.b_dec, RELU,
                            spare=self._backward_buffers)
        return SAEOutput(out.x_hat, out.codes, None, fired=out.fired)

    def dead_pre_acts(self, x: Tensor, out: SAEOutput, dead: Tensor) -> Tensor:
        """(n, n_dead) pre-activations of the dead latents, from their columns alone."""
        idx = dead.nonzero().squeeze(1)
        return torch.addmm(self.b_enc.index_select(0, idx), x - self.b_dec,
                           self.W_enc.index_select(1, idx))

    @classmethod
    def check_saelens_record(cls, config: dict, cfg: dict, state: dict[str, Tensor]) -> None:
        if config.get("decoder_bias") is False and bool(state["b_dec"].any()):
            raise ValueError("metadata.toysae says a relu SAE without decoder bias, but b_dec "
                             "is not zero")

    def state_from_saelens(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        own = super().state_from_saelens(state)
        if not self.decoder_bias:
            own["b_dec"] = torch.zeros(self.d)
        return own

    def reference_forward(self, x) -> SAEOutput:
        """The same forward pass in plain autograd ops (the fast path's reference)."""
        return SparseAutoencoder.forward(self, x)
