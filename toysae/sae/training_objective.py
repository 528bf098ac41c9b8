"""What the training engine minimises besides the architecture's own terms.

An objective maps a batch and the SAEs' output to named loss parts, one value
per member. The engine adds the architecture's sparsity term
(``sparsity_coef * penalty``) and its auxiliary terms (dead-latent loss, the
gated SAE's gate loss), sums everything into the total, and logs every part.

The default, :class:`LocalReconstruction`, is ``mean_n 1/2 ||x_n - x_hat_n||^2``
on the SAE's own input: with the sparsity term it is the dictionary-learning
objective divided by the number of samples. Objectives that look past the SAE
(a KL divergence on a host model's output when the SAE is spliced into it)
subclass :class:`Objective` and keep the host inside the objective; the loop
does not change.
"""

from __future__ import annotations

import abc

from torch import Tensor

from toysae.sae.base import SAEOutput, reconstruction_loss


class Objective(abc.ABC):
    """``objective(batch, sae_input, output) -> {name: (M,) tensor}``.

    batch : what the data yields, (n, batch_width(d)) float32 on the SAEs' device.
    sae_input : :meth:`sae_input` of the batch, the SAEs' (n, d) input.
    output : the SAEs' forward output with a leading member axis
        (``x_hat`` (M, n, d), ``codes`` (M, n, width)).
    The part names must not be ``loss``, ``sparsity`` or ``auxiliary`` (the engine's).
    """

    def batch_width(self, d: int) -> int:
        """Columns of a data batch for SAEs of input width ``d`` (default: ``d``)."""
        return d

    def sae_input(self, batch: Tensor) -> Tensor:
        """The SAEs' (n, d) input for a data batch (default: the batch itself)."""
        return batch

    @abc.abstractmethod
    def __call__(self, batch: Tensor, sae_input: Tensor, output: SAEOutput) -> dict[str, Tensor]:
        """Named loss parts, each an (M,) tensor."""

    def describe(self) -> str:
        return type(self).__name__


class LocalReconstruction(Objective):
    """``reconstruction = mean_n 1/2 ||x_n - x_hat_n||^2`` at the SAE's input."""

    def __call__(self, batch: Tensor, sae_input: Tensor, output: SAEOutput) -> dict[str, Tensor]:
        return {"reconstruction": reconstruction_loss(sae_input, output.x_hat)}
