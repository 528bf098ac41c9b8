"""Cost of an end-to-end SAE step against a local one, inside the residual toy.

    flock /tmp/toysae-bench.lock .venv/bin/python benchmarks/bench_e2e.py [--width 96]

One SAE trained by the real engine (``train_sae`` with a
``toysae.models.SiteObjective``) on a pre-sampled pool of host inputs, so data
generation is not timed; each figure is the best of ``--rounds`` runs, modes
interleaved. The reference is the local step measured in the same run: the
ratio says how much one e2e (KL through the frozen host) or e2e_ds (plus the
later sites' MSE) step costs against it. Both sites are measured.
"""

from __future__ import annotations

import argparse
import time

import torch

from toysae.models import MODES, ResidualToy, ResidualToyConfig, SiteObjective
from toysae.sae import ReLUSAE, TrainConfig, train_sae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    host = ResidualToy(ResidualToyConfig())
    host.fit()
    B = args.batch
    pool = torch.from_numpy(host.data.sample(32 * B, seed=0).x).split(B)

    def batches(n):
        for i in range(n):
            yield pool[i % len(pool)]

    def run(site: str, mode: str) -> float:
        sae = ReLUSAE(host.site_width(site), args.width, seed=0)
        cfg = TrainConfig(n_samples=args.steps * B, batch_size=B, lr=3e-3, log_every=100)
        objective = SiteObjective(host, site, mode)
        start = time.perf_counter()
        train_sae(sae, batches(args.steps), cfg, objective=objective, progress=False)
        return args.steps * B / (time.perf_counter() - start)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; host d={host.input_dim}, "
          f"MLP {host.config.hidden}, {host.config.n_classes} classes; SAE width {args.width}, "
          f"batch {B}, {args.steps} steps, best of {args.rounds}")
    print(f"{'site':10s} {'mode':8s} {'samples/s':>12s} {'local samples/s':>16s} "
          f"{'step cost vs local':>19s}")
    for site in ("resid_pre", "mlp_post"):
        run(site, "local")  # warm-up
        best = {mode: 0.0 for mode in MODES}
        for _ in range(args.rounds):
            for mode in MODES:
                best[mode] = max(best[mode], run(site, mode))
        for mode in MODES:
            print(f"{site:10s} {mode:8s} {best[mode]:12.0f} {best['local']:16.0f} "
                  f"{best['local'] / best[mode]:18.2f}x")


if __name__ == "__main__":
    main()
