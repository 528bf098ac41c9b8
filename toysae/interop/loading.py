"""One entry for an SAE on disk: a toysae checkpoint file or a SAELens directory.

``load_sae(path)`` returns the SAE; ``load_sae_with_info(path)`` also says where
it came from and the sparsity coefficient it was trained with, where the file
records one (the default ``lam`` of a check, docs/interop.md):

- a toysae checkpoint: the JSON object under its metadata key ``"training"``,
  field ``"sparsity_coef"``, when the checkpoint has one;
- a SAELens directory: ``metadata.toysae.sparsity_coef`` when toysae wrote it,
  else SAELens's ``l1_coefficient`` / ``l0_coefficient`` from
  ``metadata.training_architecture_details`` divided by 2 (SAELens's
  reconstruction term has no 1/2), when the penalty is the one the toysae
  architecture has (L1 for standard and gated, the step L0 for JumpReLU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from toysae.interop._saelens_format import CFG_FILENAME, WEIGHTS_FILENAME
from toysae.interop.saelens import read_saelens
from toysae.sae.base import SparseAutoencoder
from toysae.sae.checkpoint import load as load_checkpoint
from toysae.sae.checkpoint import training_info


@dataclass(frozen=True)
class SAEInfo:
    """Where a loaded SAE came from.

    source : "toysae" (a checkpoint file) or "saelens" (a SAELens directory).
    path : the file or directory read.
    architecture : the toysae architecture it was loaded as.
    sparsity_coef : the coefficient of the architecture's penalty it was trained
        with, in toysae's scaling (for relu and gated the per-sample ``lam``);
        None when nothing recorded it or the recorded one means something else.
    notes : every conversion made on the way in, for a person.
    """

    source: Literal["toysae", "saelens"]
    path: str
    architecture: str
    sparsity_coef: float | None
    notes: tuple[str, ...] = ()


def load_sae(path: str | os.PathLike) -> SparseAutoencoder:
    """The SAE at ``path`` (eval mode): a toysae checkpoint file or a SAELens directory.

    A SAELens directory's decoder rows come back unit norm with the norms folded
    into the encoder (see :func:`toysae.interop.load_saelens`). ``path`` may
    also name the directory's ``cfg.json`` or ``sae_weights.safetensors``.
    """
    return load_sae_with_info(path)[0]


def load_sae_with_info(path: str | os.PathLike) -> tuple[SparseAutoencoder, SAEInfo]:
    """:func:`load_sae` and an :class:`SAEInfo` (source, recorded sparsity_coef, notes)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no SAE at {path} (expected a toysae checkpoint file or a "
                                f"SAELens directory)")
    if path.is_file() and path.name in (CFG_FILENAME, WEIGHTS_FILENAME) and all(
            (path.parent / name).is_file() for name in (CFG_FILENAME, WEIGHTS_FILENAME)):
        path = path.parent
    if path.is_dir():
        loaded = read_saelens(path)
        return loaded.sae, SAEInfo("saelens", str(path), loaded.sae.architecture,
                                   loaded.sparsity_coef, loaded.notes)
    sae = load_checkpoint(path)
    return sae, SAEInfo("toysae", str(path), sae.architecture,
                        training_info(path).get("sparsity_coef"))
