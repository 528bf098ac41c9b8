"""Generator throughput at the reference config, beside this machine's float32 matmul rate.

    python benchmarks/bench_data.py [--seconds 3]

Reference figures (a widely used toolkit on a 2-core machine, from the issue):
about 5,000 samples/s with a dense correlation matrix and 180,000 samples/s
with a low-rank one. Our targets: >= 100,000/s dense, >= 200,000/s rank 25.
The last row is the SynthSAEBench-16k preset (``SyntheticConfig.synth_sae_bench()``:
16,384 features, d = 768, Zipf rates, exclusive-children trees, rank-25 copula),
sampled in batches of at most 4,096 (its chunks hold dense 16,384-wide arrays);
no reference or target figure is given for it.
"""

from __future__ import annotations

import argparse
import time

import torch

from toysae.data import SyntheticConfig, SyntheticData

REFERENCE = {"none": None, "random": 5_000.0, "low_rank": 180_000.0}
TARGET = {"none": None, "random": 100_000.0, "low_rank": 200_000.0}


def matmul_gflops(seconds: float) -> float:
    """float32 GFLOP/s of a large square matmul, the machine's roofline."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * 2048**3 * n / (time.perf_counter() - start) / 1e9


def samples_per_second(config: SyntheticConfig, batch: int, seconds: float) -> float:
    data = SyntheticData(config)
    data.sample(batch)  # warm-up: allocator, thread pool
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        data.sample(batch)
        n += batch
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=8192)
    args = parser.parse_args()
    gflops = matmul_gflops(args.seconds)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"float32 matmul {gflops:.1f} GFLOP/s; batch {args.batch}")
    print(f"{'correlation':12s} {'ours/s':>10s} {'reference/s':>12s} {'ratio':>7s} "
          f"{'target/s':>10s} {'samples per GFLOP':>18s}")
    rows = [(corr, SyntheticConfig(correlation=corr, correlation_rank=25), args.batch)
            for corr in ("none", "random", "low_rank")]
    rows.append(("synth-16k", SyntheticConfig.synth_sae_bench(), min(args.batch, 4096)))
    for name, config, batch in rows:
        ours = samples_per_second(config, batch, args.seconds)
        ref, target = REFERENCE.get(name), TARGET.get(name)
        ratio = f"{ours / ref:6.1f}x" if ref else "      -"
        print(f"{name:12s} {ours:10,.0f} {ref or float('nan'):12,.0f} {ratio} "
              f"{target or float('nan'):10,.0f} {ours / gflops:18,.0f}")


if __name__ == "__main__":
    main()
