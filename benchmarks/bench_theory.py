"""Speed of the optimality checkers: 100,000 samples x 512, 4,096 and 16,384 atoms.

Run: ``flock /tmp/toysae-bench.lock .venv/bin/python benchmarks/bench_theory.py``
(``--n`` to change the sample count, ``--large 4096`` for one large row only,
``--skip-small`` to leave out the 512-atom table).

Reference toy (512 atoms): data and codes are its ground truth (d=256, ~5 active
per sample; ``SyntheticConfig()``), the dictionary its true features, lam = 0.1: a
realistic sparse Z. Prints, per checker, our time, the 60 s target and two
references measured in the same run: one float64 ``X^T X`` (n x 256) as the
machine's rate, and a naive per-pair loop over dense columns timed on a few pairs
and extrapolated to all 512 * 511 ordered pairs.

Large dictionaries: 4,096 atoms on the CPU-sized hierarchical world
(``SyntheticConfig.synth_small(n_features=4096)``, d = 256, L0 ~ 18) and 16,384 on
SynthSAEBench-16k (``SyntheticConfig.synth_sae_bench()``, d = 768, L0 ~ 34). The
dictionary is the true features and the codes the true codes soft-thresholded by
lam = 0.1 (what the optimal codes are to first order; solving the exact ones takes
far longer than checking them). ``check_optimality`` runs with its default
``pairs="auto"``, i.e. the candidate pairs (docs/theory.md, "Large dictionaries");
the row prints its time, the 60 s target (set for 4,096 atoms), the peak traced
memory beside one (n_atoms, n_atoms) float64 matrix, and two references from the
same run: the all-pairs check (``pairs="all"``) on the first ``--reference-n``
samples, against ours on the same samples (at 16,384 atoms its ~25 matrices of
2.1 GB do not fit: not run), and the naive per-pair loop extrapolated to every
ordered pair at the full sample count.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

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
LAM = 0.1
#: The all-pairs reference holds about 25 (n_atoms, n_atoms) float64 arrays.
ALL_PAIRS_REFERENCE_MAX_ATOMS = 4096


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _naive_pairs(X, D, Zc, lam, pairs):
    """One pair at a time over atom i's samples: what a direct transcription of the maths
    costs (``Zc`` the codes in CSC form, so the support of an atom is a slice)."""
    R = X - Zc @ D
    for i, j in pairs:
        rows = Zc.indices[Zc.indptr[i]:Zc.indptr[i + 1]]
        if rows.size == 0:
            continue
        w = Zc.data[Zc.indptr[i]:Zc.indptr[i + 1]]
        s_j = (R[rows] @ D[j]) / lam
        co = np.isin(rows, Zc.indices[Zc.indptr[j]:Zc.indptr[j + 1]])
        _ = (w @ s_j, s_j.min(), s_j.max(), w[co].sum())


def _naive_seconds(X, D, Zs, n_pairs: int) -> float:
    """The naive loop timed on ``n_pairs`` random pairs, extrapolated to all ordered pairs."""
    k = D.shape[0]
    rng = np.random.default_rng(0)
    some = rng.choice(k, size=(n_pairs, 2))
    some = some[some[:, 0] != some[:, 1]]
    Zc = sp.csc_matrix(Zs)
    Zc.sort_indices()
    _, t_few = _timed(_naive_pairs, X, D, Zc, LAM, some)
    return t_few / len(some) * k * (k - 1)


def small_table(args) -> None:
    data = SyntheticData(SyntheticConfig(seed=0))
    batch = data.sample(args.n, seed=1)
    X = batch.x.astype(np.float64)
    D = data.features.astype(np.float64)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    Zs = sp.csr_matrix(batch.codes.astype(np.float64))
    k = D.shape[0]
    print(f"n={args.n} d={X.shape[1]} atoms={k} nnz(Z)={Zs.nnz} "
          f"(mean L0 {Zs.nnz / args.n:.2f}), lam={LAM}")

    _, t_matmul = _timed(lambda: X.T @ X)
    t_naive = _naive_seconds(X, D, Zs, args.naive_pairs)

    rows = []
    for name, fn, kwargs in [
        ("code_kkt", code_kkt, {}),
        ("atom_stationarity", atom_stationarity, {}),
        ("pair_conditions (all pairs)", pair_conditions, {"pairs": "all"}),
        ("hierarchy_certificate", hierarchy_certificate, {}),
        ("check_optimality (everything)", check_optimality, {}),
    ]:
        out, t = _timed(fn, X, D, Zs, LAM, **kwargs)
        rows.append((name, t))
    report = out
    # the same toy with planted parent/child pairs: many nested supports to certify
    planted = tuple((i, 256 + i) for i in range(args.planted))
    hdata = SyntheticData(SyntheticConfig(hierarchy=planted, seed=0))
    hbatch = hdata.sample(args.n, seed=1)
    Zh = sp.csr_matrix(hbatch.codes.astype(np.float64))
    Dh = hdata.features.astype(np.float64)
    Dh /= np.linalg.norm(Dh, axis=1, keepdims=True)
    hier, t = _timed(hierarchy_certificate, hbatch.x.astype(np.float64), Dh, Zh, LAM)
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
          f"per-pair loop extrapolated to {k * (k - 1)} pairs")
    print(f"planted hierarchies: {hier.n_nested} nested pairs, {hier.n_candidates} with a "
          f"positive drop, {hier.n_certified} verified (max_steps=200)")
    print("\n" + report.message)


def _large_world(n_atoms: int, n: int):
    """(X, D, Z): the true dictionary and the true codes soft-thresholded by lam."""
    if n_atoms == 16384:
        config = SyntheticConfig.synth_sae_bench(seed=0)
    else:
        config = SyntheticConfig.synth_small(n_features=n_atoms, seed=0)
    data = SyntheticData(config)
    X, codes = [], []
    for start in range(0, n, 4096):  # the 16k world holds dense 16,384-wide chunks
        batch = data.sample(min(4096, n - start), seed=1 + start // 4096)
        X.append(batch.x.astype(np.float64))
        codes.append(sp.csr_matrix(batch.codes.astype(np.float64)))
    Z = sp.vstack(codes, format="csr")
    Z.data = np.maximum(Z.data - LAM, 0.0)
    Z.eliminate_zeros()
    D = data.features.astype(np.float64)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    return np.concatenate(X), D, Z


def _traced(fn, *args, **kwargs):
    """(result, seconds, peak traced bytes) of one call."""
    tracemalloc.start()
    out, t = _timed(fn, *args, **kwargs)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, t, peak


def large_rows(args) -> None:
    header = (f"{'atoms':>6s} {'d':>4s} {'L0':>5s} {'ours (s)':>9s} {'target':>7s} "
              f"{'peak MB':>8s} {'k^2 MB':>7s} {'n ref':>6s} {'ours ref (s)':>12s} "
              f"{'all-pairs (s)':>13s} {'all/ours':>8s} {'naive (s)':>10s} {'naive/ours':>10s}")
    lines, messages = [], []
    for k in args.large:
        start = time.perf_counter()
        X, D, Z = _large_world(k, args.n)
        print(f"{k} atoms: {args.n} samples generated in {time.perf_counter() - start:.0f} s")
        rep, t, peak = _traced(check_optimality, X, D, Z, LAM)
        n_ref = min(args.reference_n, args.n)
        Xr, Zr = X[:n_ref], Z[:n_ref]
        _, t_ours_ref = _timed(check_optimality, Xr, D, Zr, LAM)
        if k <= ALL_PAIRS_REFERENCE_MAX_ATOMS:
            _, t_all = _timed(check_optimality, Xr, D, Zr, LAM, pairs="all")
            all_cols = f"{t_all:13.1f} {t_all / t_ours_ref:8.1f}"
        else:
            all_cols = f"{'(no room)':>13s} {'-':>8s}"
        t_naive = _naive_seconds(X, D, Z, args.naive_pairs) if args.naive_pairs else None
        naive_cols = (f"{t_naive:10.0f} {t_naive / t:10.0f}" if t_naive is not None
                      else f"{'-':>10s} {'-':>10s}")
        lines.append(f"{k:6d} {X.shape[1]:4d} {Z.nnz / args.n:5.1f} {t:9.1f} {TARGET_S:7.0f} "
                     f"{peak / 1e6:8.0f} {k * k * 8 / 1e6:7.0f} {n_ref:6d} {t_ours_ref:12.2f} "
                     f"{all_cols} {naive_cols}")
        pairs = rep.pairs
        messages.append(f"{k} atoms: {pairs.n_violations} of {pairs.n_pairs_checked} pairs "
                        f"fail the identity; records for {len(pairs.pairs)} "
                        f"({'every violator' if pairs.complete else 'the largest violators'} "
                        f"and {pairs.n_nested} nested pairs)\n{rep.message}")
        del X, D, Z
    print(f"\ncheck_optimality, {args.n} samples, candidate pairs (lam={LAM})")
    print(header)
    print("\n".join(lines))
    print("\n" + "\n\n".join(messages))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--naive-pairs", type=int, default=300)
    parser.add_argument("--planted", type=int, default=64, help="planted parent/child pairs")
    parser.add_argument("--large", type=lambda s: [int(v) for v in s.split(",") if v],
                        default=[4096, 16384], help="atoms of the large rows (comma list; "
                        "16384 is SynthSAEBench-16k, others synth_small)")
    parser.add_argument("--reference-n", type=int, default=2000,
                        help="samples of the all-pairs reference at large sizes")
    parser.add_argument("--skip-small", action="store_true", help="no 512-atom table")
    args = parser.parse_args()
    if not args.skip_small:
        small_table(args)
    if args.large:
        large_rows(args)


if __name__ == "__main__":
    main()
