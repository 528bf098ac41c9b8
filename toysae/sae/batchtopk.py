"""BatchTopK SAE (Bussmann et al. 2024).

In training, the ``k * batch_size`` largest ReLU'd pre-activations of the whole
batch are kept, so samples share a budget of ``k`` per sample on average. That
rule needs a batch, so inference uses a threshold instead: ``f = pre * [pre >
threshold]``, with ``threshold`` a running average (momentum ``momentum``) of
the smallest positive activation kept in each training batch. Before any
training step the threshold is 0, i.e. a plain ReLU. The forward pass is
:class:`toysae.sae._fused.FusedForward` (its sparse path at small ``k / width``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from toysae._validation import check_float
from toysae.sae._fused import FusedOutput, FusedSAEMixin, Selection, fused_forward
from toysae.sae._sparse_kernels import batch_topk
from toysae.sae.base import SAEOutput, SparseAutoencoder, register
from toysae.sae.topk import aux_k_loss, check_k


@register("batchtopk")
class BatchTopKSAE(FusedSAEMixin, SparseAutoencoder):
    """``k`` active latents per sample on average over a training batch; thresholded at eval."""

    penalty_kind = "none"
    dead_latent_loss = "auxk"
    default_dead_latent_coef = 1 / 32  # as TopK (Gao et al. 2024)
    listing_order = 40
    # SAELens has no inference BatchTopK: it saves one as the JumpReLU SAE its inference
    # rule is, every latent at the one threshold, and so does toysae.
    saelens_architecture = "jumprelu"
    saelens_training_architecture = "batchtopk"

    def __init__(self, d: int, width: int, *, k: int = 8, aux_k: int | None = None,
                 momentum: float = 0.01, seed: int = 0):
        super().__init__(d, width, seed=seed)
        self.k = check_k(k, self.width)
        self.aux_k = check_k(min(self.width, max(1, self.d // 2)) if aux_k is None else aux_k,
                             self.width, "aux_k")
        self.momentum = check_float(momentum, "momentum", minimum=0.0, maximum=1.0,
                                    min_inclusive=False)
        self._init_untied_()
        self._init_buffers()
        self.register_buffer("threshold", torch.zeros(()))
        self.register_buffer("threshold_updates", torch.zeros((), dtype=torch.int64))

    def config(self) -> dict:
        return {**super().config(), "k": self.k, "aux_k": self.aux_k, "momentum": self.momentum}

    def encode_pre(self, x: Tensor) -> Tensor:
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc)

    def activate(self, pre_acts: Tensor) -> Tensor:
        if not self.training:
            return pre_acts * (pre_acts > self.threshold.clamp_min(0.0))
        flat = batch_topk(pre_acts, self.k * pre_acts.shape[0])
        kept = pre_acts.reshape(-1).index_select(0, flat)
        if kept.numel():
            self._update_threshold(kept.detach().min())
        return (torch.zeros_like(pre_acts).reshape(-1).index_put((flat,), kept)
                .view_as(pre_acts))

    def selection(self) -> Selection:
        """What the forward pass keeps: the batch's top ``k * n`` in training, the
        running threshold at inference."""
        if self.training:
            return Selection("batchtopk", self.k, block_ends=self.block_ends())
        return Selection("threshold", block_ends=self.block_ends())

    def block_ends(self) -> tuple[int, ...]:
        """Ends of the dictionary's nested blocks (none here; Matryoshka's prefixes)."""
        return ()

    def fused(self, x: Tensor) -> FusedOutput:
        """:func:`toysae.sae._fused.fused_forward` on a checked ``x``; the threshold updated."""
        out = fused_forward(x, self.W_enc, self.b_enc, self.W_dec, self.b_dec, self.selection(),
                            threshold=None if self.training else self.threshold,
                            spare=self._backward_buffers)
        if out.kept_min is not None and float(out.kept_min) > 0:
            self._update_threshold(out.kept_min)
        return out

    def forward(self, x) -> SAEOutput:
        out = self.fused(self.check_input(x))
        return SAEOutput(out.x_hat, out.codes, out.pre, fired=out.fired)

    @torch.no_grad()
    def _update_threshold(self, smallest: Tensor) -> None:
        """Move the threshold toward ``smallest``, the batch's smallest kept positive code."""
        # The first batch sets it; after that an exponential moving average.
        weight = 1.0 if int(self.threshold_updates) == 0 else self.momentum
        self.threshold.add_(weight * (smallest - self.threshold))
        self.threshold_updates.add_(1)

    def penalty(self, out: SAEOutput) -> Tensor:
        return out.codes.new_zeros(())

    def aux_k_loss(self, x: Tensor, out: SAEOutput, dead: Tensor) -> Tensor:
        return aux_k_loss(self, x, out, dead, self.aux_k)

    def saelens_details(self) -> dict:
        return {"k": self.k}

    def saelens_state(self) -> dict[str, Tensor]:
        # eval computes pre * [pre > max(threshold, 0)]; SAELens's JumpReLU computes
        # ReLU(pre) * [pre > threshold], the same for a threshold >= 0.
        threshold = float(self.threshold.clamp_min(0.0))
        return {**super().saelens_state(),
                "threshold": torch.full((self.width,), threshold, dtype=torch.float32)}

    @classmethod
    def config_from_saelens(cls, cfg: dict, details: dict,
                            state: dict[str, Tensor]) -> dict | str:
        threshold, k = state["threshold"], details.get("k")
        if not bool((threshold == threshold[0]).all()) or isinstance(k, bool) \
                or not isinstance(k, (int, float)) or not float(k).is_integer() \
                or not 1 <= k <= threshold.shape[0]:
            return (f"a SAELens {cls.saelens_training_architecture} SAE whose thresholds "
                    f"differ per latent or whose k is not an integer: read as the JumpReLU "
                    f"SAE it computes")
        config = {"k": int(k)}
        lr = details.get("topk_threshold_lr")
        if isinstance(lr, (int, float)) and not isinstance(lr, bool) and 0 < lr <= 1:
            config["momentum"] = float(lr)
        return config

    @classmethod
    def check_saelens_record(cls, config: dict, cfg: dict, state: dict[str, Tensor]) -> None:
        if not bool((state["threshold"] == state["threshold"][0]).all()):
            raise ValueError(f"metadata.toysae says {cls.architecture}, which has one "
                             f"threshold, but the thresholds differ per latent (decoder norms "
                             f"folded into them? then load with fold_decoder_norms=False)")

    def state_from_saelens(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        threshold = state["threshold"][0]
        # Only whether the running threshold was ever set matters (the first batch sets it).
        updates = torch.tensor(int(bool(threshold > 0)), dtype=torch.int64)
        return {**super().state_from_saelens(state), "threshold": threshold,
                "threshold_updates": updates}
