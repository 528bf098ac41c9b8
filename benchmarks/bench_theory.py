"""Speed of the optimality checkers on the reference toy: 100,000 samples x 512 atoms.

Run: ``flock /tmp/toysae-bench.lock .venv/bin/python benchmarks/bench_theory.py``
(``--n`` to change the sample count). Data and codes are the reference toy's
ground truth (d=256, 512 features, ~5 active per sample; `SyntheticConfig()`), the
dictionary its true features, lam = 0.1: a realistic sparse Z. Prints, per
checker, our time, the 60 s target and two references measured in the same
run: one float64 ``X^T X`` (n x 256) as the machine's rate, and a naive
per-pair loop over dense columns timed on a few pairs and extrapolated to
all 512 * 511 ordered pairs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp

from toysae.data import SyntheticConfig, SyntheticData
from toysae.theory import (
    atom_stationarity,
    check_optimality,
    code_kkt,
    hierarchy_certificate,
    pair_conditions,
)

TARGET_S = 60.0


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _naive_pairs(X, D, Z, lam, pairs):
    """One pair at a time on dense columns: what a direct transcription of the maths costs."""
    R = X - Z @ D
    for i, j in pairs:
        on = Z[:, i] > 0
        s_j = (R[on] @ D[j]) / lam
        w = Z[on, i]
        _ = (w @ s_j, s_j.min(), s_j.max(), w[Z[on, j] > 0].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--naive-pairs", type=int, default=300)
    parser.add_argument("--planted", type=int, default=64, help="planted parent/child pairs")
    args = parser.parse_args()
    lam = 0.1
    data = SyntheticData(SyntheticConfig(seed=0))
    batch = data.sample(args.n, seed=1)
    X = batch.x.astype(np.float64)
    D = data.features.astype(np.float64)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    Zs = sp.csr_matrix(batch.codes.astype(np.float64))
    k = D.shape[0]
    print(f"n={args.n} d={X.shape[1]} atoms={k} nnz(Z)={Zs.nnz} "
          f"(mean L0 {Zs.nnz / args.n:.2f}), lam={lam}")

    _, t_matmul = _timed(lambda: X.T @ X)
    rng = np.random.default_rng(0)
    some = rng.choice(k, size=(args.naive_pairs, 2))
    some = some[some[:, 0] != some[:, 1]]
    Zd = Zs.toarray()
    _, t_few = _timed(_naive_pairs, X, D, Zd, lam, some)
    t_naive = t_few / len(some) * k * (k - 1)
    del Zd

    rows = []
    for name, fn, kwargs in [
        ("code_kkt", code_kkt, {}),
        ("atom_stationarity", atom_stationarity, {}),
        ("pair_conditions (all pairs)", pair_conditions, {}),
        ("hierarchy_certificate", hierarchy_certificate, {}),
        ("check_optimality (everything)", check_optimality, {}),
    ]:
        out, t = _timed(fn, X, D, Zs, lam, **kwargs)
        rows.append((name, t))
    report = out
    # the same toy with planted parent/child pairs: many nested supports to certify
    planted = tuple((i, 256 + i) for i in range(args.planted))
    hdata = SyntheticData(SyntheticConfig(hierarchy=planted, seed=0))
    hbatch = hdata.sample(args.n, seed=1)
    Zh = sp.csr_matrix(hbatch.codes.astype(np.float64))
    Dh = hdata.features.astype(np.float64)
    Dh /= np.linalg.norm(Dh, axis=1, keepdims=True)
    hier, t = _timed(hierarchy_certificate, hbatch.x.astype(np.float64), Dh, Zh, lam)
    rows.append((f"hierarchy_certificate ({args.planted} planted)", t))
    print()
    print(f"{'checker':38s} {'ours (s)':>9s} {'target (s)':>10s} {'ours/target':>11s} "
          f"{'naive (s)':>10s} {'naive/ours':>10s} {'ours/matmul':>11s}")
    for name, t in rows:
        naive = f"{t_naive:10.1f}" if "pair" in name or "everything" in name else f"{'-':>10s}"
        ratio = f"{t_naive / t:10.1f}" if naive.strip() != "-" else f"{'-':>10s}"
        print(f"{name:38s} {t:9.2f} {TARGET_S:10.0f} {t / TARGET_S:11.3f} {naive} {ratio} "
              f"{t / t_matmul:11.0f}")
    print(f"\nreference: float64 X^T X ({args.n} x {X.shape[1]}) = {t_matmul:.3f} s; naive "
          f"per-pair loop {t_few:.2f} s for {len(some)} pairs -> {t_naive:.0f} s extrapolated "
          f"to {k * (k - 1)} pairs")
    print(f"planted hierarchies: {hier.n_nested} nested pairs, {hier.n_candidates} with a "
          f"positive drop, {hier.n_certified} verified (max_steps=200)")
    print("\n" + report.message)


if __name__ == "__main__":
    main()
