"""``toysae check`` at scale: 1,000,000 activations x 256-d with a 4,096-latent SAE.

Run: ``flock /tmp/toysae-bench.lock .venv/bin/python benchmarks/bench_check.py``
(smaller: ``--n 20000 --width 1024``; ``--workdir`` keeps the generated files
between runs, default ``/tmp/toysae-bench-check``).

World: ``SyntheticConfig.synth_small(n_features=width, d=d)`` (hierarchical, Zipf
rates, L0 ~ 18 at 4,096 features), written once as a float32 ``.npy`` file. SAE:
a ReLU SAE whose decoder is the true features and whose encoder is their
transpose with bias -3.5 (L0 ~ 30 at 4,096 latents: a plausible SAE with a real
amortisation gap; training one at this size would dominate the benchmark), saved
as a toysae checkpoint.

Rows (all measured in this run):

- ours: the ``toysae check`` command in a fresh process (so its peak resident
  memory, ``getrusage(RUSAGE_CHILDREN).ru_maxrss``, is the command's own), on
  every activation, with its two passes split (encode and re-solve, responses);
- reference: the in-memory ``check_sae`` on the first ``--reference-n``
  activations (its peak traced by ``tracemalloc``), the same computation with
  everything in memory; ratio of the per-sample rates.

Targets: under 10 minutes and under 4 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from toysae.data import SyntheticConfig, SyntheticData
from toysae.sae import make_sae
from toysae.sae.checkpoint import save
from toysae.theory import check_sae

TARGET_S = 600.0
TARGET_MB = 4096.0


def _world(args) -> tuple[Path, Path, SyntheticData]:
    root = Path(args.workdir)
    root.mkdir(parents=True, exist_ok=True)
    tag = f"{args.n}x{args.d}-{args.width}"
    acts, sae_path = root / f"acts-{tag}.npy", root / f"sae-{args.d}-{args.width}.safetensors"
    data = SyntheticData(SyntheticConfig.synth_small(n_features=args.width, d=args.d, seed=0))
    if not acts.exists():
        start = time.perf_counter()
        part = acts.with_suffix(".part.npy")
        out = np.lib.format.open_memmap(part, mode="w+", dtype=np.float32,
                                        shape=(args.n, args.d))
        for a in range(0, args.n, 4096):
            out[a:a + 4096] = data.sample(min(4096, args.n - a), seed=1 + a // 4096).x
        out.flush()
        del out
        part.rename(acts)
        print(f"wrote {args.n} activations to {acts} in {time.perf_counter() - start:.0f} s")
    if not sae_path.exists():
        sae = make_sae("relu", args.d, args.width, seed=0)
        W = torch.as_tensor(data.features, dtype=torch.float32)
        W = W / W.norm(dim=1, keepdim=True)
        with torch.no_grad():
            sae.W_dec.copy_(W)
            sae.W_enc.copy_(W.T)
            sae.b_enc.fill_(-3.5)
            sae.b_dec.zero_()
        save(sae, sae_path)
    return acts, sae_path, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--lam", type=float, default=0.5)
    parser.add_argument("--reference-n", type=int, default=8192)
    parser.add_argument("--workdir", default="/tmp/toysae-bench-check")
    args = parser.parse_args()
    acts, sae_path, _ = _world(args)
    out_dir = Path(args.workdir) / "out"

    # reference: the in-memory check on the first reference_n activations
    n_ref = min(args.reference_n, args.n)
    X = np.load(acts, mmap_mode="r")[:n_ref].astype(np.float32)
    from toysae.sae.checkpoint import load

    sae = load(sae_path)
    tracemalloc.start()
    start = time.perf_counter()
    check_sae(sae, X, args.lam, batch_size=args.batch_size)
    t_ref = time.perf_counter() - start
    ref_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    del X

    # ours: the command, in its own process
    command = [sys.executable, "-m", "toysae.cli", "check", str(sae_path), str(acts),
               "--lam", str(args.lam), "--batch-size", str(args.batch_size), "--out",
               str(out_dir), "--no-progress"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    t_ours = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if done.returncode != 0:
        raise SystemExit(f"toysae check failed ({done.returncode}): {done.stderr.strip()}")
    report = json.loads((out_dir / f"check-{sae_path.stem}.json").read_text())
    first, second = report["seconds"]

    rate_ours, rate_ref = args.n / t_ours, n_ref / t_ref
    print(f"\ntoysae check: {args.n} activations x {args.d}-d, {args.width}-latent ReLU SAE, "
          f"lam={args.lam}, batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    print(f"{'run':42s} {'samples':>9s} {'wall (s)':>9s} {'samples/s':>10s} {'peak MB':>8s} "
          f"{'target':>14s}")
    print(f"{'ours: toysae check (streamed, CLI)':42s} {args.n:9d} {t_ours:9.1f} "
          f"{rate_ours:10.0f} {peak_mb:8.0f} {f'{TARGET_S:.0f} s, {TARGET_MB:.0f} MB':>14s}")
    print(f"{'  pass 1: encode + float64 re-solve':42s} {'':9s} {first:9.1f} "
          f"{args.n / first:10.0f}")
    print(f"{'  pass 2: responses (KKT, pairs, steps)':42s} {'':9s} {second:9.1f} "
          f"{args.n / second:10.0f}")
    print(f"{'reference: check_sae in memory':42s} {n_ref:9d} {t_ref:9.1f} {rate_ref:10.0f} "
          f"{ref_peak:8.0f} {'(traced)':>14s}")
    print(f"{'ratio ours / reference (samples/s)':42s} {'':9s} {'':9s} "
          f"{rate_ours / rate_ref:10.2f}")
    print(f"\nours/target: time {t_ours / TARGET_S:.2f}, memory {peak_mb / TARGET_MB:.2f}")
    print("\n" + done.stdout.strip())


if __name__ == "__main__":
    main()
