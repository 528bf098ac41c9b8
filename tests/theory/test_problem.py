"""``toysae.theory.problem``: the checks every checker makes of ``(X, D, Z, lam)`` before
any work, each naming its argument, and the scratch rows the chunked passes reuse."""

from __future__ import annotations

import numpy as np
import pytest
from theory_helpers import LAM

from toysae.theory import (
    atom_stationarity,
    check_optimality,
    code_kkt,
    hierarchy_certificate,
    pair_conditions,
)

# --- bad input ----------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [code_kkt, atom_stationarity, pair_conditions,
                                hierarchy_certificate, check_optimality])
def test_bad_input_is_refused_with_the_argument_named(fn, learned):
    X, D, Z = learned
    with pytest.raises(ValueError, match="lam"):
        fn(X, D, Z, 0.0)
    with pytest.raises(ValueError, match="lam"):
        fn(X, D, Z, -1.0)
    with pytest.raises(ValueError, match="D has 2 columns but X has 3"):
        fn(X, D[:, :2], Z, LAM)
    with pytest.raises(ValueError, match=r"Z must have shape"):
        fn(X, D, Z[:, :2], LAM)
    with pytest.raises(ValueError, match=r"Z must have shape"):
        fn(X, D, Z[:5], LAM)
    Zneg = Z.copy()
    Zneg[0, 0] = -0.5
    with pytest.raises(ValueError, match="negative code"):
        fn(X, D, Zneg, LAM)
    Xnan = X.copy()
    Xnan[1, 1] = np.nan
    with pytest.raises(ValueError, match="X contains 1 NaN"):
        fn(Xnan, D, Z, LAM)
    Dinf = D.copy()
    Dinf[0, 0] = np.inf
    with pytest.raises(ValueError, match="D contains 1 NaN or Inf"):
        fn(X, Dinf, Z, LAM)
    with pytest.raises(ValueError, match=r"row 2 has norm 1\.5 \(off by 0\.5\)"):
        fn(X, D * np.array([[1], [1], [1.5], [1]]), Z, LAM)
    with pytest.raises(ValueError, match=r"pass normalize=True to rescale rows and code"):
        fn(X, D * 1.01, Z, LAM)
    Dzero = D.copy()
    Dzero[1] = 0.0
    for normalize in (False, True):
        with pytest.raises(ValueError, match=r"D has 1 zero row\(s\) \(first: row 1\)"):
            fn(X, Dzero, Z, LAM, normalize=normalize)
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\), got \(2,\)"):
        fn(X, D, Z, LAM, bias=np.zeros(2))


def test_scratch_rows_reuses_one_buffer_and_hands_out_its_leading_rows():
    from toysae.theory.problem import scratch_rows

    store: dict = {}
    a = scratch_rows(store, "s", 8, 5)
    b = scratch_rows(store, "s", 3, 5)  # a smaller chunk: the leading rows, same memory
    assert a.shape == (8, 5) and b.shape == (3, 5) and b.flags.c_contiguous
    assert np.shares_memory(a, b) and b.__array_interface__["data"] == a.__array_interface__["data"]
    c = scratch_rows(store, "s", 9, 5)  # more rows than kept: a new, larger buffer
    assert c.shape == (9, 5) and not np.shares_memory(a, c)
    assert scratch_rows(store, "s", 2, 4).shape == (2, 4)  # another width: new
    assert scratch_rows(store, "m", 2, 4, dtype=bool).dtype == bool
