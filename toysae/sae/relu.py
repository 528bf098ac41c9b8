"""ReLU + L1 SAE, untied, in Anthropic's pre-bias form.

    f = ReLU((x - b_dec) @ W_enc + b_enc)        W_enc (d, width), b_enc (width,)
    x_hat = f @ W_dec + b_dec                     W_dec (width, d), b_dec (d,)

(Bricken et al. 2023, "Towards Monosemanticity"). Row ``i`` of ``W_dec`` is
latent ``i``'s atom. Besides the autograd path, :meth:`ReLUSAE.loss_and_grad_`
computes the loss and every gradient by hand with five matmuls and in-place
element-wise work; the trainer uses it because autograd's bookkeeping costs a
noticeable share of a CPU step at these sizes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from toysae.sae.base import SparseAutoencoder, parameter_grads, register


@register("relu")
class ReLUSAE(SparseAutoencoder):
    """Untied ReLU SAE with an L1 penalty; seeded tied initialisation (``W_enc = W_dec^T``)."""

    def __init__(self, d: int, width: int, *, seed: int = 0):
        super().__init__(d, width, seed=seed)
        self._init_untied_()

    def encode_pre(self, x: Tensor) -> Tensor:
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc)

    def activate(self, pre_acts: Tensor) -> Tensor:
        return torch.relu(pre_acts)

    @torch.no_grad()
    def loss_and_grad_(self, x: Tensor, coef: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Loss parts and hand-written gradients, written into each parameter's ``.grad``.

        Same loss as :meth:`loss` without a dead-latent term (``mean 1/2
        ||x - x_hat||^2 + coef * mean ||f||_1``). Returns tensors
        ``(total, reconstruction, sparsity, codes)`` without synchronising;
        ``codes`` is (n, width) and is overwritten by the next call's work only
        through fresh allocations, so callers may keep it. ``x`` must already
        be a checked (n, d) float32 tensor. With r = x_hat - x and n samples:

            dL/dW_dec = f^T r / n            dL/df = r W_dec^T / n + coef / n
            dL/dpre = dL/df * [pre > 0]      dL/dW_enc = (x - b_dec)^T dL/dpre
            dL/db_enc = sum_n dL/dpre        dL/db_dec = sum_n r / n - W_enc dL/db_enc
        """
        n = x.shape[0]
        xc = x - self.b_dec
        codes = torch.addmm(self.b_enc, xc, self.W_enc).clamp_min_(0.0)
        residual = torch.addmm(self.b_dec, codes, self.W_dec).sub_(x)
        recon = residual.pow(2).sum().mul_(0.5 / n)
        sparsity = codes.sum().mul_(coef / n)
        residual.div_(n)  # from here on: dL/dx_hat
        grads = parameter_grads(self)
        torch.mm(codes.T, residual, out=grads["W_dec"])
        # addmm's broadcast input folds the L1 gradient into the product (no extra pass).
        grad_codes = torch.addmm(residual.new_full((1,), coef / n).expand(self.width),
                                 residual, self.W_dec.T)
        # ReLU's own fused backward kernel: keep the gradient where codes > 0. It is
        # ~10x faster than building a bool mask and multiplying by it.
        grad_codes = torch.ops.aten.threshold_backward(grad_codes, codes, 0.0)
        torch.mm(xc.T, grad_codes, out=grads["W_enc"])
        torch.sum(grad_codes, dim=0, out=grads["b_enc"])
        torch.sum(residual, dim=0, out=grads["b_dec"])
        grads["b_dec"].sub_(self.W_enc @ grads["b_enc"])
        return recon + sparsity, recon, sparsity, codes
