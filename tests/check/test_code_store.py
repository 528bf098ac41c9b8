"""``toysae.check._code_store``: the on-disk store of sparse codes gives back the rows it was
given, in any slice, and removes its folder when closed."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from toysae.check._code_store import CodeStore


def test_code_store_gives_back_the_rows_it_was_given(tmp_path):
    rng = np.random.default_rng(0)
    Z = sp.random(300, 40, density=0.1, format="csr", random_state=1)
    with CodeStore(300, 40, tmp_path) as store:
        for start in (0, 7, 100, 250):
            stop = {0: 7, 7: 100, 100: 250, 250: 300}[start]
            store.append(Z[start:stop])
        root = store.root
        for a, b in [(0, 300), (5, 6), (99, 251), (299, 300), *rng.integers(0, 300, (5, 2))]:
            a, b = sorted((int(a), int(b)))
            assert (store[a:b] != Z[a:b]).nnz == 0
    assert not root.exists()
