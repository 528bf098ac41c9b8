"""Training throughput of the default ReLU SAE against the machine's float32 matmul rate.

Width 1024, batch 1024, on the reference toy (d=256). The SAE is trained by
the real ``train_sae`` (default TrainConfig except batch size and sample
count) on a pre-generated pool of batches, so data generation is not timed.
A step is counted as 12 * d * width FLOPs per sample (the issue's convention;
the hand-written step does 5 matmuls = 10 * d * width). The reference is the
best float32 matmul rate measured in the same run: the five matmul shapes of a
step, and a large square product. A second row trains the same SAE with its
forward pass in plain autograd ops (``ReLUSAE.reference_forward``) instead of the
hand-written ``autograd.Function``: the fused backward is kept only while that
row shows it pays.

    flock /tmp/toysae-bench.lock .venv/bin/python benchmarks/bench_sae.py
"""

from __future__ import annotations

import argparse
import time

import torch

from toysae.data import SyntheticConfig, SyntheticData
from toysae.sae import ReLUSAE, TrainConfig, train_sae


def matmul_rate(shapes, repeats: int) -> float:
    """FLOP/s of running the (m, k) @ (k, n) products in ``shapes`` back to back."""
    pairs = [(torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)) for m, k, n in shapes]
    flops = sum(2 * m * k * n for m, k, n in shapes)
    for a, b, out in pairs:
        torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            for a, b, out in pairs:
                torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return flops * repeats / best


class PlainAutogradReLU(ReLUSAE):
    """The ReLU SAE with autograd's own backward (the fused Function's reference)."""

    def forward(self, x):
        return self.reference_forward(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    d, width, B = 256, args.width, args.batch
    data = SyntheticData(SyntheticConfig(correlation="none"))
    pool = torch.from_numpy(data.sample(32 * B, seed=0).x).split(B)

    def batches(n):
        for i in range(n):
            yield pool[i % len(pool)]

    def run(steps, cls=ReLUSAE):
        cfg = TrainConfig(batch_size=B, n_samples=steps * B, log_every=50)
        sae = cls(d, width, seed=0)
        start = time.perf_counter()
        train_sae(sae, batches(steps), cfg, progress=False)
        return time.perf_counter() - start

    # Interleave training and reference rounds and keep the best of each, so a burst
    # of load from other processes on a shared machine hits both sides alike.
    step_shapes = [(B, d, width), (B, width, d), (width, B, d), (B, d, width), (d, B, width)]
    run(20)  # warm-up: allocator, thread pool, Adam state
    seconds, plain, same_shapes, square = float("inf"), float("inf"), 0.0, 0.0
    for _ in range(args.rounds):
        seconds = min(seconds, run(args.steps))
        plain = min(plain, run(args.steps, PlainAutogradReLU))
        same_shapes = max(same_shapes, matmul_rate(step_shapes, repeats=10))
        square = max(square, matmul_rate([(2048, 2048, 2048)], repeats=3))
    samples_per_s = args.steps * B / seconds
    ours = samples_per_s * 12 * d * width
    roofline = max(same_shapes, square)

    print(f"ReLU SAE training, d={d}, width={width}, batch={B}, {args.steps} steps, "
          f"torch threads={torch.get_num_threads()}")
    print(f"{'quantity':44s} {'ours':>12s} {'reference':>12s} {'ratio':>7s}")
    print(f"{'training samples/s':44s} {samples_per_s:12.0f} {roofline / (12 * d * width):12.0f} "
          f"{ours / roofline:7.3f}")
    print(f"{'GFLOP/s (12*d*width per sample) vs roofline':44s} {ours / 1e9:12.1f} "
          f"{roofline / 1e9:12.1f} {ours / roofline:7.3f}")
    print(f"{'samples/s: fused backward vs plain autograd':44s} {samples_per_s:12.0f} "
          f"{args.steps * B / plain:12.0f} {plain / seconds:7.3f}")
    print(f"{'matmul GFLOP/s: step shapes vs 2048^3':44s} {same_shapes / 1e9:12.1f} "
          f"{square / 1e9:12.1f} {same_shapes / square:7.3f}")
    print(f"target: FLOP efficiency >= 0.70 of the roofline -> "
          f"{'met' if ours >= 0.7 * roofline else 'NOT met'} ({ours / roofline:.1%})")


if __name__ == "__main__":
    main()
