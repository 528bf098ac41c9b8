"""The base class every SAE architecture derives from, and the architecture registry.

Conventions (docs/design.md): inputs ``x`` are ``(n, d)``, codes are ``(n, width)``,
the decoder's atoms are the ROWS of a ``(width, d)`` matrix, and
``sae.dictionary`` returns them as unit rows so that metrics and checkers treat
an SAE like any other dictionary.

Loss scaling, shared by every architecture, is the dictionary-learning
objective divided by the number of samples::

    loss = mean_n [ 1/2 ||x_n - x_hat_n||^2 ] + sparsity_coef * mean_n [ penalty(f_n) ]

Each architecture declares what its penalty is (``penalty_kind``: ``"l1"``,
``"l0"`` or ``"none"``), so ``sparsity_coef`` means one thing per
architecture; for the L1 architectures it is exactly the per-sample ``lam`` of
``toysae.dictionary_objective.dictionary_objective``, and the optimality checkers run at
that ``lam``. The penalty is NOT divided by the width (the seed's replication
code did, which makes one coefficient a weaker penalty for a wider dictionary).
Decoder rows are kept at unit norm by the engine, so ``sum_i f_i`` equals
Anthropic's ``sum_i f_i ||W_dec,i||``.

Dead latents: each architecture names its auxiliary loss for them
(``dead_latent_loss``: ghost grads or AuxK) and that loss's default weight
(``default_dead_latent_coef``; 0 means off unless a config turns it on).

Everything else toysae needs to know of an architecture lives on its class too:
its place in listings (``listing_order``) and its SAELens format (``saelens_*``),
so a new architecture is one module (docs/design.md, "Add an architecture").
"""

from __future__ import annotations

import abc
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from toysae import _tuning
from toysae._validation import check_float, check_int, check_seed

#: Every registered architecture by name, in listing order (``listing_order``, then the
#: order of registration): the order the experiments train and tabulate them in.
ARCHITECTURES: dict[str, type[SparseAutoencoder]] = {}
PENALTY_KINDS = ("l1", "l0", "none")
DEAD_LATENT_LOSSES = ("ghost", "auxk")


def register(name: str):
    """Class decorator: make an SAE class constructible by ``make_sae(name, ...)``.

    Checks the facts the class declares (``penalty_kind``, ``dead_latent_loss``, an
    ``aux_k_loss`` for AuxK) and keeps ``ARCHITECTURES`` in listing order.
    """
    def wrap(cls):
        if name in ARCHITECTURES and ARCHITECTURES[name] is not cls:
            raise RuntimeError(f"architecture {name!r} is registered twice")
        _check_declared(cls)
        cls.architecture = name
        ARCHITECTURES[name] = cls
        # sorted() is stable: architectures of equal listing_order keep registration order
        ordered = sorted(ARCHITECTURES.items(), key=lambda item: item[1].listing_order)
        ARCHITECTURES.clear()
        ARCHITECTURES.update(ordered)
        return cls
    return wrap


def _check_declared(cls) -> None:
    for attr, choices in (("penalty_kind", PENALTY_KINDS),
                          ("dead_latent_loss", DEAD_LATENT_LOSSES)):
        if getattr(cls, attr) not in choices:
            raise ValueError(f"{cls.__name__}.{attr} must be one of {list(choices)}, "
                             f"got {getattr(cls, attr)!r}")
    if cls.dead_latent_loss == "auxk" and cls.aux_k_loss is SparseAutoencoder.aux_k_loss:
        raise ValueError(f"{cls.__name__}.dead_latent_loss is 'auxk' but the class defines "
                         f"no aux_k_loss")


def make_sae(name: str, d: int, width: int, **kwargs) -> SparseAutoencoder:
    """Construct the registered architecture ``name`` (``ARCHITECTURES`` lists them)."""
    if not isinstance(name, str):
        raise TypeError(f"architecture must be a str, got {type(name).__name__}")
    if name not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, got {name!r}")
    return ARCHITECTURES[name](d, width, **kwargs)


class SAEOutput(NamedTuple):
    """What a forward pass computes.

    x_hat : (n, d) reconstruction.
    codes : (n, width) latent activations ``f``.
    pre_acts : (n, width) what the nonlinearity sees (ghost grads and AuxK use
        it for dead latents; for the gated SAE it is the gate's pre-activation),
        or None where the forward pass does not keep them (the ReLU SAE's fused
        forward; ``sae.encode_pre(x)`` computes them).

    prefix_x_hats : for a dictionary read as nested prefixes (the Matryoshka SAE),
        the (n, d) reconstruction of each prefix shorter than the width, shortest
        first, as the forward pass computed them; None otherwise.
    fired : (width,) bool, the latents active on at least one sample, where the
        forward pass knows them without reading ``codes`` (the sparse step lists its
        active entries); None otherwise. :meth:`fired_latents` gives it either way.

    Inside the training engine the same tuple carries a leading member axis:
    ``(M, n, d)``, ``(M, n, width)``, ``(M, width)``.
    """

    x_hat: Tensor
    codes: Tensor
    pre_acts: Tensor | None
    prefix_x_hats: tuple[Tensor, ...] | None = None
    fired: Tensor | None = None

    def fired_latents(self) -> Tensor:
        """(width,) bool (``(M, width)`` in the engine): the latents active on at least
        one sample of the batch."""
        if self.fired is not None:
            return self.fired
        # codes are >= 0 for every architecture: a latent fired iff its column max is > 0
        return self.codes.detach().amax(-2) > 0


class SAELoss(NamedTuple):
    """Loss parts, each a scalar tensor averaged over the batch.

    total = reconstruction + sparsity + auxiliary.
    reconstruction : mean of ``1/2 ||x - x_hat||^2``.
    sparsity : ``sparsity_coef`` times the mean penalty (the architecture's ``penalty_kind``).
    auxiliary : dead-latent loss (ghost grads or AuxK) plus the architecture's
        own auxiliary term (the gated SAE's gate reconstruction); 0 when unused.
    """

    total: Tensor
    reconstruction: Tensor
    sparsity: Tensor
    auxiliary: Tensor


class SparseAutoencoder(nn.Module, abc.ABC):
    """Base class: ``encode``, ``decode``, ``forward``, ``loss`` and the decoder's geometry.

    Subclasses define ``encode_pre(x) -> pre_acts`` and ``activate(pre_acts) -> codes``
    (abstract), and ``config()`` when their constructor takes arguments beyond d, width
    and seed. Every other hook has a default here: ``decoder_weight`` (the ``(width, d)``
    parameter whose rows are atoms), ``decode``, ``forward``, ``penalty(out)``,
    ``auxiliary_loss`` / ``ghost_grad_loss`` / ``aux_k_loss`` (the last for AuxK
    architectures only); for parameters that differ from the ``W_enc (d, width), b_enc
    (width,), W_dec (width, d), b_dec (d,)`` layout, ``latent_parameters`` /
    ``reinit_latents_`` / ``encoder_norms``; and SAELens's format (``saelens_*``,
    ``config_from_saelens``, ``check_saelens_record``, ``state_from_saelens``).
    The class attributes below declare the rest (docs/design.md, "Add an architecture").
    """

    architecture: str = "base"
    # What sparsity_coef weighs: "l1" (mean L1 of the codes), "l0", or "none" (sparsity is
    # set otherwise, by k: the experiments give such an architecture k, never a coefficient).
    penalty_kind: str = "l1"
    # Which auxiliary loss revives dead latents ("ghost": ghost grads, "auxk": AuxK, which
    # needs aux_k_loss), and its weight when a TrainConfig leaves dead_latent_coef unset.
    dead_latent_loss: str = "ghost"
    default_dead_latent_coef: float = 0.0
    # True when auxiliary_loss adds a term of the architecture's own (the gated SAE's).
    has_auxiliary_term: bool = False
    # Where the architecture stands in ARCHITECTURES (ascending; ties in registration order),
    # so the order the experiments run and list it in. The shipped ones are 10 (relu) to 70
    # (matryoshka); the default puts a new architecture after them.
    listing_order: int = 100

    # SAELens's format (toysae.interop.saelens asks the class; docs/interop.md). The SAELens
    # inference architecture this SAE is saved as ("standard", "topk", "jumprelu", "gated"),
    # or None where SAELens has none that computes it (then export raises, naming it).
    saelens_architecture: str | None = None
    # SAELens's name for how it was trained (metadata.training_architecture): what tells
    # apart the architectures saved as one inference architecture. None: saelens_architecture.
    saelens_training_architecture: str | None = None
    # Written beside the coefficient when one is recorded, and required of a SAELens
    # directory for its recorded coefficient to mean toysae's sparsity_coef (relu: lp_norm 1).
    saelens_penalty_details: dict = {}

    def __init__(self, d: int, width: int, *, seed: int = 0):
        super().__init__()
        self.d = check_int(d, "d", minimum=1)
        self.width = check_int(width, "width", minimum=1)
        self.seed = check_seed(seed)

    # -- construction ---------------------------------------------------
    def config(self) -> dict:
        """Constructor arguments; ``make_sae(self.architecture, **self.config())`` rebuilds it."""
        return {"d": self.d, "width": self.width, "seed": self.seed}

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    def _random_atoms(self, gen: torch.Generator) -> Tensor:
        atoms = torch.empty(self.width, self.d)
        if atoms.is_meta:
            # Built for its shapes alone (a checkpoint's metadata check): drawing on the meta
            # device would go through torch's Python decompositions, whose first use imports
            # torch._dynamo (0.4-2 s on every `toysae check`).
            return atoms
        atoms.normal_(generator=gen)  # the same numbers as torch.randn with this generator
        return atoms / atoms.norm(dim=1, keepdim=True)

    def _init_untied_(self, gen: torch.Generator | None = None) -> None:
        """The ``W_enc, b_enc, W_dec, b_dec`` layout with the tied initialisation.

        Decoder rows uniform on the unit sphere, ``W_enc = W_dec^T`` (Conerly
        et al. 2024, Gao et al. 2024: every latent starts as a matched filter
        of its own atom), zero biases. Seeded by ``self.seed``.
        """
        atoms = self._random_atoms(self._generator() if gen is None else gen)
        self.W_enc = nn.Parameter(atoms.T.contiguous())
        self.b_enc = nn.Parameter(torch.zeros(self.width))
        self.W_dec = nn.Parameter(atoms.clone())
        self.b_dec = nn.Parameter(torch.zeros(self.d))

    # -- the model ------------------------------------------------------
    def check_input(self, x) -> Tensor:
        """``x`` as a float32 tensor of shape (n, d); TypeError/ValueError naming ``x``."""
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch tensor or numpy array, got {type(x).__name__}")
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"x must have shape (n, {self.d}) for this SAE (d={self.d}), "
                             f"got {tuple(x.shape)}")
        if x.dtype != torch.float32:
            x = x.float()
        return x

    @abc.abstractmethod
    def encode_pre(self, x: Tensor) -> Tensor:
        """(n, d) checked input -> (n, width) pre-activations."""

    @abc.abstractmethod
    def activate(self, pre_acts: Tensor) -> Tensor:
        """(n, width) pre-activations -> (n, width) codes."""

    def encode(self, x) -> Tensor:
        """(n, d) -> (n, width) codes."""
        return self.activate(self.encode_pre(self.check_input(x)))

    def decode(self, codes: Tensor) -> Tensor:
        """(n, width) -> (n, d): ``codes @ W_dec + b_dec``."""
        return torch.addmm(self.b_dec, codes, self.W_dec)

    def forward(self, x) -> SAEOutput:
        x = self.check_input(x)
        pre = self.encode_pre(x)
        codes = self.activate(pre)
        return SAEOutput(self.decode(codes), codes, pre)

    # -- the loss -------------------------------------------------------
    def penalty(self, out: SAEOutput) -> Tensor:
        """Mean over the batch of the sparsity penalty (default: L1 of the codes)."""
        return out.codes.sum() / out.codes.shape[0]

    def loss(self, x, sparsity_coef: float = 0.0, *, dead: Tensor | None = None,
             dead_latent_coef: float | None = None) -> SAELoss:
        """Loss parts on a batch ``x`` (n, d): the engine's local objective for one SAE.

        sparsity_coef : weight of the architecture's penalty (``lam`` per sample
            for the L1 architectures).
        dead : optional (width,) bool mask of dead latents; when it has any
            True entry the architecture's dead-latent loss (ghost grads or
            AuxK) is added, weighted by ``dead_latent_coef`` (default: 1).
        """
        x = self.check_input(x)
        return self.loss_from_output(x, self(x), sparsity_coef, dead=dead,
                                     dead_latent_coef=dead_latent_coef)

    def loss_from_output(self, x: Tensor, out: SAEOutput, sparsity_coef: float = 0.0, *,
                         dead: Tensor | None = None,
                         dead_latent_coef: float | None = None) -> SAELoss:
        """:meth:`loss` for a checked ``x`` whose forward output ``out`` is already computed.
        Both coefficients must be finite numbers >= 0 (a negative one would reward density)."""
        sparsity_coef = check_float(sparsity_coef, "sparsity_coef", minimum=0.0)
        if dead_latent_coef is not None:
            dead_latent_coef = check_float(dead_latent_coef, "dead_latent_coef", minimum=0.0)
        recon = reconstruction_loss(x, out.x_hat)
        sparsity = (sparsity_coef * self.penalty(out) if sparsity_coef
                    else recon.new_zeros(()))
        coef = 1.0 if dead_latent_coef is None else dead_latent_coef
        aux = self.auxiliary_loss(x, out, dead, coef)
        return SAELoss(recon + sparsity + aux, recon, sparsity, aux)

    def auxiliary_loss(self, x: Tensor, out: SAEOutput, dead: Tensor | None,
                       dead_latent_coef: float) -> Tensor:
        """The dead-latent loss (0 without dead latents or with a zero coefficient);
        architectures with an auxiliary term of their own add it here."""
        if dead is None or not dead_latent_coef or not bool(dead.any()):
            return x.new_zeros(())
        if self.dead_latent_loss == "auxk":
            return dead_latent_coef * self.aux_k_loss(x, out, dead)
        return dead_latent_coef * self.ghost_grad_loss(x, out, dead)

    def aux_k_loss(self, x: Tensor, out: SAEOutput, dead: Tensor) -> Tensor:
        """AuxK (Gao et al. 2024), the dead-latent loss of ``dead_latent_loss == "auxk"``:
        a scalar tensor for a checked ``x`` (n, d), its forward output ``out`` and the
        (width,) bool mask ``dead`` (at least one True).

        The base class has none (AuxK needs the architecture's ``aux_k``):
        ``toysae.sae.topk.aux_k_loss`` computes it, and :func:`register` refuses an
        ``"auxk"`` architecture that does not define this method.
        """
        raise NotImplementedError(f"the {self.architecture} SAE has dead_latent_loss "
                                  f"{self.dead_latent_loss!r} and no aux_k_loss")

    def dead_pre_acts(self, x: Tensor, out: SAEOutput, dead: Tensor) -> Tensor:
        """(n, n_dead) pre-activations of the dead latents (from ``out`` when it kept them)."""
        if out.pre_acts is not None:
            return out.pre_acts[:, dead]
        return self.encode_pre(x)[:, dead]

    def ghost_grad_loss(self, x: Tensor, out: SAEOutput, dead: Tensor) -> Tensor:
        """Ghost grads (Anthropic, "Circuits Updates", Feb 2024).

        Dead latents get the activation ``exp(pre_acts)`` and try to reconstruct
        the (detached) residual through their decoder rows; the ghost output is
        rescaled to half the residual's norm and the loss to the size of the
        reconstruction loss, so it only moves dead latents and never dominates.
        """
        residual = (x - out.x_hat).detach()
        ghost_acts = torch.exp(self.dead_pre_acts(x, out, dead))
        ghost_out = ghost_acts @ self.decoder_weight[dead]
        scale = residual.norm(dim=1, keepdim=True) / (2 * ghost_out.norm(dim=1, keepdim=True)
                                                      + 1e-6)
        ghost_out = ghost_out * scale.detach()
        ghost_mse = 0.5 * (ghost_out - residual).pow(2).sum() / x.shape[0]
        recon = 0.5 * residual.pow(2).sum() / x.shape[0]
        return (recon / (ghost_mse.detach() + 1e-6)) * ghost_mse

    # -- decoder geometry -------------------------------------------------
    @property
    def decoder_weight(self) -> Tensor:
        """The (width, d) parameter whose rows are the decoder's atoms."""
        return self.W_dec

    @property
    def dictionary(self) -> Tensor:
        """(width, d) decoder atoms as unit rows; a detached float32 copy."""
        W = self.decoder_weight.detach().float()
        return (W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)).clone()

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Scale every decoder row to unit L2 norm, in place."""
        W = self.decoder_weight
        W.div_(W.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def remove_parallel_grad_(self) -> None:
        """Remove from the decoder's gradient the component parallel to each (unit) row.

        On the unit sphere only the tangential part of the gradient moves an
        atom; the radial part would be undone by the next normalisation and,
        through Adam's per-element scaling, would distort the step.
        """
        W, g = self.decoder_weight, self.decoder_weight.grad
        if g is None:
            return
        # In place, without (width, d) temporaries: g -= (g . W) W, in blocks of rows that
        # stay in cache between the dot and the update (bit-identical to one pass;
        # a (width, d) product temporary page-faults on every step here).
        rows = _tuning.PARALLEL_GRAD_ROWS
        for start in range(0, W.shape[0], rows):
            gs, ws = g[start:start + rows], W[start:start + rows]
            gs.addcmul_(torch.linalg.vecdot(gs, ws)[:, None], ws, value=-1.0)

    def recycle_grads_(self) -> None:
        """Drop every ``.grad`` before the next step (the engine's ``zero_grad``); an
        architecture whose backward can reuse gradient memory keeps it here."""
        self.zero_grad(set_to_none=True)

    # -- latent bookkeeping used by resampling ----------------------------
    def latent_parameters(self) -> list[tuple[nn.Parameter, int]]:
        """(parameter, axis) pairs: the slices along ``axis`` that belong to each latent."""
        return [(self.W_enc, 1), (self.b_enc, 0), (self.W_dec, 0)]

    def encoder_norms(self) -> Tensor:
        """(width,) L2 norm of each latent's encoder vector."""
        return self.W_enc.detach().norm(dim=0)

    @torch.no_grad()
    def reinit_latents_(self, idx: Tensor, directions: Tensor, encoder_norm: float) -> None:
        """Point latents ``idx`` at unit ``directions`` (len(idx), d) (Anthropic resampling).

        The decoder row becomes the direction, the encoder vector the direction
        scaled to ``encoder_norm``, the encoder bias 0.
        """
        self.W_dec[idx] = directions
        self.W_enc[:, idx] = directions.T * encoder_norm
        self.b_enc[idx] = 0.0

    # -- SAELens's format ---------------------------------------------------
    # What toysae.interop.saelens asks the class, in SAELens's names; it knows the
    # directory's layout, the architecture knows its own fields and tensors. Nothing here
    # imports sae_lens. Each hook raises ValueError with a message that names the field;
    # the interop prefixes the file.
    def check_saelens_format(self) -> None:
        """Raise ValueError, naming the architecture, where SAELens has no architecture
        that computes this SAE (``saelens_architecture`` is None)."""
        if self.saelens_architecture is None:
            exportable = sorted(name for name, cls in ARCHITECTURES.items()
                                if cls.saelens_architecture is not None)
            raise ValueError(f"sae: architecture {self.architecture!r} has no SAELens "
                             f"mapping; exportable: {exportable}")

    def saelens_cfg(self) -> dict:
        """The cfg.json fields of the architecture's own, beside ``d_in``, ``d_sae`` and the
        common switches (TopK's ``k``); none by default."""
        return {}

    def saelens_details(self) -> dict:
        """``metadata.training_architecture_details`` beyond the coefficient (which the
        interop writes from ``penalty_kind``): the training hyperparameters SAELens has
        fields for; none by default."""
        return {}

    def saelens_state(self) -> dict[str, Tensor]:
        """The tensors SAELens's architecture holds, under its names. Default: the untied
        layout ``W_dec (width, d)``, ``b_dec (d,)``, ``W_enc (d, width)``, ``b_enc
        (width,)``, which SAELens's standard and TopK SAEs hold as they are."""
        self.check_saelens_format()
        return {"W_dec": self.W_dec, "b_dec": self.b_dec, "W_enc": self.W_enc,
                "b_enc": self.b_enc}

    @classmethod
    def config_from_saelens(cls, cfg: dict, details: dict, state: dict[str, Tensor]
                            ) -> dict | str:
        """Constructor arguments (beyond d and width) for a directory that SAELens wrote.

        cfg : the architecture's own cfg.json fields as read and checked (those
            :meth:`saelens_cfg` writes, e.g. ``{"k": 4, "rescale_acts_by_decoder_norm":
            True}`` for SAELens's TopK; ``{}`` otherwise).
        details : ``metadata.training_architecture_details`` (an object, maybe empty).
        state : SAELens's tensors in toysae's parametrisation (``b_dec`` subtracted before
            encoding, decoder norms folded where asked), float32, read-only.
        Returns the arguments, or a sentence saying why this architecture cannot hold the
        directory (it then goes to the notes, and the architecture whose training
        architecture is the inference one reads it). Default: no arguments.
        """
        return {}

    @classmethod
    def check_saelens_record(cls, config: dict, cfg: dict, state: dict[str, Tensor]) -> None:
        """Raise ValueError where the config toysae recorded (``metadata.toysae.config``,
        less d and width) contradicts SAELens's own fields ``cfg`` or tensors ``state``
        (as :meth:`config_from_saelens` gets them). Default: nothing to contradict."""

    def state_from_saelens(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """This SAE's ``state_dict`` (every entry) from SAELens's tensors ``state`` in
        toysae's parametrisation (see :meth:`config_from_saelens`); the interop casts each
        to the dtype of this SAE's entry and loads it strictly. Default: the untied layout
        of :meth:`saelens_state`."""
        return {key: state[key] for key in ("W_dec", "b_dec", "W_enc", "b_enc")}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items())


def reconstruction_loss(x: Tensor, x_hat: Tensor) -> Tensor:
    """``mean_n 1/2 ||x_n - x_hat_n||^2`` over the last two axes: a scalar for (n, d),
    one value per member for a stacked (M, n, d) ``x_hat``."""
    if x_hat.ndim == 2:
        return 0.5 * torch.nn.functional.mse_loss(x_hat, x, reduction="sum") / x.shape[0]
    if x_hat.shape[0] == 1:  # one fused kernel each way, as for (n, d)
        return (0.5 / x.shape[0]) * torch.nn.functional.mse_loss(
            x_hat, x[None], reduction="sum").reshape(1)
    return 0.5 * (x_hat - x).square().sum(dim=(1, 2)) / x.shape[0]
