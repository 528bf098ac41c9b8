"""Does the DEFAULT ReLU SAE recover the reference toy's features?

Reference toy, uncorrelated (``SyntheticConfig(correlation="none")``: d=256,
512 features, 5 active on average, magnitudes U[0, 1)), ReLU SAE of width
1024, ``TrainConfig()`` defaults (1,000,000 fresh samples). Targets (issue 3):
MMCS(true -> learned) >= 0.99 with L0 <= 2 x the true L0 (= 10). The L0, dead
count and FVU are measured on 16,384 held-out samples.

    flock /tmp/toysae-bench.lock .venv/bin/python benchmarks/bench_sae_recovery.py [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from toysae.data import SyntheticConfig, SyntheticData
from toysae.metrics import dead_latents, fvu, l0, mmcs
from toysae.sae import TrainConfig, train_sae


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--width", type=int, default=1024)
    args = parser.parse_args()
    print(f"{'seed':>4s} {'MMCS':>7s} {'target':>7s} {'L0':>6s} {'true L0':>7s} {'ratio':>6s} "
          f"{'dead':>5s} {'FVU':>7s} {'wall s':>7s}  verdict")
    for seed in args.seeds:
        data = SyntheticData(SyntheticConfig(correlation="none", seed=seed))
        config = TrainConfig(seed=seed)
        start = time.perf_counter()
        result = train_sae("relu", data, config, width=args.width, sae_kwargs={"seed": seed},
                           progress=False)
        wall = time.perf_counter() - start
        held_out = data.sample(16384, seed=10_000 + seed)
        with torch.no_grad():
            out = result.sae(held_out.x)
        score = mmcs(data.features, result.sae.dictionary)
        true_l0 = l0(held_out.codes)
        learned_l0 = l0(out.codes)
        ok = score >= 0.99 and learned_l0 <= 2 * true_l0
        print(f"{seed:4d} {score:7.4f} {0.99:7.2f} {learned_l0:6.2f} {true_l0:7.2f} "
              f"{learned_l0 / true_l0:6.2f} {int(dead_latents(out.codes).sum()):5d} "
              f"{fvu(held_out.x, out.x_hat):7.4f} {wall:7.1f}  {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
