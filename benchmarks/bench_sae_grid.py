"""A penalty x width grid of SAEs as one batched model vs the same SAEs one after another.

    flock /tmp/toysae-bench.lock python benchmarks/bench_sae_grid.py [--repeats 2]

The reference figure is measured in the same run: ``train_grid_sequential``
trains the same SAEs (same init, same batches, same steps) with ``train_sae``,
one after another. Each figure is the best of ``--repeats`` runs, batched and
sequential interleaved. Targets (issue 3): the 12-SAE grid of the 3-D toy
>= 3x faster batched; at the reference size (d=256, 512 features) batched no
slower than sequential (ratio >= 1).

Rows: "stream" draws fresh samples from ``SyntheticData`` (what an experiment
does: the batched grid draws each batch once, the sequential run once per
SAE); "array" trains on a pre-sampled array, so only the SAE work is compared.
"sequential, 1 thread" is the reference with torch limited to one thread
(the batched trainer runs tiny models single-threaded; this row shows that
thread choice alone does not explain the speed-up).
"""

from __future__ import annotations

import argparse

import torch

from toysae.data import SyntheticConfig, SyntheticData
from toysae.sae.config import TrainConfig
from toysae.sae.grid import plan_layout, train_grid, train_grid_sequential


def best_of(repeats: int, runs: dict) -> dict[str, float]:
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            best[name] = min(best[name], fn())
    return best


def sequential_one_thread(*args, **kwargs) -> float:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_grid_sequential(*args, **kwargs).wall_time
    finally:
        torch.set_num_threads(threads)


def case(label: str, data, coefs, widths, config: TrainConfig, repeats: int,
         target: float, layouts=("auto",), one_thread: bool = False) -> list[tuple]:
    d = data.config.d if isinstance(data, SyntheticData) else data.shape[1]
    runs = {}
    for layout in layouts:
        runs[layout] = (lambda lay=layout: train_grid(data, coefs, widths, config,
                                                      progress=False, layout=lay).wall_time)
    runs["sequential"] = lambda: train_grid_sequential(data, coefs, widths, config,
                                                       progress=False).wall_time
    if one_thread:
        runs["sequential, 1 thread"] = lambda: sequential_one_thread(
            data, coefs, widths, config, progress=False)
    best = best_of(repeats, runs)
    reference = min(v for k, v in best.items() if k.startswith("sequential"))
    rows = []
    for layout in layouts:
        used = plan_layout([w for _ in coefs for w in widths], d, config.batch_size,
                           layout)[0]
        rows.append((f"{label} [{used}]", best[layout], reference, reference / best[layout],
                     target))
    rows += [(f"{label} [{k}]", v, reference, float("nan"), None)
             for k, v in best.items() if k.startswith("sequential")]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--toy-steps", type=int, default=1000)
    parser.add_argument("--ref-steps", type=int, default=20)
    parser.add_argument("--ref-batch", type=int, default=1024)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of "
          f"{args.repeats}; ratio = reference (best sequential) / ours, higher is better")

    toy = SyntheticData(SyntheticConfig.toy_3d())
    toy_cfg = TrainConfig(n_samples=256 * args.toy_steps, batch_size=256, lr=1e-2,
                          log_every=100)
    toy_grid = ([0.01, 0.03, 0.1, 0.3], [6, 12, 24])
    rows = case(f"3-D toy, 12 SAEs, {args.toy_steps} steps x 256, stream", toy, *toy_grid,
                toy_cfg, args.repeats, 3.0, one_thread=True)
    toy_x = toy.sample(256 * args.toy_steps, seed=1).x
    rows += case(f"3-D toy, 12 SAEs, {args.toy_steps} steps x 256, array", toy_x, *toy_grid,
                 toy_cfg, args.repeats, 3.0, one_thread=True)

    ref = SyntheticData(SyntheticConfig())
    B = args.ref_batch
    ref_cfg = TrainConfig(n_samples=B * args.ref_steps, batch_size=B, log_every=10,
                          resample_every=0)
    ref_grid = ([0.01, 0.04, 0.16], [512, 1024, 2048])
    ref_x = ref.sample(B * args.ref_steps, seed=1).x
    rows += case(f"d=256, 3 l1 x {{512,1024,2048}}, {args.ref_steps} steps x {B}, array",
                 ref_x, *ref_grid, ref_cfg, args.repeats, 1.0, layouts=("group", "pad"))
    rows += case(f"d=256, 3 l1 x {{512,1024,2048}}, {args.ref_steps} steps x {B}, stream",
                 ref, *ref_grid, ref_cfg, args.repeats, 1.0)

    width = max(len(r[0]) for r in rows)
    print(f"{'case [layout]':{width}s} {'ours s':>8s} {'reference s':>12s} {'ratio':>7s} "
          f"{'target':>7s}")
    for name, ours, reference, ratio, target in rows:
        ratio_text = "" if ratio != ratio else f"{ratio:6.2f}x"
        target_text = "" if target is None else f">={target:g}x"
        print(f"{name:{width}s} {ours:8.2f} {reference:12.2f} {ratio_text:>7s} "
              f"{target_text:>7s}")


if __name__ == "__main__":
    main()
