"""toysae: a laboratory for sparse autoencoders and dictionary learning on toy data.

The short path (see README.md)::

    import toysae
    data = toysae.SyntheticData(toysae.SyntheticConfig())
    result = toysae.train_sae("relu", data, toysae.TrainConfig(n_samples=200_000), width=512)
    toysae.metrics.mmcs(data.features, result.sae.dictionary)
    toysae.check_sae(result.sae, data.sample(2000, seed=1).x, lam=result.config.sparsity_coef)

Subpackages: ``toysae.data`` (ground truth), ``toysae.sae`` (SAEs and the
training engine), ``toysae.dictlearn`` (classical solvers), ``toysae.metrics``,
``toysae.theory`` (optimality checks), ``toysae.experiments``.
"""

from toysae import metrics
from toysae.data import Batch, SyntheticConfig, SyntheticData
from toysae.dictlearn import DictionaryLearner, sparse_code
from toysae.objective import dictionary_objective
from toysae.sae import TrainConfig, TrainResult, make_sae, train_grid, train_sae
from toysae.theory import check_optimality, check_sae

__version__ = "0.1.0"
__all__ = ["Batch", "DictionaryLearner", "SyntheticConfig", "SyntheticData", "TrainConfig",
           "TrainResult", "check_optimality", "check_sae", "dictionary_objective", "make_sae",
           "metrics", "sparse_code", "train_grid", "train_sae"]
