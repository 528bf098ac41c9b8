"""``toysae.theory.support``: nested supports from one pass in any chunking, and the code
lookup that reads each chunk exactly."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from theory_helpers import LAM, messy_state

from toysae._tuning import CHECK_CHUNK_ENTRIES
from toysae.theory import hierarchy_certificate
from toysae.theory.support import NestingTracker, lookup


@pytest.mark.parametrize("rows", [1, 7, 300])
def test_nested_supports_from_one_pass_in_any_chunking(rows):
    X, D, Z = messy_state(4, nonneg=False)
    Z[:5, 0] = 0.0  # atoms first seen in different chunks
    Zs = sp.csr_matrix(Z)
    tracker = NestingTracker(Z.shape[1])
    for start in range(0, len(Z), rows):
        tracker.add(Zs[start:start + rows])
    on = Z != 0
    expect = sorted((i, j) for i in range(Z.shape[1]) for j in range(Z.shape[1])
                    if i != j and on[:, i].any() and (on[on[:, i], j]).all())
    assert [tuple(map(int, p)) for p in tracker.pairs()] == expect
    for (i, j), ratio, sign in zip(tracker.pairs(), tracker.ratio, tracker.sign, strict=True):
        rows_i = on[:, i]
        assert ratio == (np.abs(Z[rows_i, j]) / np.abs(Z[rows_i, i])).min()
        signs = np.sign(Z[rows_i, i] * Z[rows_i, j])
        assert sign == (signs[0] if (signs == signs[0]).all() else 0)
    rep = hierarchy_certificate(X, D, Z, LAM, nonneg=False)
    assert rep.n_nested == len(expect)


@pytest.mark.parametrize("shape", [(64, 50), (3000, 2000)])  # the dense and the search paths
def test_code_lookup_reads_each_chunk_exactly_and_leaves_its_kept_block_zero(shape):
    rng = np.random.default_rng(0)
    scratch: dict = {}
    for seed in range(4):  # chunks of different patterns reuse one block
        Z = sp.random(*shape, density=0.02, format="csr", random_state=seed)
        Z.sort_indices()
        rows = rng.integers(0, shape[0], 500)
        cols = rng.integers(0, shape[1], 500)
        rows[:20], cols[:20] = Z.nonzero()[0][:20], Z.nonzero()[1][:20]  # some hits
        want = Z.toarray()[rows, cols]
        np.testing.assert_array_equal(lookup(Z, rows, cols, scratch), want)
        np.testing.assert_array_equal(lookup(Z, rows, cols), want)
        assert np.count_nonzero(want) >= 20
    if "lookup" in scratch:
        with pytest.raises(IndexError):  # a query off the matrix
            lookup(Z, np.array([shape[0] + 5]), np.array([0]), scratch)
        assert not scratch["lookup"].any()
    assert ("lookup" in scratch) == (shape[0] * shape[1] <= CHECK_CHUNK_ENTRIES)
