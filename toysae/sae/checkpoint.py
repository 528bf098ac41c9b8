"""Checkpoints: safetensors weights, with the architecture and constructor
arguments as JSON in the file's own metadata (one file, no sidecar).

Loading parses a JSON header and raw tensors only: nothing is ever unpickled.
Everything is checked before a tensor is read or an SAE is built: the header
against the file (``toysae._io.read_safetensors_header``), the metadata's keys,
the config's keys against the architecture's constructor, ``d`` and ``width``
against caps, and the tensors' names, shapes and dtypes against those of the
SAE the config describes (built on PyTorch's ``meta`` device, which allocates
nothing). So a hostile or corrupt file cannot make ``load`` allocate more than
the file holds. Writes are atomic and deterministic: the same SAE saved twice
gives identical bytes.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import torch

from toysae._io import read_safetensors, read_safetensors_header, save_module_tensors
from toysae._validation import check_float, check_int
from toysae.sae.base import ARCHITECTURES, SparseAutoencoder, make_sae

FORMAT = "toysae-sae"
VERSION = "1"
METADATA_KEYS = ("architecture", "config", "format", "version")
# Optional: how the SAE was trained, a JSON object; its only field so far is sparsity_coef
# (what `toysae check` takes as lam when none is given).
TRAINING_KEY = "training"
TRAINING_FIELDS = ("sparsity_coef",)
# Sane limits on what a checkpoint may describe, checked before anything is built:
# d up to 2**20 (the widest language models have d = 16,384), width up to 2**26 latents
# (published SAEs reach 2**25), at most 2**34 entries in one (width, d) matrix (64 GiB).
MAX_D = 2**20
MAX_WIDTH = 2**26
MAX_ENTRIES = 2**34


def save(sae: SparseAutoencoder, path: str | os.PathLike, *,
         sparsity_coef: float | None = None) -> Path:
    """Write ``sae`` (parameters, buffers, architecture, constructor args) to ``path``.

    sparsity_coef : the coefficient it was trained with (``TrainResult.sparsity_coef``),
        recorded under the ``"training"`` metadata entry; None records nothing.
    """
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder, got {type(sae).__name__}")
    metadata = {"format": FORMAT, "version": VERSION, "architecture": sae.architecture,
                "config": json.dumps(sae.config())}
    if sparsity_coef is not None:
        coef = check_float(sparsity_coef, "sparsity_coef", minimum=0.0)
        metadata[TRAINING_KEY] = json.dumps({"sparsity_coef": coef})
    return save_module_tensors(sae, path, metadata)


def training_info(path: str | os.PathLike) -> dict:
    """The checkpoint's ``"training"`` entry as a dict (``{}`` when it records none),
    read from the header alone; ValueError if it is not a JSON object of known fields."""
    path = Path(path)
    metadata, _ = read_safetensors_header(path, "checkpoint")
    return _checked_training(path, metadata.get(TRAINING_KEY))


def _checked_training(path: Path, entry: str | None) -> dict:
    if entry is None:
        return {}
    try:
        training = json.loads(entry)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: the {TRAINING_KEY!r} metadata entry is not JSON: "
                         f"{err}") from err
    if not isinstance(training, dict):
        raise ValueError(f"{path}: the {TRAINING_KEY!r} metadata entry must be a JSON object, "
                         f"got {training!r}")
    unknown = sorted(set(training) - set(TRAINING_FIELDS))
    if unknown:
        raise ValueError(f"{path}: the {TRAINING_KEY!r} metadata entry has unknown field(s) "
                         f"{unknown}; it may hold {list(TRAINING_FIELDS)}")
    if training.get("sparsity_coef") is not None:
        try:
            training["sparsity_coef"] = check_float(training["sparsity_coef"],
                                                    "sparsity_coef", minimum=0.0)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: the {TRAINING_KEY!r} metadata entry has a bad "
                             f"sparsity_coef: {err}") from err
    return training


def load(path: str | os.PathLike, architecture: str | None = None) -> SparseAutoencoder:
    """Read a checkpoint written by :func:`save`; the SAE comes back in eval mode.

    architecture : if given, the checkpoint must hold this architecture
        (ValueError otherwise).
    Raises ``ValueError`` for a truncated, corrupt or foreign file, and for one whose
    weights hold NaN or Inf.
    """
    path = Path(path)
    if architecture is not None and architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, "
                         f"got {architecture!r}")
    metadata, header = read_safetensors_header(path, "checkpoint")
    unknown = sorted(set(metadata) - set(METADATA_KEYS) - {TRAINING_KEY})
    if unknown:
        raise ValueError(f"{path} has unknown metadata key(s) {unknown}; a toysae checkpoint "
                         f"holds {list(METADATA_KEYS)} and optionally {TRAINING_KEY!r}")
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is a safetensors file but not a toysae SAE checkpoint "
                         f"(metadata format={metadata.get('format')!r})")
    if metadata.get("version") != VERSION:
        raise ValueError(f"{path} has checkpoint version {metadata.get('version')!r}; this "
                         f"toysae reads version {VERSION}")
    held = metadata.get("architecture")
    if architecture is not None and held != architecture:
        raise ValueError(f"architecture: asked for {architecture!r} but {path} holds a "
                         f"{held!r} SAE")
    if held not in ARCHITECTURES:
        raise ValueError(f"{path} holds unknown architecture {held!r}")
    config = _checked_config(path, held, metadata.get("config", ""))
    _checked_training(path, metadata.get(TRAINING_KEY))
    expected = _expected_tensors(path, held, config)
    if expected != header:
        raise ValueError(f"{path}: its tensors do not match a {held} SAE with {config}: "
                         f"{_differences(header, expected)}")
    _, tensors = read_safetensors(path, "checkpoint")
    for key in sorted(tensors):  # a trained SAE's weights are finite; NaN means corruption
        bad = int((~torch.isfinite(tensors[key])).sum()) if tensors[key].is_floating_point() \
            else 0
        if bad:
            raise ValueError(f"{path}: tensor {key!r} has {bad} NaN or Inf entries; a toysae "
                             f"checkpoint holds finite weights (corrupt file?)")
    sae = make_sae(held, **config)
    with torch.no_grad():
        sae.load_state_dict(tensors, strict=True)
    return sae.eval()


def _checked_config(path: Path, architecture: str, text: str) -> dict:
    """The config JSON: an object whose keys are the constructor's arguments, with ``d``
    and ``width`` ints within the caps (ValueError otherwise)."""
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} has a corrupt config in its metadata: {err}") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path} has a corrupt config in its metadata: {config!r}")
    params = inspect.signature(ARCHITECTURES[architecture].__init__).parameters
    known = [k for k, p in params.items() if k != "self" and p.kind in (
        p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ValueError(f"{path} has unknown config key(s) {unknown} for a {architecture} "
                         f"SAE, whose arguments are {known}")
    missing = [k for k in ("d", "width") if k not in config]
    if missing:
        raise ValueError(f"{path}: the config lacks {missing}")
    try:
        d = check_int(config["d"], "d", minimum=1, maximum=MAX_D)
        width = check_int(config["width"], "width", minimum=1, maximum=MAX_WIDTH)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path} has an invalid config: {err}") from None
    if d * width > MAX_ENTRIES:
        raise ValueError(f"{path} has an invalid config: d * width = {d * width} is over "
                         f"the limit of {MAX_ENTRIES} entries per matrix")
    return config


def _expected_tensors(path: Path, architecture: str, config: dict) -> dict:
    """{name: (safetensors dtype, shape)} of the SAE ``config`` describes, built on the
    meta device (shapes only, no memory); its constructor checks the values."""
    from toysae._io import safetensors_dtypes

    names = {v: k for k, v in safetensors_dtypes(torch).items()}
    try:
        with torch.device("meta"):
            sae = make_sae(architecture, **config)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path} has an invalid config: {err}") from None
    return {k: (names[v.dtype], tuple(v.shape)) for k, v in sae.state_dict().items()}


def _differences(found: dict, expected: dict) -> str:
    """What differs between the file's tensors and the SAE's, tensor by tensor."""
    parts = [f"{k}: the file has {found[k][0]} {found[k][1]}, the SAE has "
             f"{expected[k][0]} {expected[k][1]}"
             for k in sorted(found.keys() & expected.keys()) if found[k] != expected[k]]
    if expected.keys() - found.keys():
        parts.append(f"missing from the file: {sorted(expected.keys() - found.keys())}")
    if found.keys() - expected.keys():
        parts.append(f"not in the SAE: {sorted(found.keys() - expected.keys())}")
    return "; ".join(parts)
