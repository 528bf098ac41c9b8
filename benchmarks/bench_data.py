"""Generator throughput beside this machine's float32 matmul rate and beside SAELens.

    flock /tmp/toysae-bench.lock .venv/bin/python benchmarks/bench_data.py [--threads 1] [--quick]

Table 1, the reference toy (``SyntheticConfig(correlation=...)``, 512 features in
256-d), batches of ``--batch`` for ``--seconds`` each. Reference figures (a widely
used toolkit on a 2-core machine, from the issue): about 5,000 samples/s with a
dense correlation matrix and 180,000 samples/s with a low-rank one. Our targets:
>= 100,000/s dense, >= 200,000/s rank 25. The last column divides by the float32
GFLOP/s of a 2048^3 matmul measured first.

Table 2, the benchmark-grade presets: ``SyntheticConfig.synth_sae_bench()``
(16,384 features, d = 768) and ``SyntheticConfig.synth_small()`` (2,048
features, d = 256). Each figure is the best of ``--rounds`` calls after one
warm-up call, every call ``--samples`` samples with a fresh seed:

- ours: ``SyntheticData(cfg).sample(n, seed=r)``, which returns ``x`` and the
  dense ``(n, n_features)`` codes;
- dense decode, the matmul reference: ``torch.mm`` of the dense ``(n, n_features)``
  codes with the ``(n_features, d)`` features in float32, into a preallocated
  output, on the same threads in the same run: the one product that a generator
  which decodes its dense codes densely pays per sample (SAELens's
  ``FeatureDictionary`` does). ours/decode > 1 means our whole generator, firing,
  hierarchy, magnitudes and its sparse decode included, costs less than that one
  product. Its GFLOP/s (``2 n n_features d`` per call) is printed beside it;
- SAELens (when ``import sae_lens`` works): ``SyntheticModel.sample_with_features(n)``,
  which returns the same two arrays, on the CPU with the same torch threads,
  seeded by ``torch.manual_seed(r)``. Its model is built locally from a
  ``SyntheticModelConfig`` (``saelens_config``; nothing is downloaded): the
  preset's Zipf law, tree, exclusive children, rank and scale, linear magnitude
  means, and SynthSAEBench's per-feature spreads ``|N(s, s)|`` with ``s`` the
  preset's spread (0.5). Construction is not timed, and SAELens's
  orthogonalisation of the dictionary is left out of it (``orthogonalization=None``):
  its Adam steps over the 16,384-wide Gram matrix take many minutes on a small CPU,
  and it changes the dictionary's values only, not what a sample costs. The
  dictionary bias is off (toysae has none);
- true L0: mean active features per sample over the timed calls, each generator
  its own (a check that the two configurations match; SE about 0.1 at 4,096
  samples).

Where the two generators necessarily differ on the same preset (none changes the
sampling cost much): SAELens's ``max_depth`` counts the levels below the roots,
toysae's ``tree_depth`` counts the roots' level (``synth_sae_bench``: four levels,
10,880 nodes at 16k, SAELens's published tree; ``synth_small``: three levels);
magnitudes are ``|N(mu_i, 0.5)|`` in toysae and ``relu(N(mu_i, sigma_i))`` with
``sigma_i ~ |N(0.5, 0.5)|`` in SAELens; the low-rank copula's shared factor carries
the share ``correlation_strength`` of every feature's variance in toysae and about
``rank * scale**2`` in SAELens (factor entries ``N(0, scale**2)``), so the scale is
``sqrt(correlation_strength / rank)`` (0.1 for ``synth_sae_bench``); SAELens draws one
normal per feature and sample and decodes densely, toysae thins a Bernoulli process
and decodes sparsely (``toysae/data/generator.py``).

``--quick`` runs everything at small sizes, once: a check that the script works.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
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


def best_time(call, rounds: int) -> float:
    """Fastest wall time of ``call(r)`` over rounds ``r = 1..rounds``, after ``call(0)``."""
    call(0)
    best = float("inf")
    for r in range(1, rounds + 1):
        start = time.perf_counter()
        call(r)
        best = min(best, time.perf_counter() - start)
    return best


def saelens_config(cfg: SyntheticConfig):
    """The SAELens ``SyntheticModelConfig`` of a toysae preset (Zipf firing, one
    generated tree, low-rank correlation, folded-normal magnitudes with ramped means
    and a constant spread), without orthogonalisation or bias."""
    from sae_lens.synthetic import (
        FoldedNormalMagnitudeConfig,
        HierarchyConfig,
        LinearMagnitudeConfig,
        LowRankCorrelationConfig,
        SyntheticModelConfig,
        ZipfianFiringProbabilityConfig,
    )
    spread = cfg.magnitude_spread
    if (cfg.firing != "zipf" or cfg.correlation != "low_rank" or cfg.hierarchy
            or cfg.tree_roots == 0 or cfg.tree_depth < 2 or cfg.magnitude != "folded_normal"
            or cfg.magnitude_mean is None or spread is None or spread[0] != spread[1]
            or cfg.exclusive_groups or cfg.noise or cfg.min_active or cfg.orthogonal
            or cfg.magnitude_scale != 1.0):
        raise ValueError("saelens_config maps the synth_sae_bench family only (Zipf, one "
                         f"tree, low-rank, folded-normal ramped magnitudes), got {cfg}")
    return SyntheticModelConfig(
        num_features=cfg.n_features, hidden_dim=cfg.d,
        firing_probability=ZipfianFiringProbabilityConfig(
            exponent=cfg.zipf_exponent, max_prob=cfg.p_max, min_prob=cfg.p_min),
        hierarchy=HierarchyConfig(
            total_root_nodes=cfg.tree_roots, branching_factor=cfg.tree_branching,
            max_depth=cfg.tree_depth - 1,
            mutually_exclusive_portion=1.0 if cfg.exclusive_children else 0.0,
            compensate_probabilities=cfg.compensate_rates,
            scale_children_by_parent=cfg.scale_child_magnitude),
        correlation=LowRankCorrelationConfig(
            rank=cfg.correlation_rank,
            correlation_scale=(cfg.correlation_strength / cfg.correlation_rank) ** 0.5),
        mean_firing_magnitudes=LinearMagnitudeConfig(*cfg.magnitude_mean),
        std_firing_magnitudes=FoldedNormalMagnitudeConfig(mean=spread[0], std=spread[0]),
        orthogonalization=None, bias=False, seed=cfg.seed)


def saelens_row(cfg: SyntheticConfig, n: int, rounds: int) -> tuple[float, float]:
    """SAELens's samples/s and true L0 on ``saelens_config(cfg)``."""
    from sae_lens.synthetic import SyntheticModel
    model = SyntheticModel(saelens_config(cfg))  # not timed
    active = []

    def call(r):
        torch.manual_seed(r)
        _, features = model.sample_with_features(n)
        active.append(float((features > 0).sum()) / n)

    seconds = best_time(call, rounds)
    return n / seconds, float(np.mean(active[1:]))


def ours_row(cfg: SyntheticConfig, n: int, rounds: int) -> tuple[float, float, float, float]:
    """Our samples/s and true L0, and the dense decode's samples/s and GFLOP/s."""
    data = SyntheticData(cfg)
    active, last = [], []

    def call(r):
        batch = data.sample(n, seed=r)
        active.append(np.count_nonzero(batch.codes) / n)
        last[:] = [batch]

    seconds = best_time(call, rounds)
    codes, features = torch.from_numpy(last[0].codes), torch.from_numpy(data.features)
    out = torch.empty(n, cfg.d)
    decode = best_time(lambda r: torch.mm(codes, features, out=out), rounds)
    gflops = 2 * n * cfg.n_features * cfg.d / decode / 1e9
    return n / seconds, float(np.mean(active[1:])), n / decode, gflops


def preset_table(n: int, rounds: int) -> None:
    try:
        import sae_lens  # noqa: F401
        saelens_error = None
    except Exception as err:  # any import failure: the SAELens columns say why
        saelens_error = f"{type(err).__name__}: {err}"
    print(f"\npresets: {n} samples a call, best of {rounds} after a warm-up; "
          "decode = dense (n, n_features) @ (n_features, d) float32 torch.mm, same run")
    print(f"{'preset':16s} {'ours/s':>9s} {'decode/s':>9s} {'GFLOP/s':>8s} {'ours/decode':>11s} "
          f"{'SAELens/s':>10s} {'ours/SAELens':>12s} {'L0 ours':>8s} {'L0 SAELens':>10s}")
    presets = [("synth_sae_bench", SyntheticConfig.synth_sae_bench()),
               ("synth_small", SyntheticConfig.synth_small())]
    for name, cfg in presets:
        ours, l0, decode, gflops = ours_row(cfg, n, rounds)
        if saelens_error is None:
            ref, ref_l0 = saelens_row(cfg, n, rounds)
            sl = f"{ref:10,.0f} {ours / ref:11.2f}x {l0:8.2f} {ref_l0:10.2f}"
        else:
            sl = f"{'-':>10s} {'-':>12s} {l0:8.2f} {'-':>10s}"
        print(f"{name:16s} {ours:9,.0f} {decode:9,.0f} {gflops:8.1f} {ours / decode:10.2f}x {sl}")
    if saelens_error is not None:
        print(f"SAELens not importable ({saelens_error}): its columns are empty")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="table 1: time per row")
    parser.add_argument("--batch", type=int, default=8192, help="table 1: batch size")
    parser.add_argument("--samples", type=int, default=4096, help="table 2: samples a call")
    parser.add_argument("--rounds", type=int, default=3, help="table 2: timed calls")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for everything (default: torch's own count)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (a smoke run)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.seconds, args.batch, args.samples, args.rounds = 0.2, 1024, 256, 1
    gflops = matmul_gflops(args.seconds)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"float32 matmul {gflops:.1f} GFLOP/s; batch {args.batch}")
    print(f"{'correlation':12s} {'ours/s':>10s} {'reference/s':>12s} {'ratio':>7s} "
          f"{'target/s':>10s} {'samples per GFLOP':>18s}")
    for corr in ("none", "random", "low_rank"):
        config = SyntheticConfig(correlation=corr, correlation_rank=25)
        ours = samples_per_second(config, args.batch, args.seconds)
        ref, target = REFERENCE[corr], TARGET[corr]
        ratio = f"{ours / ref:6.1f}x" if ref else "      -"
        print(f"{corr:12s} {ours:10,.0f} {ref or float('nan'):12,.0f} {ratio} "
              f"{target or float('nan'):10,.0f} {ours / gflops:18,.0f}")
    preset_table(args.samples, args.rounds)


if __name__ == "__main__":
    main()
