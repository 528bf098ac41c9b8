"""``toysae.check._code_store``: the on-disk store of sparse codes gives back the rows it was
given, in any slice, and removes its folder when closed; a new store removes the stores
that processes killed outright left behind, and no other."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import scipy.sparse as sp

from toysae.check._code_store import CodeStore, _host_digest, remove_orphaned_stores


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


def test_a_new_store_removes_only_the_stores_of_ended_processes(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead, alive, host = int(ended.stdout), os.getpid(), _host_digest()
    other_host = "0" * 8 if host != "0" * 8 else "1" * 8
    names = {"orphan": f"toysae-codes-{dead}-{host}-abc", "live": f"toysae-codes-{alive}-{host}-d",
             "elsewhere": f"toysae-codes-{dead}-{other_host}-e", "unowned": "toysae-codes-xyz",
             "mine": "results"}
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "data").write_bytes(b"half")
    (tmp_path / f"toysae-codes-{dead}-{host}-file").write_text("not a store")
    with CodeStore(3, 2, tmp_path) as store:
        assert store.root.name.startswith(f"toysae-codes-{alive}-{host}-")
        left = {p.name for p in tmp_path.iterdir()} - {store.root.name}
    assert left == {*names.values(), f"toysae-codes-{dead}-{host}-file"} - {names["orphan"]}
    assert remove_orphaned_stores(tmp_path) == []
    assert remove_orphaned_stores(tmp_path / "absent") == []
