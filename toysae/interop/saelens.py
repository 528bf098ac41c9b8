"""SAELens's SAE directory format, both ways (docs/interop.md).

A SAELens SAE directory holds ``cfg.json`` (the architecture, ``d_in``,
``d_sae`` and a few switches) and ``sae_weights.safetensors`` (the
parameters, under SAELens's names: ``W_enc (d_in, d_sae)``, ``b_enc``,
``W_dec (d_sae, d_in)``, ``b_dec``, plus ``threshold`` or the gated SAE's
``b_gate``, ``b_mag``, ``r_mag``; matching pursuit holds ``W_dec`` and ``b_dec`` alone).
``sae_lens.SAE.load_from_disk`` reads it.
This module writes and reads that format with json and safetensors alone: the
``sae-lens`` package is needed only to check it (the tests use the real one).

Each architecture declares its own mapping on its class (``saelens_architecture``,
``saelens_training_architecture``, ``saelens_state`` and the other hooks of
``toysae.sae.base.SparseAutoencoder``, "SAELens's format"), as SAELens keeps its
own conversions on its SAE classes; this module knows the directory and asks the
class, so it names no toysae architecture. The shipped ones, toysae -> SAELens
inference architecture:

    relu        -> standard    (b_dec subtracted before encoding: apply_b_dec_to_input)
    topk        -> topk        (k; rescale_acts_by_decoder_norm false)
    batchtopk   -> jumprelu    (every latent's threshold = the inference threshold,
    matryoshka  -> jumprelu     clamped at 0, which is how SAELens saves its own)
    jumprelu    -> jumprelu    (threshold = exp(log_threshold))
    gated       -> gated       (W_enc = W_gate)
    matching_pursuit -> matching_pursuit (W_dec, b_dec; max_iterations = k,
                   residual_threshold, stop_on_duplicate_support = stop_on_repeat)
    tied        -> none: SAELens has no tied architecture (ValueError)

What SAELens does not keep (aux_k, seeds, BatchTopK's momentum, the
Matryoshka prefixes, JumpReLU's bandwidth) goes into ``cfg.json``'s
``metadata.toysae``, so a toysae SAE comes back exactly. An SAE made by
SAELens is read from its own fields; its ``metadata.training_architecture``
tells a BatchTopK or Matryoshka SAE (saved as JumpReLU with one shared
threshold) from a JumpReLU one.

Import refuses what toysae cannot compute the same way (input normalisation,
JumpReLU thresholds <= 0, architectures toysae lacks) with a ValueError that
says why, before building anything. Where SAELens's parameters are a
reparametrisation of toysae's, they are folded: ``apply_b_dec_to_input=false``
becomes ``b_enc + b_dec W_enc``; decoder rows that are not unit norm are made
unit and their norms folded into the encoder (toysae's convention: atoms are
unit rows, codes are in their units), unless ``fold_decoder_norms=False``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from toysae._io import atomic_directory, read_safetensors
from toysae._validation import check_float, listed_latents
from toysae.interop._saelens_format import (
    CFG_FILENAME,
    SAELENS_ARCHITECTURES,
    SAELENS_VERSION,
    WEIGHTS_FILENAME,
    SAELensConfig,
    check_tensor_header,
    read_cfg,
)
from toysae.sae.base import ARCHITECTURES, SparseAutoencoder, make_sae

# Rows within this of unit norm are unit rows up to float32 rounding: left as they are.
_UNIT_ATOL = 1e-6


# --------------------------------------------------------------------- export
def export_saelens(sae: SparseAutoencoder, directory: str | os.PathLike, *,
                   hook_name: str | None = None, model_name: str | None = None,
                   sparsity_coef: float | None = None, overwrite: bool = False) -> Path:
    """Write ``sae`` as a SAELens SAE directory (``cfg.json``, ``sae_weights.safetensors``).

    ``sae_lens.SAE.load_from_disk(directory)`` then computes the same codes and
    reconstruction as ``sae`` in eval mode (a BatchTopK or Matryoshka SAE is
    written as its inference rule, a JumpReLU with its threshold, as SAELens
    saves its own); :func:`load_saelens` gives the toysae SAE back.

    hook_name, model_name : recorded in ``metadata`` for SAELens's hooked
        models (``HookedSAETransformer``); a toy SAE has none by default.
    sparsity_coef : the coefficient the SAE was trained with, if it has a
        penalty; recorded in toysae's scaling and in SAELens's
        (``l1_coefficient`` / ``l0_coefficient`` = 2 * sparsity_coef, since
        SAELens's reconstruction term has no 1/2).
    overwrite : replace an existing SAELens directory at ``directory``
        (a directory holding anything else is never replaced).
    The directory is written under a temporary name and renamed into place.
    Raises ValueError for an architecture SAELens has no counterpart for (the tied
    SAE; the class says, ``saelens_architecture``), for a subclass or unregistered
    architecture, and for non-finite parameters.
    """
    name = _exportable_architecture(sae)
    for label, value in (("hook_name", hook_name), ("model_name", model_name)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{label} must be a str or None, got {value!r}")
    if sparsity_coef is not None:
        sparsity_coef = check_float(sparsity_coef, "sparsity_coef", minimum=0.0)
        if sae.penalty_kind == "none":
            raise ValueError(f"sparsity_coef: a {name} SAE has no sparsity penalty "
                             f"(penalty_kind 'none'), got {sparsity_coef}")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be a bool, got {overwrite!r}")
    directory = Path(directory)
    _check_target(directory, overwrite)

    tensors = {key: _cpu32(value) for key, value in sae.saelens_state().items()}
    for key, value in tensors.items():
        if not torch.isfinite(value).all():
            raise ValueError(f"sae has NaN or Inf in {key}; refusing to export it")
    metadata = {"sae_lens_version": SAELENS_VERSION, "sae_lens_training_version": None,
                **_training_metadata(sae, sparsity_coef)}
    if hook_name is not None:
        metadata["hook_name"] = hook_name
    if model_name is not None:
        metadata["model_name"] = model_name
    toysae_entry = {"architecture": name, "config": sae.config()}
    if sparsity_coef is not None:
        toysae_entry["sparsity_coef"] = sparsity_coef
    metadata["toysae"] = toysae_entry
    cfg = {"architecture": sae.saelens_architecture, "d_in": sae.d, "d_sae": sae.width,
           "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True,
           "normalize_activations": "none", "reshape_activations": "none",
           **sae.saelens_cfg(), "metadata": metadata}

    from safetensors.torch import save_file

    with atomic_directory(directory) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILENAME))
        (tmp / CFG_FILENAME).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return directory


def _exportable_architecture(sae) -> str:
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a toysae SparseAutoencoder, got {type(sae).__name__}")
    name = sae.architecture
    sae.check_saelens_format()
    if sae.saelens_architecture not in SAELENS_ARCHITECTURES:
        raise ValueError(f"sae: architecture {name!r} maps to SAELens's "
                         f"{sae.saelens_architecture!r}, whose directory toysae does not "
                         f"write; it writes {sorted(SAELENS_ARCHITECTURES)}")
    if name not in ARCHITECTURES:
        raise ValueError(f"sae: architecture {name!r} is not registered "
                         f"(toysae.sae.register); only registered classes are exported")
    if type(sae) is not ARCHITECTURES[name]:
        raise ValueError(f"sae is a {type(sae).__name__}, a subclass of the registered {name} "
                         f"SAE; only the registered classes are exported, since the mapping "
                         f"is written for their forward pass")
    return name


def _check_target(directory: Path, overwrite: bool) -> None:
    if not directory.exists():
        return
    if not directory.is_dir():
        raise ValueError(f"directory: {directory} exists and is not a directory")
    if not any(directory.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(f"directory: {directory} exists and is not empty; pass "
                              f"overwrite=True to replace a SAELens SAE directory")
    if not (directory / CFG_FILENAME).is_file():
        raise ValueError(f"directory: {directory} is not empty and holds no {CFG_FILENAME}; "
                         f"refusing to replace a directory that is not a SAELens SAE")


def _cpu32(t: Tensor) -> Tensor:
    return t.detach().to("cpu", torch.float32).contiguous().clone()


def _training_architecture(cls: type[SparseAutoencoder]) -> str:
    """SAELens's ``metadata.training_architecture`` for an architecture."""
    return cls.saelens_training_architecture or cls.saelens_architecture


def _training_metadata(sae: SparseAutoencoder, sparsity_coef: float | None) -> dict:
    """SAELens's ``training_architecture`` and the details it shares with toysae."""
    details = sae.saelens_details()
    if sparsity_coef is not None:
        # SAELens's l1_coefficient / l0_coefficient weigh a reconstruction term with no 1/2.
        details = {**details, f"{sae.penalty_kind}_coefficient": 2 * sparsity_coef,
                   **sae.saelens_penalty_details}
    return {"training_architecture": _training_architecture(type(sae)),
            "training_architecture_details": details}


# --------------------------------------------------------------------- import
@dataclass(frozen=True)
class SAELensImport:
    """A SAELens directory read into toysae: the SAE, the recorded sparsity
    coefficient in toysae's scaling (None when none is recorded or it does not
    carry over) and notes on every conversion made."""

    sae: SparseAutoencoder
    sparsity_coef: float | None
    notes: tuple[str, ...]


def load_saelens(directory: str | os.PathLike, *,
                 fold_decoder_norms: bool = True) -> SparseAutoencoder:
    """The toysae SAE (eval mode) that computes what SAELens computes from ``directory``.

    fold_decoder_norms : with True (default) decoder rows that are not unit
        norm are made unit and their norms folded into the encoder (and the
        JumpReLU thresholds), so the reconstruction is unchanged and the codes
        are in units of unit atoms, as toysae's checkers read them (SAELens's
        feature activations times the row norms). With False the codes are
        SAELens's own and the decoder rows keep their norms. A TopK SAE that
        ranks rescaled pre-activations (``rescale_acts_by_decoder_norm``) is
        always folded; one that ranks raw ones cannot be, so with non-unit
        rows it needs ``fold_decoder_norms=False``.
    Raises FileNotFoundError for a missing directory and ValueError for one
    that is not in SAELens's format or holds what toysae cannot compute the
    same way; the config and tensor shapes are checked before anything is built.
    """
    return read_saelens(directory, fold_decoder_norms=fold_decoder_norms).sae


def read_saelens(directory: str | os.PathLike, *,
                 fold_decoder_norms: bool = True) -> SAELensImport:
    """:func:`load_saelens` with the recorded sparsity coefficient and conversion notes."""
    if not isinstance(fold_decoder_norms, bool):
        raise TypeError(f"fold_decoder_norms must be a bool, got {fold_decoder_norms!r}")
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"no SAELens SAE directory at {directory}")
    if not directory.is_dir():
        raise ValueError(f"{directory} is a file, not a SAELens SAE directory")
    for filename in (CFG_FILENAME, WEIGHTS_FILENAME):
        if not (directory / filename).is_file():
            raise ValueError(f"{directory} is not a SAELens SAE directory: it has no "
                             f"{filename} (expected {CFG_FILENAME} and {WEIGHTS_FILENAME})")
    cfg = read_cfg(directory)
    check_tensor_header(directory, cfg)
    _, raw = read_safetensors(directory / WEIGHTS_FILENAME, "SAELens weights file")
    params = _toysae_parameters(raw, cfg, fold_decoder_norms, directory)
    name, config = _toysae_architecture(cfg, params, directory)
    sae = _build(name, config, params, directory)
    coef = _sparsity_coef(cfg, name, directory)
    return SAELensImport(sae, coef, tuple(cfg.notes))


def _holders(saelens_architecture: str) -> list[type[SparseAutoencoder]]:
    """The registered architectures saved as ``saelens_architecture``, in listing order."""
    return [cls for cls in ARCHITECTURES.values()
            if cls.saelens_architecture == saelens_architecture]


def _own_cfg(cfg: SAELensConfig) -> dict:
    """The cfg.json fields of the architecture's own, as read and checked (what
    ``saelens_cfg`` writes): SAELens's TopK has ``k`` and its ranking switch, its matching
    pursuit SAE the stopping rules."""
    return dict(cfg.own)


def _toysae_parameters(raw: dict[str, Tensor], cfg: SAELensConfig, fold: bool,
                       directory: Path) -> dict[str, Tensor]:
    """SAELens's tensors as toysae's pre-bias parametrisation, in float32 (converted
    in place: a large SAE is not copied).

    Keys: W_enc, W_dec, b_dec and b_enc (+ threshold) or b_gate, b_mag, r_mag; W_dec and
    b_dec alone for matching pursuit.
    """
    # SAELens casts every tensor to cfg.dtype when it loads them; so do we, first.
    p = {k: v.to(cfg.dtype).to(torch.float32) for k, v in raw.items()}
    for key, value in p.items():
        if not torch.isfinite(value).all():
            raise ValueError(f"{directory / WEIGHTS_FILENAME}: {key} has NaN or Inf entries")
    if "log_threshold" in p:
        p["threshold"] = p.pop("log_threshold").exp()
        cfg.notes.append("threshold read as exp(log_threshold), as SAELens does")
    pursuit = cfg.architecture == "matching_pursuit"
    if not cfg.apply_b_dec_to_input and pursuit:
        # SAELens's matching pursuit then neither subtracts b_dec nor adds it back.
        p["b_dec"] = torch.zeros_like(p["b_dec"])
        cfg.notes.append("apply_b_dec_to_input=false: a matching-pursuit SAE then uses no "
                         "b_dec, so b_dec is read as 0")
    elif not cfg.apply_b_dec_to_input:
        # x W + b = (x - b_dec) W + (b + b_dec W): toysae always subtracts b_dec first.
        shift = p["b_dec"] @ p["W_enc"]
        if cfg.architecture == "gated":
            p["b_gate"] = p["b_gate"] + shift
            p["b_mag"] = p["b_mag"] + shift * p["r_mag"].exp()
        else:
            p["b_enc"] = p["b_enc"] + shift
        cfg.notes.append("apply_b_dec_to_input=false: b_dec W_enc folded into the encoder "
                         "bias (toysae subtracts b_dec before encoding)")
    norms = torch.linalg.vector_norm(p["W_dec"], dim=1, dtype=torch.float64)
    unit = bool(((norms - 1).abs() <= _UNIT_ATOL).all())
    topk_raw = cfg.architecture == "topk" and not cfg.rescale_acts_by_decoder_norm
    must_fold = cfg.architecture == "topk" and cfg.rescale_acts_by_decoder_norm
    if unit:
        return p
    if (topk_raw or pursuit) and fold:
        ranks = ("this TopK SAE ranks raw pre-activations (rescale_acts_by_decoder_norm="
                 "false)" if topk_raw else
                 "this matching-pursuit SAE scores the residual against its raw decoder rows")
        raise ValueError(
            f"{directory}: {ranks} and its decoder rows are not unit norm "
            f"(norms {float(norms.min()):.6g} to {float(norms.max()):.6g}), so folding the "
            f"norms into the encoder would change which latents fire; load it with "
            f"fold_decoder_norms=False to keep SAELens's function with non-unit atoms")
    if must_fold and not fold:
        raise ValueError(
            f"{directory}: this TopK SAE ranks pre-activations times the decoder norms "
            f"(rescale_acts_by_decoder_norm=true), which toysae's TopK SAE computes only "
            f"with unit decoder rows; load it with fold_decoder_norms=True")
    if not (fold or must_fold):
        cfg.notes.append(f"decoder rows kept at norms {float(norms.min()):.6g} to "
                         f"{float(norms.max()):.6g} (fold_decoder_norms=False)")
        return p
    if bool((norms == 0).any()):
        raise ValueError(f"{directory}: W_dec has zero rows at {listed_latents(norms == 0)}; their "
                         f"norms cannot be folded into the encoder"
                         f"{'' if must_fold else ' (use fold_decoder_norms=False)'}")
    # f_i ||W_dec,i|| with unit rows reconstructs the same: ReLU, the gate's sign and
    # JumpReLU's comparison commute with a positive scale.
    norms = norms.float()
    p["W_enc"].mul_(norms)
    p["W_dec"].div_(norms[:, None])
    for key in ("b_enc", "b_gate", "b_mag", "threshold"):
        if key in p:
            p[key].mul_(norms)
    cfg.notes.append(f"decoder row norms ({float(norms.min()):.6g} to {float(norms.max()):.6g})"
                     f" folded into the encoder: codes are SAELens's feature activations "
                     f"times the norms, reconstructions unchanged")
    return p


def _toysae_architecture(cfg: SAELensConfig, p: dict[str, Tensor],
                         directory: Path) -> tuple[str, dict]:
    """The toysae architecture and constructor arguments for this directory.

    One that toysae wrote says which (``metadata.toysae``). For one that SAELens wrote,
    the architectures saved as its inference architecture are asked in listing order:
    first those trained as its ``training_architecture`` (a BatchTopK SAE saved as a
    JumpReLU one), then those trained as the inference architecture itself.
    """
    path = directory / CFG_FILENAME
    if cfg.toysae is not None:
        return _recorded_architecture(cfg, p, path)
    holders = _holders(cfg.architecture)
    trained = [c for c in holders if _training_architecture(c) == cfg.training_architecture]
    native = [c for c in holders
              if _training_architecture(c) == cfg.architecture and c not in trained]
    for cls in trained + native:
        try:
            config = cls.config_from_saelens(_own_cfg(cfg), cfg.details, p)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        if isinstance(config, dict):
            return cls.architecture, config
        cfg.notes.append(config)
    raise ValueError(f"{path}: no toysae architecture reads a SAELens {cfg.architecture} SAE "
                     f"trained as {cfg.training_architecture!r}")


def _recorded_architecture(cfg: SAELensConfig, p: dict[str, Tensor],
                           path: Path) -> tuple[str, dict]:
    """The architecture and config that toysae recorded in ``metadata.toysae``,
    checked against what the SAELens fields say."""
    name, config = cfg.toysae.get("architecture"), cfg.toysae.get("config")
    holders = [cls.architecture for cls in _holders(cfg.architecture)]
    if name not in holders:
        raise ValueError(f"{path}: metadata.toysae.architecture is {name!r}, which a SAELens "
                         f"{cfg.architecture} SAE cannot hold ({holders})")
    if not isinstance(config, dict):
        raise ValueError(f"{path}: metadata.toysae.config must be an object, got {config!r}")
    config = dict(config)
    if config.pop("d", cfg.d_in) != cfg.d_in or config.pop("width", cfg.d_sae) != cfg.d_sae:
        raise ValueError(f"{path}: metadata.toysae.config has d={cfg.toysae['config'].get('d')}"
                         f", width={cfg.toysae['config'].get('width')}, but d_in={cfg.d_in}, "
                         f"d_sae={cfg.d_sae}")
    try:
        ARCHITECTURES[name].check_saelens_record(config, _own_cfg(cfg), p)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    return name, config


def _build(name: str, config: dict, p: dict[str, Tensor], directory: Path) -> SparseAutoencoder:
    d, width = p["W_dec"].shape[1], p["W_dec"].shape[0]
    try:
        sae = make_sae(name, d, width, **config)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{directory / CFG_FILENAME}: not a valid {name} configuration "
                         f"{config}: {err}") from err
    try:
        state = sae.state_from_saelens(p)
    except ValueError as err:
        raise ValueError(f"{directory}: {err}") from err
    expected = sae.state_dict()
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    with torch.no_grad():
        sae.load_state_dict(state, strict=True)
    return sae.eval()


def _sparsity_coef(cfg: SAELensConfig, name: str, directory: Path) -> float | None:
    """The training coefficient in toysae's scaling, where the directory records one
    that means the same as toysae's ``sparsity_coef`` for ``name``."""
    if cfg.toysae is not None and "sparsity_coef" in cfg.toysae:
        try:
            return check_float(cfg.toysae["sparsity_coef"], "metadata.toysae.sparsity_coef",
                               minimum=0.0)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{directory / CFG_FILENAME}: {err}") from err
    cls, details = ARCHITECTURES[name], cfg.details
    if cls.penalty_kind == "none" or cfg.training_architecture != _training_architecture(cls):
        return None
    key = f"{cls.penalty_kind}_coefficient"  # SAELens's l1_coefficient, l0_coefficient
    for field, value in cls.saelens_penalty_details.items():
        found = details.get(field, value)
        if found != value:
            cfg.notes.append(f"trained with {field} {found!r} (toysae's {name} SAE: "
                             f"{value!r}): no sparsity_coef")
            return None
    value = details.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        return None
    runner = _runner_normalisation(directory)
    if runner not in (None, "none"):
        cfg.notes.append(f"SAELens trained on activations normalised by {runner!r}: its "
                         f"{key} is in those units, so no sparsity_coef is given")
        return None
    cfg.notes.append(f"sparsity_coef = {key} / 2 (SAELens's reconstruction term has no 1/2)")
    return float(value) / 2


def _runner_normalisation(directory: Path) -> str | None:
    """``sae.normalize_activations`` of the training run, where SAELens left its
    ``runner_cfg.json`` beside the SAE (the SAE's own cfg says "none" once SAELens
    has folded the normalisation in)."""
    path = directory / "runner_cfg.json"
    if not path.is_file():
        return None
    try:
        runner = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    sae_cfg = runner.get("sae") if isinstance(runner, dict) else None
    value = sae_cfg.get("normalize_activations") if isinstance(sae_cfg, dict) else None
    return value if isinstance(value, str) else None
