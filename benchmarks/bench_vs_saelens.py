"""SAELens's trainer and toysae's engine side by side, on the same batches of a SAELens world.

    flock /tmp/toysae-bench.lock .venv/bin/python benchmarks/bench_vs_saelens.py [--quick]
        [--reduction 16] [--budgets 1000000 4000000] [--threads 1] [--device cpu] [--json F]

The README's table is ``--threads 1 --json figures/full/vs-saelens.json``, rendered by
``toysae report`` through :func:`report_tables`.

The world is SAELens's published SynthSAEBench-16k configuration at 1/``--reduction``
(``toysae.interop.synth_sae_bench_config``; 16: 1,024 features in d 48, SAELens's
orthogonalised dictionary and bias), wrapped as ``toysae.interop.SAELensWorld``. The
SAE width is a quarter of the features, as the paper's (4,096 at 16k); ``k`` and the
target L0 are the true L0 of the first ``width`` features, rounded (the paper's 25 at
full size); Matryoshka's prefixes are the paper's inner widths 128, 512, 2048 (over
the reduction) and the width.

Each architecture trains once per budget with each tool:

- SAELens: ``sae_lens.synthetic.train_toy_sae`` with its defaults (lr 3e-4, constant,
  no warm-up, Adam 0.9 / 0.999) on its own training SAE (BatchTopK: ``k``; Matryoshka
  BatchTopK: ``k`` and the prefixes; JumpReLU: its own target-L0 mode,
  ``jumprelu_sparsity_loss_mode="quadratic", target_l0=k``; standard L1: SAELens has no
  L0 target, so it trains at the coefficient toysae's controller ended at, in its
  scaling, ``l1_coefficient = 2 c`` (docs/interop.md));
- toysae: ``train_sae`` with ``TrainConfig`` defaults (its lr, warm-up, decay,
  resampling) but the same batch size and samples; ``k`` for the k-architectures,
  ``target_l0=k`` for JumpReLU and the ReLU (L1) SAE, from a start scaled to the data.

Both read the same batches: batch ``j`` is ``world.sample(1024, seed=s_j)``, toysae's
through the batches' ``x``, SAELens's through an activations generator that hands its
trainer those codes (its iterator decodes them by the same feature dictionary, so its
inputs are the same ``x``, bit for bit). Data is drawn the same way for both, so the
wall time (training, snapshots excluded) compares the trainers.

Both SAEs are scored by SAELens's ``eval_sae_on_synthetic_data`` on the same
``--eval-samples`` samples: SAELens's saved with ``save_inference_model``, toysae's with
``toysae.interop.export_saelens``, each loaded back by ``SAE.load_from_disk``.
Columns: MCC (SynthSAEBench's: over the smaller set), F1, L0, dead latents, explained
variance, wall time, samples/s, and the samples each needed to reach MCC
``--mcc-target`` (0.9), read at ``--snapshots`` evenly spaced points of its run
("> budget": not reached).

``--quick`` runs everything at a tiny size: a check that the script works. The full run
(4 architectures x 2 budgets x 2 trainers) takes about 30 minutes on one thread; at
1/16, 500,000 samples took about 20 s a run, most of it drawing SAELens's samples
(dense: a normal per feature and sample), which both trainers pay alike.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from toysae import metrics
from toysae._io import write_text
from toysae._threads import torch_threads
from toysae.experiments import provenance
from toysae.interop import SAELensWorld, export_saelens, synth_sae_bench_config
from toysae.sae import ARCHITECTURES as ARCHITECTURES_REGISTRY
from toysae.sae import TrainConfig, make_sae, start_coef, train_sae
from toysae.sae.batches import derived_seed

#: The name of its stored JSON, ``figures/full/vs-saelens.json``, whose table ``toysae
#: report`` renders into the README (``report_tables``).
NAME = "vs-saelens"
ARCHITECTURES = ("batchtopk", "matryoshka", "jumprelu", "relu")
SAELENS_NAMES = {"batchtopk": "BatchTopK", "matryoshka": "MatryoshkaBatchTopK",
                 "jumprelu": "JumpReLU", "relu": "Standard"}
BATCH = 1024
_DATA_KEY = 22


class SharedBatches:
    """Batch ``j`` of a run: ``world.sample(BATCH, seed=derived_seed(seed, 22, j))``.

    ``x_batches()`` yields the batches' ``x`` (toysae's data); called with a batch size
    it is SAELens's activations generator and returns the next batch's codes, which
    SAELens's iterator decodes into the same ``x``."""

    def __init__(self, world: SAELensWorld, seed: int, device: str):
        self.world, self.seed, self.device, self.drawn = world, seed, device, 0

    def _next(self):
        batch = self.world.sample(BATCH, seed=derived_seed(self.seed, _DATA_KEY, self.drawn))
        self.drawn += 1
        return batch

    def x_batches(self):
        while True:
            yield self._next().x

    def __call__(self, batch_size: int) -> torch.Tensor:
        if batch_size != BATCH:
            raise ValueError(f"SAELens asked for batches of {batch_size}, not {BATCH}")
        return torch.from_numpy(self._next().codes).to(self.device)


def world_targets(world: SAELensWorld, reduction: int, seed: int) -> tuple[int, int, list]:
    """(width, k, Matryoshka prefixes): a quarter of the features, the true L0 of the
    first ``width`` features, the paper's inner widths over the reduction."""
    width = world.n_features // 4
    codes = world.sample(8192, seed=derived_seed(seed, 99)).codes
    k = max(1, round(float((codes[:, :width] > 0).sum(1).mean())))
    prefixes = sorted({max(1, w // reduction) for w in (128, 512, 2048)} | {width})
    return width, k, [p for p in prefixes if p <= width]


def saelens_sae(name: str, d: int, width: int, k: int, prefixes: list, coef: float | None):
    import sae_lens

    cfg_cls = getattr(sae_lens, f"{SAELENS_NAMES[name]}TrainingSAEConfig")
    sae_cls = getattr(sae_lens, f"{SAELENS_NAMES[name]}TrainingSAE")
    own = {"batchtopk": {"k": k}, "matryoshka": {"k": k, "matryoshka_widths": list(prefixes)},
           "jumprelu": {"jumprelu_sparsity_loss_mode": "quadratic", "target_l0": float(k)},
           "relu": {"l1_coefficient": 2 * coef if coef is not None else 1.0}}[name]
    return sae_cls(cfg_cls(d_in=d, d_sae=width, **own))


def mcc_of(decoder, features: np.ndarray) -> float:
    return metrics.mcc(features, decoder.detach().float().cpu().numpy(), over="smaller")


def first_reaching(points: list[tuple[int, float]], target: float) -> int | None:
    return next((n for n, value in points if value >= target), None)


def train_saelens(name, world, width, k, prefixes, coef, budget, args):
    from sae_lens.synthetic import train_toy_sae

    torch.manual_seed(args.seed)
    sae = saelens_sae(name, world.d, width, k, prefixes, coef)
    batches = SharedBatches(world, args.seed, args.device)
    features, points, spent = world.features, [], [0.0]

    def snapshot(trainer):
        start = time.perf_counter()
        points.append((trainer.n_training_samples, mcc_of(trainer.sae.W_dec, features)))
        spent[0] += time.perf_counter() - start

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_toy_sae(sae, world.model.feature_dict, batches, training_samples=budget,
                      batch_size=BATCH, device=args.device, n_snapshots=args.snapshots,
                      snapshot_fn=snapshot)
    wall = time.perf_counter() - start - spent[0]
    steps = math.ceil(budget / BATCH)
    if batches.drawn != steps:
        raise RuntimeError(f"SAELens drew {batches.drawn} batches for {steps} steps: the two "
                           "trainers would not see the same batches")
    directory = Path(tempfile.mkdtemp(prefix="saelens-sae-"))
    sae.save_inference_model(directory)
    return directory, wall, points


def train_toysae(name, world, width, k, prefixes, budget, args):
    batches = SharedBatches(world, args.seed, args.device)
    scale = float(np.sqrt((world.sample(4096, seed=derived_seed(args.seed, 98)).x.astype(
        np.float64) ** 2).sum(1).mean()))
    steps = math.ceil(budget / BATCH)
    kwargs = {"seed": args.seed}
    penalty = ARCHITECTURES_REGISTRY[name].penalty_kind
    config = TrainConfig(n_samples=budget, batch_size=BATCH, seed=args.seed,
                         log_every=max(1, steps // args.snapshots))
    if penalty == "none":
        kwargs["k"] = k
        if name == "matryoshka":
            kwargs["prefix_sizes"] = prefixes
    else:
        # toysae's controller starts low, scaled to the data (toysae.sae.start_coef)
        config = config.replace(target_l0=float(k), sparsity_coef=start_coef(penalty, scale))
    sae = make_sae(name, world.d, width, **kwargs).to(args.device)
    features, spent = world.features, [0.0]

    def evaluate(s):
        start = time.perf_counter()
        value = {"mcc": mcc_of(s.dictionary, features)}
        spent[0] += time.perf_counter() - start
        return value

    start = time.perf_counter()
    result = train_sae(sae, batches.x_batches(), config, eval_fn=evaluate, progress=False)
    wall = time.perf_counter() - start - spent[0]
    history = result.history
    points = list(zip(history["samples"], history["mcc"], strict=True))
    directory = export_saelens(result.sae.cpu().eval(), tempfile.mkdtemp(prefix="toysae-sae-")
                               + "/sae")
    return directory, wall, points, result


def score(directory, world: SAELensWorld, args) -> dict:
    import sae_lens
    from sae_lens.synthetic import eval_sae_on_synthetic_data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sae = sae_lens.SAE.load_from_disk(str(directory))
    torch.manual_seed(args.eval_seed)
    ev = eval_sae_on_synthetic_data(sae, world.model.feature_dict,
                                    world.model.activation_generator,
                                    num_samples=args.eval_samples, batch_size=4096)
    return {"mcc": ev.mcc, "f1": ev.classification.f1_score, "l0": ev.sae_l0,
            "dead": ev.dead_latents, "ev": ev.explained_variance, "true_l0": ev.true_l0}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduction", type=int, default=16)
    parser.add_argument("--budgets", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES),
                        choices=ARCHITECTURES)
    parser.add_argument("--snapshots", type=int, default=20)
    parser.add_argument("--mcc-target", type=float, default=0.9)
    parser.add_argument("--eval-samples", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-seed", type=int, default=12345)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="write the rows here")
    parser.add_argument("--quick", action="store_true", help="a tiny size (a smoke run)")
    return parser


def main() -> None:
    args = _parser().parse_args()
    if args.quick:
        args.reduction, args.budgets, args.eval_samples, args.snapshots = 64, [8192, 16384], \
            4096, 4
    with torch_threads(args.threads or torch.get_num_threads()):
        run(args)


def run(args) -> None:
    world = SAELensWorld(synth_sae_bench_config(reduction=args.reduction))
    width, k, prefixes = world_targets(world, args.reduction, args.seed)
    print(f"SAELens's SynthSAEBench-16k at 1/{args.reduction}: {world.n_features} features "
          f"in d {world.d}, width {width}, k = target L0 = {k}, Matryoshka prefixes "
          f"{prefixes}; batch {BATCH}; {torch.get_num_threads()} threads on {args.device}; "
          f"scored by SAELens's eval on {args.eval_samples:,} samples")
    head = (f"{'architecture':12s} {'samples':>10s} {'trainer':8s} {'MCC':>6s} {'F1':>6s} "
            f"{'L0':>6s} {'dead':>5s} {'EV':>6s} {'wall s':>8s} {'samples/s':>10s} "
            f"{'to MCC ' + str(args.mcc_target):>14s}")
    print(head)
    rows = []
    for name in args.architectures:
        for budget in args.budgets:
            ours_dir, ours_wall, ours_points, result = train_toysae(
                name, world, width, k, prefixes, budget, args)
            coef = result.final_sparsity_coef if name == "relu" else None
            theirs_dir, theirs_wall, theirs_points = train_saelens(
                name, world, width, k, prefixes, coef, budget, args)
            for trainer, directory, wall, points in (
                    ("SAELens", theirs_dir, theirs_wall, theirs_points),
                    ("toysae", ours_dir, ours_wall, ours_points)):
                s = score(directory, world, args)
                reach = first_reaching(points, args.mcc_target)
                row = {"architecture": name, "samples": budget, "trainer": trainer, **s,
                       "wall_s": wall, "samples_per_s": budget / wall,
                       "samples_to_mcc_target": reach}
                rows.append(row)
                reached = f"{reach:,}" if reach is not None else f"> {budget:,}"
                print(f"{name:12s} {budget:10,d} {trainer:8s} {s['mcc']:6.3f} {s['f1']:6.3f} "
                      f"{s['l0']:6.2f} {s['dead']:5d} {s['ev']:6.3f} {wall:8.1f} "
                      f"{budget / wall:10,.0f} {reached:>14s}")
    if args.json:
        write_text(Path(args.json), json.dumps(
            {provenance.KEY: provenance.block(NAME, *_preset(args)),
             "reduction": args.reduction, "width": width, "k": k, "prefixes": prefixes,
             "threads": torch.get_num_threads(), "device": args.device,
             "eval_samples": args.eval_samples, "mcc_target": args.mcc_target,
             "rows": rows}, indent=2))
        print(f"wrote {args.json}")


def _preset(args) -> tuple[str, list[str]]:
    """("full", "quick" or "custom", the options that differ from the full run's)."""
    if args.quick:
        return "quick", []
    full = vars(_parser().parse_args([]))
    differs = [k for k, v in vars(args).items() if k != "json" and v != full[k]]
    return ("custom" if differs else "full"), differs


def report_tables(data: dict) -> dict[str, str]:
    """The table ``toysae report`` renders from the stored JSON (``--json``): ``trainers``."""
    target = data["mcc_target"]
    lines = [f"SAELens's SynthSAEBench-16k world at 1/{data['reduction']} (width {data['width']}, "
             f"k = target L0 = {data['k']}), both trainers on the same batches, both SAEs "
             f"scored by SAELens's `eval_sae_on_synthetic_data` on {data['eval_samples']:,} "
             f"samples; {data['threads']} thread(s) on {data['device']}.", "",
             "| architecture | samples | trainer | MCC | F1 | L0 | dead | EV | wall s | "
             f"samples/s | samples to MCC {target} |", "|" + "---|" * 11]
    for r in data["rows"]:
        reach = r["samples_to_mcc_target"]
        reached = f"{reach:,}" if reach is not None else f"> {r['samples']:,}"
        lines.append(f"| {r['architecture']} | {r['samples']:,} | {r['trainer']} | "
                     f"{r['mcc']:.3f} | {r['f1']:.3f} | {r['l0']:.2f} | {r['dead']} | "
                     f"{r['ev']:.3f} | {r['wall_s']:.1f} | {r['samples_per_s']:,.0f} | "
                     f"{reached} |")
    return {"trainers": "\n".join(lines)}


if __name__ == "__main__":
    main()
