"""toysae: a laboratory for sparse autoencoders and dictionary learning on toy data.

The short path (see README.md)::

    import toysae
    data = toysae.SyntheticData(toysae.SyntheticConfig())
    result = toysae.train_sae("relu", data, toysae.TrainConfig(n_samples=200_000), width=512)
    toysae.metrics.mmcs(data.features, result.sae.dictionary)
    toysae.check_sae(result.sae, data.sample(2000, seed=1).x, lam=result.config.sparsity_coef)

Subpackages: ``toysae.data`` (ground truth), ``toysae.sae`` (SAEs and the
training engine), ``toysae.dictlearn`` (classical solvers), ``toysae.models``
(host toy models), ``toysae.metrics``, ``toysae.theory`` (optimality checks),
``toysae.interop`` (other tools' formats), ``toysae.experiments``,
``toysae.check`` (``toysae check``).

Every name here is imported when first used (PEP 562 ``__getattr__``), so
``import toysae`` and the ``toysae`` command's ``--help`` and ``list`` load
neither torch nor scikit-learn; ``from toysae import train_sae`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "Batch": "toysae.data", "SyntheticConfig": "toysae.data", "SyntheticData": "toysae.data",
    "DictionaryLearner": "toysae.dictlearn", "sparse_code": "toysae.dictlearn",
    "dictionary_objective": "toysae.dictionary_objective",
    "TrainConfig": "toysae.sae", "TrainResult": "toysae.sae", "make_sae": "toysae.sae",
    "train_grid": "toysae.sae", "train_sae": "toysae.sae",
    "check_optimality": "toysae.theory", "check_sae": "toysae.theory",
}
#: Submodules reachable as attributes after a bare ``import toysae``.
_SUBMODULES = ("check", "data", "dictlearn", "experiments", "host_metrics", "interop",
               "metrics", "models", "objective", "sae", "theory")

__all__ = ["Batch", "DictionaryLearner", "SyntheticConfig", "SyntheticData", "TrainConfig",
           "TrainResult", "check_optimality", "check_sae", "dictionary_objective", "make_sae",
           "metrics", "sparse_code", "train_grid", "train_sae"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBMODULES))


if TYPE_CHECKING:  # what static tools see; at run time the names load on first use
    from toysae import metrics
    from toysae.data import Batch, SyntheticConfig, SyntheticData
    from toysae.dictionary_objective import dictionary_objective
    from toysae.dictlearn import DictionaryLearner, sparse_code
    from toysae.sae import TrainConfig, TrainResult, make_sae, train_grid, train_sae
    from toysae.theory import check_optimality, check_sae
