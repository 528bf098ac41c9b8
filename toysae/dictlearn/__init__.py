"""Classical dictionary learning: sparse coding, dictionary updates, baselines.

- :func:`sparse_code`: codes for a fixed dictionary (fista, ista, omp, cvxpy),
  a :class:`SparseCodeResult`;
- :class:`DictionaryLearner`: alternating coding and updates (bcd, mod, ksvd), a
  scikit-learn transformer;
- :func:`pca_dictionary`, :func:`ica_dictionary`, :func:`kmeans_dictionary`:
  scikit-learn baselines in the (n_atoms, d) unit-row layout.

The batched solvers behind both are the subpackage :mod:`toysae.dictlearn.lasso`.
``History`` is the package's one :class:`toysae._result.History`; ``Workspace``
(:mod:`toysae._buffers`) holds the scratch buffers a caller reuses across calls.
"""

from toysae._buffers import Workspace
from toysae._result import History
from toysae.dictlearn.baselines import ica_dictionary, kmeans_dictionary, pca_dictionary
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
    "Workspace",
    "ica_dictionary",
    "kkt_gap",
    "kmeans_dictionary",
    "pca_dictionary",
    "sparse_code",
]
