"""Classical dictionary learning: sparse coding, dictionary updates, baselines."""

from toysae.dictlearn.sparse_coding import (
    ConvergenceWarning,
    SparseCodeResult,
    kkt_gap,
    sparse_code,
)

__all__ = ["ConvergenceWarning", "SparseCodeResult", "kkt_gap", "sparse_code"]
