"""Matching Pursuit SAE (Costa, Fel, Lubana, Tolooshams and Ba 2025, "From Flat to
Hierarchical: Extracting Sparse Representations with Matching Pursuit", arXiv 2506.03093;
SAELens's ``matching_pursuit`` architecture).

The encoder has no weights of its own: it is greedy matching pursuit over the decoder's
atoms (the rows ``w_i`` of ``W_dec``). From the residual ``r = x - b_dec``, each step

    i = argmax_j <r, w_j>,    v = max(<r, w_i>, 0),    f_i += v,    r -= v w_i

and ``x_hat = f W_dec + b_dec``. An atom may be chosen again (its coefficient grows), so
at most ``k`` latents fire; a step whose best score is <= 0 adds nothing, so the codes are
>= 0. The pursuit stops for a sample after ``k`` steps or, with ``residual_threshold >
0``, once ``||r|| < residual_threshold`` (checked after each step, so every sample takes at
least one), or, with ``stop_on_repeat``, after a step that leaves its support unchanged
(the chosen atom had already fired, or the step added nothing).

What SAELens 6.54.12 computes (sae_lens/saes/matching_pursuit_sae.py), which this follows
so that a directory converts exactly both ways: the selection is the argmax of the
rectified scores ``ReLU(r W_dec^T)``, outside autograd; the coefficient is recomputed from
the chosen row, so gradients pass through the coefficients and the residual updates to
``W_dec`` and ``b_dec`` (not through which atom won); the scores use the raw rows of
``W_dec`` (not normalised in the encoder; SAELens's training SAE starts them at unit norm
and refuses to fold decoder norms, since that changes the pursuit); ``b_dec`` is
subtracted from the input and added to the output only with ``apply_b_dec_to_input``; its
inference SAE holds ``W_dec`` and ``b_dec`` alone, with cfg.json fields
``residual_threshold`` (default 0.01; <= 0 turns the test off), ``max_iterations``
(default None: ``d_in``) and ``stop_on_duplicate_support`` (default true). toysae's ``k``,
``residual_threshold`` and ``stop_on_repeat`` are those three, with defaults for a plain
k-step pursuit (8 steps, as TopK's k; no other stop), which the experiments can match to
an L0. The engine keeps the rows at unit norm, so in training the scores are the
pursuit's true coefficients.

Dead latents: AuxK as for TopK (Gao et al. 2024), on what the pursuit left: the ``aux_k``
dead atoms most correlated with the final (detached) residual, with those correlations as
their activations, try to reconstruct it; the loss is normalised by the residual's
variance. It is the step the pursuit would take next if only dead atoms could win, and
its gradient reaches only their rows. SAELens's training SAE has no dead-latent loss; this
one is toysae's choice, weighted 1/32 by default as TopK's.

``encode_pre(x)`` gives the first step's scores ``(x - b_dec) W_dec^T``; the codes are not
a function of them alone (later steps read the residual), so ``activate`` refuses, and
``encode`` / ``forward`` run the pursuit from ``x``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from toysae._validation import check_float, check_int
from toysae.sae.base import SAEOutput, SparseAutoencoder, register
from toysae.sae.topk import aux_k_loss, check_k


def matching_pursuit(residual: Tensor, atoms: Tensor, k: int, *,
                     residual_threshold: float = 0.0,
                     stop_on_repeat: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Greedy matching pursuit of each row of ``residual`` over the rows of ``atoms``.

    residual : (n, d) the vectors to decompose (already centred).
    atoms : (width, d) the dictionary, used as it is (unit rows make the scores the
        coefficients of textbook matching pursuit).
    k : the most steps a sample takes; ``residual_threshold`` and ``stop_on_repeat``
        stop a sample earlier (see the module docstring).
    Returns ``(codes (n, width) >= 0, final residual (n, d), first-step scores (n,
    width))``; codes and residual carry gradients to ``residual`` and ``atoms``, the
    scores none. The batch is vectorised; the loop is over steps, and ends once every
    sample has stopped (a sample whose step added nothing would add nothing again).
    """
    n, width = residual.shape[0], atoms.shape[0]
    rows = torch.arange(n, device=residual.device)
    running = torch.ones(n, dtype=torch.bool, device=residual.device)
    support = (torch.zeros(n, width, dtype=torch.bool, device=residual.device)
               if stop_on_repeat else None)
    chosen, values, first_scores = [], [], None
    for _ in range(k):
        with torch.no_grad():
            # Which atom wins needs no gradient: only the (n, d) rows chosen are kept for
            # backward, never the (n, width) scores.
            scores = residual.detach() @ atoms.detach().T
            best = scores.argmax(dim=1)
            if first_scores is None:
                first_scores = scores
        atom = atoms.index_select(0, best)
        value = torch.relu(torch.linalg.vecdot(residual, atom)) * running
        residual = residual - value[:, None] * atom
        chosen.append(best)
        values.append(value)
        with torch.no_grad():
            stopped = value == 0
            if support is not None:
                stopped |= support[rows, best]
                support[rows, best] = True
            if residual_threshold > 0:
                stopped |= torch.linalg.vector_norm(residual, dim=1) < residual_threshold
            running = running & ~stopped  # not in place: autograd keeps the old mask
            if not bool(running.any()):
                break
    codes = residual.new_zeros(n, width).scatter_add(
        1, torch.stack(chosen, dim=1), torch.stack(values, dim=1))
    return codes, residual, first_scores


@register("matching_pursuit")
class MatchingPursuitSAE(SparseAutoencoder):
    """Matching pursuit over the decoder's atoms as the encoder: at most ``k`` latents per
    sample, each chosen greedily against what the earlier ones left.

    k : the most pursuit steps per sample (>= 1; it may exceed the width, since an atom
        can be chosen again).
    residual_threshold : stop a sample once its residual norm is below this, in the
        units of the data (0, the default: off).
    stop_on_repeat : stop a sample after a step that leaves its support unchanged
        (SAELens's ``stop_on_duplicate_support``).
    aux_k : dead atoms in the AuxK loss (default ``min(width, max(1, d // 2))``).
    """

    penalty_kind = "none"
    dead_latent_loss = "auxk"
    default_dead_latent_coef = 1 / 32  # TopK's AuxK weight (Gao et al. 2024)
    listing_order = 80
    saelens_architecture = "matching_pursuit"
    saelens_training_architecture = "matching_pursuit"

    def __init__(self, d: int, width: int, *, k: int = 8, residual_threshold: float = 0.0,
                 stop_on_repeat: bool = False, aux_k: int | None = None, seed: int = 0):
        super().__init__(d, width, seed=seed)
        self.k = check_int(k, "k", minimum=1)
        self.residual_threshold = check_float(residual_threshold, "residual_threshold",
                                              minimum=0.0)
        if not isinstance(stop_on_repeat, bool):
            raise TypeError(f"stop_on_repeat must be a bool, got {stop_on_repeat!r}")
        self.stop_on_repeat = stop_on_repeat
        self.aux_k = check_k(min(self.width, max(1, self.d // 2)) if aux_k is None else aux_k,
                             self.width, "aux_k")
        # Decoder rows uniform on the unit sphere (seeded), as every architecture starts.
        self.W_dec = nn.Parameter(self._random_atoms(self._generator()))
        self.b_dec = nn.Parameter(torch.zeros(self.d))

    def config(self) -> dict:
        return {**super().config(), "k": self.k, "residual_threshold": self.residual_threshold,
                "stop_on_repeat": self.stop_on_repeat, "aux_k": self.aux_k}

    # -- the encoder ------------------------------------------------------
    def pursue(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:func:`matching_pursuit` of a checked ``x`` (n, d) less ``b_dec`` over the decoder
        rows, with this SAE's stopping rules: (codes, final residual, first-step scores)."""
        return matching_pursuit(x - self.b_dec, self.W_dec, self.k,
                                residual_threshold=self.residual_threshold,
                                stop_on_repeat=self.stop_on_repeat)

    def encode_pre(self, x: Tensor) -> Tensor:
        """(n, d) -> (n, width): the first pursuit step's scores ``(x - b_dec) W_dec^T``."""
        return (x - self.b_dec) @ self.W_dec.T

    def activate(self, pre_acts: Tensor) -> Tensor:
        raise NotImplementedError(
            "the matching-pursuit SAE's codes are not a function of its first-step scores "
            "(each later step reads the residual the earlier ones left); use encode(x) or "
            "forward(x)")

    def encode(self, x) -> Tensor:
        return self.pursue(self.check_input(x))[0]

    def forward(self, x) -> SAEOutput:
        x = self.check_input(x)
        codes, _, first_scores = self.pursue(x)
        return SAEOutput(self.decode(codes), codes, first_scores)

    def penalty(self, out: SAEOutput) -> Tensor:
        return out.codes.new_zeros(())

    def aux_k_loss(self, x: Tensor, out: SAEOutput, dead: Tensor) -> Tensor:
        # The dead atoms compete for the residual the pursuit left, as its next step would.
        residual = (x - out.x_hat).detach()
        return aux_k_loss(self, x, out._replace(pre_acts=residual @ self.W_dec.T), dead,
                          self.aux_k)

    # -- the layout: the decoder is the whole model ---------------------------
    def latent_parameters(self):
        return [(self.W_dec, 0)]

    def encoder_norms(self) -> Tensor:
        return self.W_dec.detach().norm(dim=1)

    @torch.no_grad()
    def reinit_latents_(self, idx: Tensor, directions: Tensor, encoder_norm: float) -> None:
        # The encoder IS the decoder row (scores against unit atoms), so encoder_norm
        # cannot apply.
        self.W_dec[idx] = directions

    # -- SAELens's format -------------------------------------------------------
    def saelens_cfg(self) -> dict:
        return {"max_iterations": self.k, "residual_threshold": self.residual_threshold,
                "stop_on_duplicate_support": self.stop_on_repeat}

    def saelens_state(self) -> dict[str, Tensor]:
        return {"W_dec": self.W_dec, "b_dec": self.b_dec}

    @classmethod
    def config_from_saelens(cls, cfg: dict, details: dict, state: dict[str, Tensor]) -> dict:
        # SAELens's max_iterations None means d_in steps; a threshold <= 0 is off.
        k = cfg["max_iterations"]
        return {"k": state["W_dec"].shape[1] if k is None else k,
                "residual_threshold": max(cfg["residual_threshold"], 0.0),
                "stop_on_repeat": cfg["stop_on_duplicate_support"]}

    @classmethod
    def check_saelens_record(cls, config: dict, cfg: dict, state: dict[str, Tensor]) -> None:
        for key, value in cls.config_from_saelens(cfg, {}, state).items():
            recorded = config.get(key, value)
            if recorded != value:
                raise ValueError(f"metadata.toysae.config has {key}={recorded!r} but the "
                                 f"SAELens fields give {value!r}")

    def state_from_saelens(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"W_dec": state["W_dec"], "b_dec": state["b_dec"]}
