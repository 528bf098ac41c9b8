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

``DictionaryLearner`` is imported when first used: its class derives from
scikit-learn's estimator classes, and importing scikit-learn costs more than half
a second that ``sparse_code`` (which ``toysae.theory`` re-solves codes with) does
not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from toysae._buffers import Workspace
from toysae._result import History
from toysae.dictlearn.baselines import ica_dictionary, kmeans_dictionary, pca_dictionary
from toysae.dictlearn.sparse_coding import (
    ConvergenceWarning,
    SparseCodeResult,
    kkt_gap,
    sparse_code,
)

if TYPE_CHECKING:
    from toysae.dictlearn.learner import DictionaryLearner


def __getattr__(name: str):
    if name == "DictionaryLearner":
        from toysae.dictlearn.learner import DictionaryLearner

        globals()[name] = DictionaryLearner  # later look-ups skip this function
        return DictionaryLearner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"DictionaryLearner"})


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
