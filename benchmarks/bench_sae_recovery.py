"""Does the default ReLU SAE recover the reference toy's features; what does a width-equal one miss?

Reference toy, uncorrelated (``SyntheticConfig(correlation="none")``: d=256,
512 features, 5 active on average, magnitudes U[0, 1), rates decaying with the index).

The default run: ReLU SAE of width 1024, ``TrainConfig()`` defaults (1,000,000 fresh
samples). Targets (issue 3): MMCS(true -> learned) >= 0.99 with L0 <= 2 x the true L0
(= 10). The L0, dead count and FVU are measured on 16,384 held-out samples.

``--compare``: the width-equal question (issue 23, part 4). The SAE with its default
(Anthropic's) resampling, with ``WIDTH_EQUAL_RESAMPLING`` (duplicates too, from the worst
inputs, along their residuals, a few at a time), with the same but every latent at once
(``uncapped``) and with none, and ``DictionaryLearner`` (bcd at lam 0.1 on 300,000 samples)
with its defaults and with ``replace_duplicates``, at widths 512 and 1024, every seed of
``--seeds``, in one run. Each row counts what the missed features (best cosine < 0.9) went
to: latents that never fire on the held-out samples (dead), live latents on a feature another
live latent already has (duplicates), and live latents on no feature (mixtures). With
``--json`` the rows and each feature's recovered cosine and firing rate (seed 0) are stored
for ``toysae report`` (``report_tables``) and ``--figure`` draws recovered cosine against
firing rate, before and after.

    flock /tmp/toysae-bench.lock .venv/bin/python benchmarks/bench_sae_recovery.py [--seeds 0 1]
    .venv/bin/python benchmarks/bench_sae_recovery.py --compare --seeds 0 1 2 \\
        --json figures/full/sae-recovery.json --figure figures/full/sae-recovery.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from toysae._io import write_text
from toysae._threads import torch_threads
from toysae.data import SyntheticConfig, SyntheticData
from toysae.dictlearn import DictionaryLearner
from toysae.experiments import provenance
from toysae.metrics import dead_latents, fvu, l0, mmcs
from toysae.sae import TrainConfig, train_sae
from toysae.sae.config import WIDTH_EQUAL_RESAMPLING
from toysae.stats import mean_interval

NAME = "sae-recovery"
TRACKED = 0.9  # a feature is recovered when some atom has cosine >= this with it
#: Each method's recipes: the changes to its defaults (TrainConfig's, DictionaryLearner's).
SAE_RECIPES = {"default": {}, "width-equal": WIDTH_EQUAL_RESAMPLING,
               "uncapped": {**WIDTH_EQUAL_RESAMPLING, "resample_max": None},
               "none": {"resample_every": 0}}
LEARNER_DUPLICATES = 0.8
LEARNER_RECIPES = {"default": {}, "duplicates": {"replace_duplicates": LEARNER_DUPLICATES}}
LEARNER_LAM, LEARNER_SAMPLES = 0.1, 300_000


def default_run(seeds, width) -> None:
    print(f"{'seed':>4s} {'MMCS':>7s} {'target':>7s} {'L0':>6s} {'true L0':>7s} {'ratio':>6s} "
          f"{'dead':>5s} {'FVU':>7s} {'wall s':>7s}  verdict")
    for seed in seeds:
        data = SyntheticData(SyntheticConfig(correlation="none", seed=seed))
        config = TrainConfig(seed=seed)
        start = time.perf_counter()
        result = train_sae("relu", data, config, width=width, sae_kwargs={"seed": seed},
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


def where_missed(features: np.ndarray, dictionary: np.ndarray, fired: np.ndarray) -> dict:
    """What the dictionary spends its atoms on: MMCS, missed features, dead atoms, live
    duplicates (a feature another live atom already has at >= TRACKED) and live mixtures
    (no feature at >= TRACKED); ``cosines``: each feature's best cosine."""
    F = features / np.linalg.norm(features, axis=1, keepdims=True)
    D = dictionary / np.maximum(np.linalg.norm(dictionary, axis=1, keepdims=True), 1e-12)
    C = F @ D.T
    best, atom_best, atom_feature = C.max(1), C.max(0), C.argmax(0)
    good = fired & (atom_best >= TRACKED)
    return {"mmcs": float(best.mean()), "missed": int((best < TRACKED).sum()),
            "dead": int((~fired).sum()),
            "duplicates": int(good.sum() - np.unique(atom_feature[good]).size),
            "mixtures": int((fired & (atom_best < TRACKED)).sum()), "cosines": best}


def targeting(sae, data, features: np.ndarray, cosines: np.ndarray, seed: int) -> dict:
    """Where resampling would look, on a pool of 8,192 fresh inputs (the engine's pool
    size): the share of Anthropic's draws (probability proportional to loss squared) that
    land on an input holding a missed feature, the share of the highest-loss inputs (as
    many as there are missed features) that hold one, and how closely the input and its
    residual point at that feature (median over those inputs of the best |cosine| with a
    missed feature)."""
    missed = cosines < TRACKED
    pool = data.sample(8192, seed=30_000 + seed)
    x = torch.as_tensor(pool.x)
    with torch.no_grad():
        residual = (x - sae(x).x_hat).numpy().astype(np.float64)
    loss = (residual ** 2).sum(1)
    holds = (pool.codes[:, missed] > 0).any(1)
    F = features[missed] / np.linalg.norm(features[missed], axis=1, keepdims=True)

    def aim(v):
        unit = v[holds] / np.maximum(np.linalg.norm(v[holds], axis=1, keepdims=True), 1e-12)
        return float(np.median(np.abs(unit @ F.T).max(1)))

    worst = np.argsort(-loss, kind="stable")[:int(missed.sum())]
    return {"missed": int(missed.sum()), "inputs_holding_one": int(holds.sum()),
            "loss_squared_share": float((loss[holds] ** 2).sum() / (loss ** 2).sum()),
            "worst_share": float(holds[worst].mean()),
            "input_cosine": aim(np.asarray(pool.x, dtype=np.float64)),
            "residual_cosine": aim(residual)}


def compare_run(seeds, widths) -> tuple[list[dict], dict]:
    rows, curves = [], {}
    print(f"{'method':8s} {'recipe':12s} {'width':>5s} {'seed':>4s} {'MMCS':>7s} {'missed':>6s} "
          f"{'dead':>5s} {'dup':>5s} {'mix':>5s} {'L0':>6s} {'wall s':>7s} {'samples/s':>10s}")
    for seed in seeds:
        data = SyntheticData(SyntheticConfig(correlation="none", seed=seed))
        held = data.sample(16384, seed=10_000 + seed)
        X = np.asarray(data.sample(LEARNER_SAMPLES, seed=20_000 + seed).x, dtype=np.float32)
        rates = (held.codes > 0).mean(0)
        for width in widths:
            for method, recipe in [*(("sae", r) for r in SAE_RECIPES),
                                   *(("learner", r) for r in LEARNER_RECIPES)]:
                start = time.perf_counter()
                if method == "sae":
                    cfg = TrainConfig(seed=seed).replace(**SAE_RECIPES[recipe])
                    sae = train_sae("relu", data, cfg, width=width, sae_kwargs={"seed": seed},
                                    progress=False).sae
                    samples = cfg.n_samples
                    with torch.no_grad():
                        codes = sae(held.x).codes.numpy()
                    dictionary = sae.dictionary.numpy()
                else:
                    learner = DictionaryLearner(width, LEARNER_LAM, update="bcd",
                                                batch_size=1024, max_epochs=1, seed=seed,
                                                progress=False,
                                                **LEARNER_RECIPES[recipe]).fit(X)
                    samples = X.shape[0]
                    codes = np.asarray(learner.transform(held.x))
                    dictionary = learner.dictionary
                wall = time.perf_counter() - start
                found = where_missed(data.features, dictionary, (codes > 0).any(0))
                cos = found.pop("cosines")
                row = {"method": method, "recipe": recipe, "width": width, "seed": seed,
                       **found, "l0": float(l0(codes)), "wall_s": wall,
                       "samples_per_s": samples / wall}
                if method == "sae" and recipe == "default" and found["missed"]:
                    row["targeting"] = targeting(sae, data, data.features, cos, seed)
                rows.append(row)
                if seed == seeds[0]:
                    curves[f"{method}/{recipe}/{width}"] = [float(c) for c in cos]
                    curves["rates"] = [float(r) for r in rates]
                print(f"{method:8s} {recipe:12s} {width:5d} {seed:4d} {row['mmcs']:7.4f} "
                      f"{row['missed']:6d} {row['dead']:5d} {row['duplicates']:5d} "
                      f"{row['mixtures']:5d} {row['l0']:6.2f} {wall:7.1f} "
                      f"{row['samples_per_s']:10,.0f}", flush=True)
    return rows, curves


def summary_table(rows) -> str:
    """Mean over the seeds [95% t interval] per method, recipe and width."""
    keys = (("mmcs", 4), ("missed", 1), ("dead", 1), ("duplicates", 1), ("mixtures", 1),
            ("l0", 2), ("samples_per_s", 0))
    lines = ["| method | recipe | width | MMCS | missed | dead | duplicates | mixtures | L0 | "
             "samples/s | seeds |", "|" + "---|" * 11]
    for key in dict.fromkeys((r["method"], r["recipe"], r["width"]) for r in rows):
        group = [r for r in rows if (r["method"], r["recipe"], r["width"]) == key]
        cells = [mean_interval([r[k] for r in group]).format(d) for k, d in keys]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells)
                     + f" | {len(group)} |")
    return "\n".join(lines)


def targeting_table(rows) -> str:
    """Where the default (Anthropic's) resampling looks, per width (the SAE it trained): mean
    over the seeds [95% t interval] of :func:`targeting`'s numbers."""
    keys = (("missed", "missed features", 1), ("inputs_holding_one", "pool inputs holding one", 1),
            ("loss_squared_share", "share of loss-squared draws on them", 3),
            ("worst_share", "share of the worst inputs holding one", 3),
            ("input_cosine", "input's cosine with it", 3),
            ("residual_cosine", "residual's cosine with it", 3))
    lines = ["| width | " + " | ".join(k[1] for k in keys) + " | seeds |",
             "|" + "---|" * (len(keys) + 2)]
    for width in dict.fromkeys(r["width"] for r in rows if "targeting" in r):
        group = [r["targeting"] for r in rows if "targeting" in r and r["width"] == width]
        cells = [mean_interval([g[k] for g in group]).format(d) for k, _, d in keys]
        lines.append(f"| {width} | " + " | ".join(cells) + f" | {len(group)} |")
    return "\n".join(lines)


def report_tables(data: dict) -> dict[str, str]:
    """The tables ``toysae report`` renders from the stored JSON (``--json``): ``compare``
    and ``targeting`` (:func:`targeting_table`)."""
    head = (f"Reference toy without correlation ({data['n_features']} features), held-out "
            f"scores on 16,384 samples; a feature is missed below cosine {data['tracked']}; "
            f"the SAE trains on {data['sae_samples']:,} fresh samples, the learner (bcd, lam "
            f"{data['learner_lam']}) on {data['learner_samples']:,}; mean over the seeds [95% "
            f"t interval]; {data['threads']} thread(s).")
    return {"compare": head + "\n\n" + summary_table(data["rows"]),
            "targeting": targeting_table(data["rows"])}


def draw(curves: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    from toysae.plotting import save_figure, style

    style()
    rates = np.asarray(curves["rates"])
    widths = sorted({int(k.split("/")[2]) for k in curves if k != "rates"})
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.8), sharey=True)
    for ax, method, after in zip(axes, ("sae", "learner"), ("width-equal", "duplicates"),
                                 strict=True):
        for recipe, marker, colour in (("default", "o", "0.6"), (after, ".", "tab:blue")):
            cos = np.asarray(curves[f"{method}/{recipe}/{widths[0]}"])
            ax.semilogx(rates, cos, marker, ms=4 if marker == "o" else 3, color=colour,
                        mfc="none" if marker == "o" else colour,
                        label=f"{recipe} ({(cos < TRACKED).sum()} missed)")
        ax.axhline(TRACKED, color="0.5", lw=0.8, ls=":")
        ax.set(xlabel="firing rate of the feature (held out)",
               title=f"{'ReLU SAE' if method == 'sae' else 'DictionaryLearner'}, "
                     f"{widths[0]} atoms")
        ax.legend(loc="lower right", markerscale=2)  # frequent features: all recovered
    axes[0].set_ylabel("best cosine with an atom")
    fig.suptitle(f"What a width-equal dictionary misses: each of the {rates.size} features' "
                 "recovery against its firing rate, before and after (seed 0)")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--compare", action="store_true",
                        help="the width-equal comparison (widths --widths)")
    parser.add_argument("--widths", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--json", default=None, help="with --compare: write the rows here")
    parser.add_argument("--figure", default=None, help="with --compare: draw the figure here")
    args = parser.parse_args()
    if not args.compare:
        default_run(args.seeds, args.width)
        return
    with torch_threads(1):
        rows, curves = compare_run(args.seeds, args.widths)
    print(summary_table(rows))
    print(targeting_table(rows))
    if args.json:
        differs = [k for k, v in (("seeds", args.seeds != [0, 1, 2]),
                                  ("widths", args.widths != [512, 1024])) if v]
        write_text(Path(args.json), json.dumps(
            {provenance.KEY: provenance.block(NAME, "custom" if differs else "full", differs),
             "n_features": SyntheticConfig().n_features, "tracked": TRACKED,
             "sae_samples": TrainConfig().n_samples, "learner_lam": LEARNER_LAM,
             "learner_samples": LEARNER_SAMPLES, "sae_recipes": SAE_RECIPES,
             "learner_recipes": LEARNER_RECIPES, "threads": 1,
             # the rows last: what the tables show comes after the settings and curves
             "curves": curves, "rows": rows}, indent=1))
        print(f"wrote {args.json}")
    if args.figure:
        draw(curves, Path(args.figure))
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
