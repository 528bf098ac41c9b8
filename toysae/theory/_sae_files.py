"""Loading the SAE that ``check_sae_files`` checks (a stand-in for ``toysae.interop``).

``load_sae_with_info(path) -> (sae, info)`` has the signature and ``SAEInfo`` the
fields of ``toysae.interop.load_sae_with_info``, which also reads SAELens
directories; until that module is part of the package this one reads toysae
checkpoint files (``toysae.sae.checkpoint``) only, and the coefficient a
checkpoint records under its metadata key ``"training"`` (``sparsity_coef``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from toysae._validation import check_float
from toysae.sae.base import SparseAutoencoder
from toysae.sae.checkpoint import load as load_checkpoint

#: The checkpoint metadata key whose JSON object describes the training run.
TRAINING_KEY = "training"


@dataclass(frozen=True)
class SAEInfo:
    """Where a loaded SAE came from; ``sparsity_coef`` is None when nothing recorded it."""

    source: str
    path: str
    architecture: str
    sparsity_coef: float | None
    notes: tuple[str, ...] = ()


def load_sae_with_info(path: str | os.PathLike) -> tuple[SparseAutoencoder, SAEInfo]:
    """The SAE in the toysae checkpoint ``path`` (eval mode) and its :class:`SAEInfo`."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path, got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory: SAELens directories are read by "
                         "toysae.interop; give a toysae checkpoint file")
    sae = load_checkpoint(path)
    return sae, SAEInfo("toysae", str(path), sae.architecture, _recorded_coef(path))


def _recorded_coef(path: Path) -> float | None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        entry = (f.metadata() or {}).get(TRAINING_KEY)
    if entry is None:
        return None
    try:
        training = json.loads(entry)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: the {TRAINING_KEY!r} metadata entry is not JSON: "
                         f"{err}") from err
    if not isinstance(training, dict):
        raise ValueError(f"{path}: the {TRAINING_KEY!r} metadata entry must be a JSON object, "
                         f"got {training!r}")
    if training.get("sparsity_coef") is None:
        return None
    return check_float(training["sparsity_coef"], "sparsity_coef", minimum=0.0)
