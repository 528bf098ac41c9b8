"""Member stacks: what the training engine steps (``toysae.sae.engine``).

A stack holds ``M >= 1`` SAEs on the same input width whose parameters step
together. :class:`SingleSAE` wraps one SAE of any architecture;
:class:`toysae.sae.ensemble.ReLUSAEEnsemble` stacks many ReLU SAEs into batched
tensors. The engine reads a stack only through :class:`MemberStack`: its
forward pass (outputs with a leading member axis), the members' penalties and
auxiliary terms, the parameter slices of given latents (for resampling), the
decoder-geometry steps, and each member as an SAE.
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor, nn

from toysae.sae.base import SAEOutput, SparseAutoencoder

__all__ = ["MemberStack", "SingleSAE"]


class MemberStack(abc.ABC):
    """M >= 1 SAEs on the same input width whose parameters step together.

    ``forward(x)`` returns ``(out, native)``: ``out`` with a leading member axis
    for the objective, ``native`` whatever the stack's own ``penalties`` and
    ``auxiliary`` read (for one SAE, its unstacked output, so no gradient is
    routed through a stacking view).
    """

    module: nn.Module
    n_members: int
    d: int
    widths: tuple[int, ...]
    max_width: int
    supports_dead_latent_loss: bool = True

    @abc.abstractmethod
    def forward(self, x: Tensor) -> tuple[SAEOutput, object]: ...

    @abc.abstractmethod
    def penalties(self, native) -> Tensor:
        """(M,) mean penalty of each member."""

    @abc.abstractmethod
    def auxiliary(self, x: Tensor, native, dead: Tensor | None, coef: float) -> Tensor | None:
        """(M,) auxiliary terms, or None when there are none; ``dead`` is (M, max_width)
        or None (remedy off)."""

    @abc.abstractmethod
    def member(self, m: int) -> SparseAutoencoder:
        """Member ``m`` as an SAE whose parameters alias the stack (valid while it trains)."""

    @abc.abstractmethod
    def trained_member(self, m: int) -> SparseAutoencoder:
        """The SAE a result hands out for member ``m`` once training ends."""

    @abc.abstractmethod
    def latent_slots(self, m: int, idx: Tensor) -> list[tuple[nn.Parameter, tuple]]:
        """(parameter, index) of every slice that belongs to latents ``idx`` of member ``m``."""

    @abc.abstractmethod
    def real_latents(self) -> Tensor | None:
        """(M, max_width) bool mask of real latents, or None when no member is padded."""

    @abc.abstractmethod
    def remove_parallel_grad_(self) -> None: ...

    def recycle_grads_(self) -> None:
        """Drop the gradients before a step (stacks may keep their memory for reuse)."""
        self.module.zero_grad(set_to_none=True)

    @abc.abstractmethod
    def normalize_decoder_(self) -> None: ...

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device


class SingleSAE(MemberStack):
    """One SAE of any architecture as a stack of one."""

    def __init__(self, sae: SparseAutoencoder):
        self.module = self.sae = sae
        self.n_members, self.d, self.widths, self.max_width = 1, sae.d, (sae.width,), sae.width

    def forward(self, x):
        out = self.sae(x)
        pre = None if out.pre_acts is None else out.pre_acts[None]
        fired = None if out.fired is None else out.fired[None]
        return SAEOutput(out.x_hat[None], out.codes[None], pre, fired=fired), out

    def penalties(self, native):
        return self.sae.penalty(native)[None]

    def auxiliary(self, x, native, dead, coef):
        if dead is None and not self.sae.has_auxiliary_term:
            return None
        return self.sae.auxiliary_loss(x, native, None if dead is None else dead[0], coef)[None]

    def member(self, m):
        return self.sae

    def trained_member(self, m):
        return self.sae

    def latent_slots(self, m, idx):
        return [(p, (slice(None),) * axis + (idx,)) for p, axis in self.sae.latent_parameters()]

    def real_latents(self):
        return None

    def remove_parallel_grad_(self):
        self.sae.remove_parallel_grad_()

    def recycle_grads_(self):
        self.sae.recycle_grads_()

    def normalize_decoder_(self):
        self.sae.normalize_decoder_()
