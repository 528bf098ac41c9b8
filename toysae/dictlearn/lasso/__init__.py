"""The batched lasso solvers behind ``sparse_code`` and ``DictionaryLearner``, in torch.

Every solver works on the Gram form of one sample's problem, ``min_z 1/2 z G z^T - c z^T +
lam ||z||_1`` (``z >= 0`` when nonneg) with ``C = X D^T`` (n, n_atoms) and ``G = D D^T``
(n_atoms, n_atoms), every row of ``C`` at once. Arguments are trusted: the callers
(:mod:`toysae.dictlearn.sparse_coding`, :mod:`toysae.dictlearn.learner`) validate them.

Outside (what the rest of toysae imports, from this package only):

- :func:`solve_lasso`: dense FISTA/ISTA for small dictionaries, the working-set method for
  large ones; a :class:`LassoOutput`;
- :func:`mixed_precision_lasso`: a float64 solve whose supports are searched in float32;
- :func:`omp`: orthogonal matching pursuit, an :class:`OmpOutput`;
- :func:`cvxpy_code`: the exact reference, one cvxpy problem per sample, and ``OPTIMAL``,
  the statuses that count as solved; imported on first use (cvxpy is slow to import and
  only the reference path needs it);
- :func:`kkt_violation` (per-sample code KKT gap), :func:`sparse_times` (``z @ M`` for
  mostly-zero codes), :func:`set_times` (``z @ M`` for codes on index sets).

Inside (private modules, imported only by each other and by the tests):
``_fista`` (the dense proximal-gradient solver, ``LassoOutput``), ``_sets`` (the
algebra of codes on per-sample index sets: exact refits on a support, products, the KKT
gap on a set), ``_working_set`` (the active-set method and ``solve_lasso``),
``_mixed_precision`` (search in float32, polish and finish in float64), ``_omp``,
``_cvxpy_solver``.
"""

from toysae.dictlearn.lasso._fista import LassoOutput, kkt_violation, sparse_times
from toysae.dictlearn.lasso._mixed_precision import mixed_precision_lasso
from toysae.dictlearn.lasso._omp import OmpOutput, omp
from toysae.dictlearn.lasso._sets import set_times
from toysae.dictlearn.lasso._working_set import solve_lasso

_ON_FIRST_USE = ("OPTIMAL", "CvxpyOutput", "cvxpy_code")


def __getattr__(name: str):
    # PEP 562: the cvxpy reference is imported when first asked for, not with the package.
    if name in _ON_FIRST_USE:
        from toysae.dictlearn.lasso import _cvxpy_solver

        return getattr(_cvxpy_solver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "OPTIMAL",
    "CvxpyOutput",
    "LassoOutput",
    "OmpOutput",
    "cvxpy_code",
    "kkt_violation",
    "mixed_precision_lasso",
    "omp",
    "set_times",
    "solve_lasso",
    "sparse_times",
]
