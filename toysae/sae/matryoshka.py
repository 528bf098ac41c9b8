"""Matryoshka SAE (Bussmann et al. 2025, "Learning Multi-Level Features with Matryoshka
Sparse Autoencoders", arXiv 2503.17547), on a BatchTopK base.

The dictionary is read as nested prefixes ``m_1 < m_2 < ... < m_P = width``:
latents ``0 .. m_p - 1`` form prefix ``p``. The BatchTopK selection runs once,
over the whole dictionary; prefix ``p`` then reconstructs on its own, with the
codes of every latent beyond it set to zero::

    x_hat_p = f[:, :m_p] W_dec[:m_p] + b_dec        L_p = mean_n 1/2 ||x_n - x_hat_p,n||^2

and every prefix is trained to reconstruct: the loss is ``sum_p L_p``, each
prefix weighted equally (weight 1). The full prefix's ``L_P`` is the engine's
objective term (its ``reconstruction``, ``x_hat`` is the full reconstruction);
the shorter prefixes' ``L_1 + ... + L_{P-1}`` are the architecture's own
auxiliary term (``auxiliary_loss``, beside the inherited AuxK dead-latent
loss), so the SAE trains through the one engine unchanged. The published code
takes the MEAN over prefixes; the sum here is ``P`` times it, which keeps the
engine's reconstruction term at weight 1 (Adam is insensitive to the overall
scale). With one prefix (``prefix_sizes=[width]``) the SAE is a BatchTopK SAE.

The early latents must reconstruct with few atoms, so they learn the frequent,
general directions (a parent feature), and later latents add the specifics;
this is the remedy the paper proposes for feature absorption.

The forward pass (:class:`toysae.sae._fused.FusedForward`) computes every
prefix's reconstruction at the cost of one decode, block by block; on its
sparse path each block decodes from its own active entries, and the backward
sends each block the summed gradient of every prefix that contains it.
"""

from __future__ import annotations

import itertools
import numbers

import torch
from torch import Tensor

from toysae.sae.base import SAEOutput, reconstruction_loss, register
from toysae.sae.batchtopk import BatchTopKSAE


def check_prefix_sizes(prefix_sizes, width: int) -> list[int]:
    """Strictly increasing ints in ``[1, width]``; ``width`` is appended when the last is
    smaller (the full dictionary is always the last prefix). None: ``width // 8``,
    ``width // 4``, ``width // 2``, ``width`` (sizes below 1 and repeats dropped)."""
    if prefix_sizes is None:
        return sorted({max(1, width // 2 ** j) for j in (3, 2, 1, 0)})
    if isinstance(prefix_sizes, (str, bytes)) or not hasattr(prefix_sizes, "__iter__"):
        raise TypeError(f"prefix_sizes must be a sequence of ints, got "
                        f"{type(prefix_sizes).__name__}")
    sizes = list(prefix_sizes)
    if not sizes:
        raise ValueError("prefix_sizes is empty")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise TypeError(f"prefix_sizes must hold ints, got {s!r}")
    sizes = [int(s) for s in sizes]
    if sizes[0] < 1:
        raise ValueError(f"prefix_sizes must be >= 1, got {sizes}")
    if any(b <= a for a, b in itertools.pairwise(sizes)):
        raise ValueError(f"prefix_sizes must be strictly increasing, got {sizes}")
    if sizes[-1] > width:
        raise ValueError(f"prefix_sizes must be <= width ({width}), got {sizes}")
    if sizes[-1] < width:
        sizes.append(width)
    return sizes


@register("matryoshka")
class MatryoshkaSAE(BatchTopKSAE):
    """BatchTopK SAE whose nested prefixes ``prefix_sizes`` each reconstruct on their own.

    ``prefix_sizes`` as stored (``config()``) always ends with ``width``.
    """

    has_auxiliary_term = True  # the shorter prefixes' reconstruction losses
    listing_order = 70
    saelens_training_architecture = "matryoshka_batchtopk"

    def __init__(self, d: int, width: int, *, prefix_sizes=None, k: int = 8,
                 aux_k: int | None = None, momentum: float = 0.01, seed: int = 0):
        super().__init__(d, width, k=k, aux_k=aux_k, momentum=momentum, seed=seed)
        self.prefix_sizes = check_prefix_sizes(prefix_sizes, self.width)

    def config(self) -> dict:
        return {**super().config(), "prefix_sizes": list(self.prefix_sizes)}

    def saelens_details(self) -> dict:
        return {**super().saelens_details(), "matryoshka_widths": list(self.prefix_sizes)}

    @classmethod
    def config_from_saelens(cls, cfg: dict, details: dict,
                            state: dict[str, Tensor]) -> dict | str:
        config = super().config_from_saelens(cfg, details, state)
        if isinstance(config, str):
            return config
        try:
            config["prefix_sizes"] = check_prefix_sizes(details.get("matryoshka_widths"),
                                                        state["W_dec"].shape[0])
        except (TypeError, ValueError) as err:
            raise ValueError(f"metadata.training_architecture_details.matryoshka_widths is "
                             f"not a valid prefix list: {err}") from err
        return config

    def block_ends(self) -> tuple[int, ...]:
        return tuple(self.prefix_sizes)

    def forward(self, x) -> SAEOutput:
        out = self.fused(self.check_input(x))
        return SAEOutput(out.x_hat, out.codes, out.pre, tuple(out.prefixes), out.fired)

    def prefix_reconstructions(self, codes: Tensor) -> list[Tensor]:
        """One (n, d) reconstruction per prefix, ``codes[:, :m] @ W_dec[:m] + b_dec``
        (built block by block, so the cost is one full decode)."""
        out, partial, start = [], None, 0
        for m in self.prefix_sizes:
            block = codes[:, start:m] @ self.W_dec[start:m]
            partial = (block + self.b_dec) if partial is None else partial + block
            out.append(partial)
            start = m
        return out

    def prefix_losses(self, x: Tensor, codes: Tensor) -> Tensor:
        """(P,) the reconstruction loss ``mean_n 1/2 ||x_n - x_hat_p,n||^2`` of each prefix."""
        return torch.stack([reconstruction_loss(x, x_hat)
                            for x_hat in self.prefix_reconstructions(codes)])

    def auxiliary_loss(self, x: Tensor, out: SAEOutput, dead, dead_latent_coef: float) -> Tensor:
        shorter = out.prefix_x_hats
        if shorter is None:  # an output built elsewhere: decode the prefixes from its codes
            shorter = self.prefix_reconstructions(out.codes)[:-1]
        nested = x.new_zeros(())
        for x_hat in shorter:
            nested = nested + reconstruction_loss(x, x_hat)
        return nested + super().auxiliary_loss(x, out, dead, dead_latent_coef)
