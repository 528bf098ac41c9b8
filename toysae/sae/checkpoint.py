"""Checkpoints: safetensors weights, with the architecture and constructor
arguments as JSON in the file's own metadata (one file, no sidecar).

Loading parses a JSON header and raw tensors only: nothing is ever unpickled.
Writes go to a temporary file that is renamed into place, so a crash never
leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from toysae._io import read_safetensors, save_module_tensors
from toysae.sae.base import ARCHITECTURES, SparseAutoencoder, make_sae

FORMAT = "toysae-sae"
VERSION = "1"


def save(sae: SparseAutoencoder, path: str | os.PathLike) -> Path:
    """Write ``sae`` (parameters, buffers, architecture, constructor args) to ``path``."""
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder, got {type(sae).__name__}")
    metadata = {"format": FORMAT, "version": VERSION, "architecture": sae.architecture,
                "config": json.dumps(sae.config())}
    return save_module_tensors(sae, path, metadata)


def load(path: str | os.PathLike, architecture: str | None = None) -> SparseAutoencoder:
    """Read a checkpoint written by :func:`save`; the SAE comes back in eval mode.

    architecture : if given, the checkpoint must hold this architecture
        (ValueError otherwise).
    Raises ``ValueError`` for a truncated, corrupt or foreign file.
    """
    path = Path(path)
    if architecture is not None and architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, "
                         f"got {architecture!r}")
    metadata, tensors = read_safetensors(path, "checkpoint")
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
    try:
        config = json.loads(metadata.get("config", ""))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} has a corrupt config in its metadata: {err}") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path} has a corrupt config in its metadata: {config!r}")
    sae = make_sae(held, **config)
    expected = {k: (tuple(v.shape), v.dtype) for k, v in sae.state_dict().items()}
    found = {k: (tuple(v.shape), v.dtype) for k, v in tensors.items()}
    if expected != found:
        raise ValueError(f"{path}: tensors {found} do not match a {held} SAE with {config}: "
                         f"expected {expected}")
    with torch.no_grad():
        sae.load_state_dict(tensors, strict=True)
    return sae.eval()
