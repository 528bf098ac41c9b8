"""Classical dictionary learning: sparse coding, dictionary updates, baselines.

- :func:`sparse_code`: codes for a fixed dictionary (fista, ista, omp, cvxpy);
- :class:`DictionaryLearner`: alternating coding and updates (bcd, mod, ksvd);
- :func:`pca_dictionary`, :func:`ica_dictionary`, :func:`kmeans_dictionary`:
  scikit-learn baselines in the (n_atoms, d) unit-row layout.
"""

from toysae.dictlearn.baselines import ica_dictionary, kmeans_dictionary, pca_dictionary
from toysae.dictlearn.history import History
from toysae.dictlearn.learner import DictionaryLearner
from toysae.dictlearn.sparse_coding import (
    ConvergenceWarning,
    SparseCodeResult,
    kkt_gap,
    sparse_code,
)

__all__ = [
    "ConvergenceWarning",
    "DictionaryLearner",
    "History",
    "SparseCodeResult",
    "ica_dictionary",
    "kkt_gap",
    "kmeans_dictionary",
    "pca_dictionary",
    "sparse_code",
]
