"""toysae: a laboratory for sparse autoencoders and dictionary learning on toy data.

Subpackages: ``toysae.data`` (ground truth), ``toysae.sae`` (SAEs),
``toysae.dictlearn`` (classical solvers), ``toysae.metrics``, ``toysae.theory``
(optimality checks), ``toysae.experiments``.
"""

from toysae.data import Batch, SyntheticConfig, SyntheticData
from toysae.objective import dictionary_objective

__version__ = "0.1.0"
__all__ = ["Batch", "SyntheticConfig", "SyntheticData", "dictionary_objective"]
