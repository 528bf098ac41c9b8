"""Target-L0 training (``TrainConfig(target_l0=...)``, ``toysae.sae.l0_control``): what the
controller costs per step, and how many samples it takes to settle within 3%.

Run: ``flock /tmp/toysae-bench.lock .venv/bin/python benchmarks/bench_l0_control.py``
(``--worlds reference`` for one world; ``--samples`` sets the budget).

Worlds, each divided by its training set's sqrt(mean ||x||^2) as the experiments do:
the reference toy (d 32, 64 features, L0 ~5; width 64, target 5) and synth_small
(d 256, 2,048 features, true L0 10.6; width 256, target 11). Every architecture with a
penalty trains from the same low start (L1 0.03, L0 weight 0.001: the L0 starts several
times too high) at batch 256, lr 3e-3.

Rows, all measured in this run, one thread:

- settle: the first sample count from which the held-out L0 (8,192 samples, every 10
  steps) stays within 3% of the target to the end; final: the held-out L0's error at
  the end;
- cost: seconds per step of a controlled run against an uncontrolled run of the same
  SAE at the coefficient the controller ended at (the reference), and their ratio; each
  the best of two runs of ``--cost-samples`` samples, with no callback (the held-out
  probe of the settling run is not timed).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from toysae._threads import torch_threads
from toysae.data import SyntheticConfig, SyntheticData
from toysae.sae import ARCHITECTURES, Callback, TrainConfig, start_coef, train_sae

WORLDS = {"reference": (SyntheticConfig, 64, 5.0), "synth_small": (SyntheticConfig.synth_small,
                                                                   256, 11.0)}
TOLERANCE = 0.03


class HeldOutL0(Callback):
    """Records (samples, held-out L0) every ``every`` steps."""

    def __init__(self, X: np.ndarray, every: int):
        self.X, self.every, self.points = torch.from_numpy(X), every, []

    def on_step(self, state):
        if state.step % self.every == 0:
            sae = state.member(0)
            with torch.no_grad():
                l0 = float((sae.encode(self.X) != 0).sum(1).double().mean())
            self.points.append((state.n_samples, l0))


def unit_scale(data: SyntheticData, n: int) -> tuple[np.ndarray, np.ndarray]:
    X = data.sample(n, seed=11).x.astype(np.float64)
    scale = math.sqrt(float((X ** 2).sum(1).mean()))
    held = data.sample(8192, seed=12).x
    return (X / scale).astype(np.float32), (held / scale).astype(np.float32)


def seconds_per_step(name: str, X: np.ndarray, config: TrainConfig, width: int) -> float:
    start = time.perf_counter()
    result = train_sae(name, X, config, width=width, progress=False)
    return (time.perf_counter() - start) / result.n_iter


def settled_at(points, target: float) -> int | None:
    """First sample count from which every later point is within TOLERANCE."""
    at = None
    for samples, l0 in points:
        if abs(l0 / target - 1) <= TOLERANCE:
            at = samples if at is None else at
        else:
            at = None
    return at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", nargs="+", default=list(WORLDS), choices=list(WORLDS))
    parser.add_argument("--samples", type=int, default=500_000)
    parser.add_argument("--cost-samples", type=int, default=100_000,
                        help="samples of each timed run (best of two)")
    args = parser.parse_args()
    names = [n for n, cls in ARCHITECTURES.items() if cls.penalty_kind != "none"]
    print(f"{'world':<12} {'arch':<9} {'settle (samples)':>16} {'final err':>9} "
          f"{'ours s/step':>11} {'ref s/step':>10} {'ratio':>6}")
    for world in args.worlds:
        make_config, width, target = WORLDS[world]
        X, held = unit_scale(SyntheticData(make_config()), 65_536)
        for name in names:
            config = TrainConfig(n_samples=args.samples, batch_size=256, lr=3e-3,
                                 target_l0=target,
                                 sparsity_coef=start_coef(ARCHITECTURES[name].penalty_kind))
            probe = HeldOutL0(held, every=10)
            with torch_threads(1):
                result = train_sae(name, X, config, width=width, callbacks=[probe],
                                   progress=False)
                fixed = config.replace(target_l0=None, sparsity_coef=result.final_sparsity_coef)
                timed = config.replace(n_samples=args.cost_samples)
                ours = min(seconds_per_step(name, X, timed, width) for _ in range(2))
                ref = min(seconds_per_step(name, X, fixed.replace(n_samples=args.cost_samples),
                                           width) for _ in range(2))
            with torch.no_grad():
                final = float((result.sae.encode(torch.from_numpy(held)) != 0).sum(1)
                              .double().mean()) / target - 1
            settle = settled_at(probe.points, target)
            print(f"{world:<12} {name:<9} {settle if settle is not None else 'never':>16} "
                  f"{final:>+9.1%} {ours:>11.2e} {ref:>10.2e} {ours / ref:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
