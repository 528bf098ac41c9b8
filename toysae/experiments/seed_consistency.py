"""Seed consistency: do SAEs trained with different seeds find the same latents, and are the
latents they share the true features?

Paulo & Belrose (2025, arXiv 2501.16615) find that SAEs trained on the same data with
different seeds share only part of their latents, TopK less than ReLU; Song et al. (2025,
arXiv 2505.20254) propose the pairwise MCC between seeds (PW-MCC,
:func:`toysae.metrics.pairwise_mcc`) as a proxy for recovering the ground truth, which
real activations do not have. Here the truth is known. On the world of
``architectures-under-theory`` (:meth:`toysae.data.SyntheticConfig.synth_small`, rescaled to
``E ||x||^2 = 1``; one world, one training set), every architecture of ``architectures``
trains at every L0 target (``l0_fractions`` of the true L0, rounded) once per seed of
``seeds`` (initialisation and data order): the k-architectures with ``k = target``, the
others (relu) through the engine's L0 controller (``TrainConfig(target_l0=...)``), exactly
as in ``architectures-under-theory``. For each (architecture, target) cell:

1. **PW-MCC against MCC with the truth.** PW-MCC is the mean over the seed pairs of the
   pair's MCC (Hungarian matching of the decoders' atoms by |cos|, mean matched |cos|
   over the latents); its 95% interval is the jackknife over the seeds
   (:func:`toysae.stats.pair_interval`: pairs share seeds). MCC with the truth is
   ``metrics.mcc(decoder, features)``, the same mean over the latents of their matched
   |cos| with a true feature, per seed, with its t interval
   (:func:`toysae.stats.mean_interval`). Both are means over the SAE's latents, so the
   identity line is where PW-MCC says exactly what the truth says. Whether PW-MCC ranks
   the cells as the truth does is Spearman's rho over the cells
   (:func:`toysae.stats.rank_correlation`, bootstrap over the cells).
2. **Per latent.** A latent of one seed is *stable* when, in every other seed of its
   cell, the Hungarian matching (by |cos|) pairs it with an atom of |cos| >=
   ``threshold``; it is *true* when its largest |cos| with a true feature is >=
   ``threshold``. The cell's 2x2 table counts its latents over the seeds (they sum to
   ``width x seeds``). The seed-specific non-features (unstable and false) are split by
   kind: *dead* (never fire on the evaluation samples), *parent+child* (the atom has
   signed cosine >= ``mixture_cosine`` with a parent feature and with one of its children:
   absorption's mixture), *split* (its best feature, at |cos| >= ``mixture_cosine``, is
   also the best feature of another live latent of the same SAE) and *other* (noise, or a
   mixture of unrelated features).
3. **Findings**, each with its interval and seed count, a difference called only where
   intervals separate: whether PW-MCC tracks MCC with the truth (rank correlation; above
   or below the identity per cell), whether TopK is less stable than ReLU at each target,
   and how often stable latents are true and seed-specific ones are not.

With ``work_dir`` every finished run (one architecture, seed and target: its scores in a
JSON file and its decoder beside it in a safetensors file) is kept, so a stopped run
continues where it stopped and a run with more seeds trains only the new ones
(:class:`toysae.experiments._run_store.RunStore`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from toysae import metrics
from toysae._config import Bounds, JsonMixin, Seed, validate_fields
from toysae._io import read_safetensors, write_safetensors, write_text
from toysae._validation import check_choice, check_float, check_tuple
from toysae.data import SyntheticConfig
from toysae.experiments import architectures_under_theory as aut
from toysae.experiments._run_store import RunStore
from toysae.sae import ARCHITECTURES, TrainConfig
from toysae.stats import (
    Interval,
    check_seeds,
    compare,
    mean_interval,
    not_resolved,
    pair_interval,
    rank_correlation,
)

NAME = "seed-consistency"
DESCRIPTION = ("SAEs of four architectures at two L0 targets over 5 seeds on the "
               "benchmark-grade world: pairwise MCC between seeds (PW-MCC) against MCC with "
               "the truth, and whether the latents every seed finds are true features, with "
               "95% intervals.")

DEFAULT_ARCHITECTURES = ("relu", "topk", "batchtopk", "matryoshka")
# The 2x2 table of a cell's latents, and the kinds of its seed-specific non-features
CLASSES = ("stable_true", "stable_false", "unstable_true", "unstable_false")
KINDS = ("dead", "parent_child", "split", "other")
# Per-seed shares summarised over the seeds (beside pw_mcc, which is a pair mean)
SHARES = ("stable_share", "true_share", "true_given_stable", "false_given_unstable")
SUMMARISED = ("l0", "mcc", "explained_variance", *SHARES)


def _architectures() -> tuple[str, ...]:
    return tuple(ARCHITECTURES)


@dataclass(frozen=True)
class Config(JsonMixin):
    data: SyntheticConfig = field(default_factory=SyntheticConfig.synth_small)
    width: Annotated[int, Bounds(8)] = 512
    architectures: tuple[str, ...] = DEFAULT_ARCHITECTURES
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # training seeds: initialisation and data order
    l0_fractions: Annotated[tuple[float, ...], Bounds(0.0, 4.0, min_inclusive=False)] = \
        (1.0, 0.5)  # targets as fractions of the true L0
    n_train: Annotated[int, Bounds(1)] = 262_144  # the fixed training set every SAE sees
    train: TrainConfig = field(default_factory=lambda: aut.train_recipe(1_000_000, batch_size=256))
    # where taken (matryoshka); None: width/8 .. width
    prefix_sizes: Annotated[tuple[int, ...] | None, Bounds(1)] = None
    n_eval: Annotated[int, Bounds(64)] = 8192
    # |cos| at or above which two seeds' latents are the same, and a latent a true feature
    threshold: Annotated[float, Bounds(0.0, 1.0, min_inclusive=False)] = 0.9
    # signed cosine with a parent and a child that makes an atom their mixture
    mixture_cosine: Annotated[float, Bounds(0.0, 1.0, min_inclusive=False)] = 0.3
    n_boot: Annotated[int, Bounds(100)] = 2000  # bootstrap resamples of the rank correlation
    work_dir: str | None = None  # keeps each finished run; a rerun continues from them
    seed: Seed = 0  # the world, its training and evaluation samples

    def __post_init__(self):
        validate_fields(self)
        check_tuple(self.architectures, "architectures", check_choice,
                    choices=_architectures())
        aut._distinct(self.architectures, "architectures")
        check_seeds(self.seeds)
        if len(self.seeds) < 2:
            raise ValueError(f"seeds must hold at least 2 seeds (consistency compares seeds), "
                             f"got {list(self.seeds)}")
        check_tuple(self.l0_fractions, "l0_fractions", check_float, minimum=0.0,
                    min_inclusive=False)
        aut._distinct(self.l0_fractions, "l0_fractions")
        if self.train.target_l0 is not None:
            raise ValueError("train.target_l0 must be None: the experiment sets each run's "
                             "target from l0_fractions")
        if self.n_train < self.train.batch_size:
            raise ValueError(f"n_train must be >= train.batch_size ({self.train.batch_size}), "
                             f"got {self.n_train}")

    @classmethod
    def quick(cls) -> Config:
        return cls(data=SyntheticConfig.synth_small(n_features=512, d=64, tree_roots=4),
                   width=128, seeds=(0, 1, 2), l0_fractions=(1.0,), n_train=16_384,
                   train=aut.train_recipe(120_000, batch_size=128), n_eval=2048, n_boot=500)


@dataclass(frozen=True)
class Run(JsonMixin):
    """One SAE: an architecture at one seed and target, scored against the truth, and its
    latents judged against the other seeds of its cell."""

    name: str
    seed: int
    target_l0: int
    k: int | None  # k (k-architectures)
    sparsity_coef: float | None  # where the controller ended (penalty architectures)
    trained: bool  # the trainer's success (a controlled run that missed: False)
    train_message: str
    l0: float  # on the evaluation samples
    mcc: float  # mean over the latents of their matched |cos| with a true feature
    explained_variance: float
    n_dead: int  # latents that never fire on the evaluation samples
    pair_mcc: float  # mean MCC of this seed's decoder with each other seed's
    counts: dict  # CLASSES -> count of this run's latents
    kinds: dict  # KINDS -> count of its unstable false latents

    @property
    def l0_error(self) -> float:
        return self.l0 / self.target_l0 - 1


@dataclass(frozen=True)
class Cell(JsonMixin):
    """One architecture at one target over its seeds. ``intervals[metric]`` is a
    :class:`toysae.stats.Interval` as a dict: ``pw_mcc`` the jackknife over the seeds,
    the rest (SUMMARISED) Student-t over the seeds' values."""

    name: str
    target_l0: int
    seeds: tuple[int, ...]
    pair_mcc: tuple  # (n_seeds, n_seeds) MCC of each pair of seeds' decoders, 1 on the diagonal
    intervals: dict
    counts: dict  # CLASSES -> count over the seeds (sums to n_latents)
    kinds: dict  # KINDS -> count of the unstable false latents over the seeds
    n_latents: int  # width x seeds

    def interval(self, metric: str) -> Interval | None:
        value = self.intervals.get(metric)
        return None if value is None else Interval(**value)


@dataclass(frozen=True)
class Tracking(JsonMixin):
    """Spearman's rho of the cells' PW-MCC with their MCC against the truth (``rho`` None,
    with ``reason``, where it is undefined)."""

    n: int
    rho: float | None
    low: float | None
    high: float | None
    resolved: bool
    reason: str = ""


@dataclass(frozen=True)
class Result(JsonMixin):
    config: Config
    data_scale: float  # the raw data's sqrt(E ||x||^2), divided out
    true_l0: float
    targets: tuple  # the L0 targets, one per l0_fraction
    runs: tuple  # Run, every architecture x target x seed
    cells: tuple  # Cell per architecture and target
    tracking: Tracking  # does PW-MCC rank the cells as MCC with the truth does?
    findings: tuple  # sentences, each with its intervals and seed count
    wall_time: float  # seconds for the runs done in this call (kept ones are free)


# -- latents judged across seeds and against the truth ---------------------------------------
def classify_latents(decoders, features, alive, hierarchy_pairs, threshold: float,
                     mixture_cosine: float) -> list[dict]:
    """The latents of each of the seeds' ``decoders`` ((width, d) arrays, one per seed, at
    least 2), judged against the other seeds and the truth (``features``, (n_features, d)).

    ``alive[s]`` is seed ``s``'s (width,) bool mask of latents that fire on the evaluation
    samples; ``hierarchy_pairs`` the world's (parent, child) feature pairs. Returns per
    seed a dict of (width,) arrays: ``stable`` (matched with |cos| >= ``threshold`` in every
    other seed, Hungarian matching per pair, :func:`toysae.metrics.matched_cosines`),
    ``true`` (largest |cos| with a feature >= ``threshold``) and ``kind`` (for the false
    latents, an index into KINDS; -1 for true ones).
    """
    threshold = check_float(threshold, "threshold", minimum=0.0, maximum=1.0)
    mixture_cosine = check_float(mixture_cosine, "mixture_cosine", minimum=0.0, maximum=1.0)
    if len(decoders) < 2:
        raise ValueError(f"decoders must hold at least 2 (one per seed), got {len(decoders)}")
    if len(alive) != len(decoders):
        raise ValueError(f"alive has {len(alive)} masks for {len(decoders)} decoders")
    pairs = np.asarray(hierarchy_pairs, dtype=np.int64).reshape(-1, 2)
    out = []
    for s, D in enumerate(decoders):
        stable = np.ones(len(D), dtype=bool)
        for t, other in enumerate(decoders):
            if t != s:
                stable &= metrics.matched_cosines(D, other) >= threshold
        C = metrics.cosine_matrix(D, features)  # (width, n_features), signed
        true = np.abs(C).max(axis=1) >= threshold
        live = np.asarray(alive[s], dtype=bool)
        if live.shape != stable.shape:
            raise ValueError(f"alive[{s}] has shape {live.shape}, decoders[{s}] has "
                             f"{len(D)} latents")
        mixture = ((C[:, pairs[:, 0]] >= mixture_cosine)
                   & (C[:, pairs[:, 1]] >= mixture_cosine)).any(axis=1) if len(pairs) else \
            np.zeros(len(D), dtype=bool)
        # a best feature: the largest |cos|, where it reaches mixture_cosine
        best = np.abs(C).argmax(axis=1)
        has = live & (np.abs(C).max(axis=1) >= mixture_cosine)
        n_has = np.bincount(best[has], minlength=C.shape[1])  # such latents per feature
        shared = has & (n_has[best] > 1)  # another live latent has the same best feature
        kind = np.where(~live, 0, np.where(mixture, 1, np.where(shared, 2, 3)))
        out.append({"stable": stable, "true": true, "kind": np.where(true, -1, kind)})
    return out


def _counts(latents: dict) -> tuple[dict, dict]:
    stable, true, kind = latents["stable"], latents["true"], latents["kind"]
    counts = {"stable_true": int((stable & true).sum()), "stable_false": int((stable & ~true)
                                                                             .sum()),
              "unstable_true": int((~stable & true).sum()),
              "unstable_false": int((~stable & ~true).sum())}
    kinds = {k: int((~stable & (kind == i)).sum()) for i, k in enumerate(KINDS)}
    return counts, kinds


def _shares(counts: dict, width: int) -> dict:
    stable = counts["stable_true"] + counts["stable_false"]
    unstable = width - stable
    return {"stable_share": stable / width,
            "true_share": (counts["stable_true"] + counts["unstable_true"]) / width,
            "true_given_stable": counts["stable_true"] / stable if stable else None,
            "false_given_unstable": counts["unstable_false"] / unstable if unstable else None}


def pair_matrix(decoders) -> np.ndarray:
    """(n, n) MCC of each pair of ``decoders`` (``metrics.mcc(a, b, over="smaller")``, by
    |cos|), symmetric with 1 on the diagonal; the mean above the diagonal is
    :func:`toysae.metrics.pairwise_mcc` of them."""
    n = len(decoders)
    M = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            M[i, j] = M[j, i] = metrics.mcc(decoders[i], decoders[j], over="smaller")
    return M


# -- one run, kept -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Trained:
    scores: dict  # Run's fields up to n_dead
    decoder: np.ndarray  # (width, d) float32
    alive: np.ndarray  # (width,) bool


def _train_run(name: str, seed: int, target: int, world, config: Config) -> _Trained:
    sae, result = aut.train_run(name, seed, target, world, config, tracked=False)
    ev = world.ev
    Z = aut.encode(sae, ev.x)
    with torch.no_grad():
        x_hat = sae(torch.from_numpy(ev.x)).x_hat.numpy()
    D = sae.dictionary.detach().numpy().astype(np.float32)
    alive = ~metrics.dead_latents(Z)
    takes_k = aut.takes_k(name)
    scores = dict(name=name, seed=seed, target_l0=target, k=target if takes_k else None,
                  sparsity_coef=None if takes_k else float(result.final_sparsity_coef),
                  trained=bool(result.success), train_message=result.message,
                  l0=float(metrics.l0(Z)), mcc=metrics.mcc(D, world.F),
                  explained_variance=metrics.explained_variance(ev.x, x_hat),
                  n_dead=int((~alive).sum()))
    return _Trained(scores=scores, decoder=D, alive=alive)


class _Store(RunStore):
    """Finished runs: the scores and live-latent mask in the unit's JSON, the decoder
    beside it (``<unit>.safetensors``, written first, so a kept JSON always has its
    decoder). Keyed by every field but the lists of what runs and the fields that only
    judge the kept runs (threshold, mixture_cosine, n_boot)."""

    def __init__(self, config: Config):
        super().__init__(config, ("architectures", "seeds", "l0_fractions", "threshold",
                                  "mixture_cosine", "n_boot"))

    def _decoder_path(self, unit: str) -> Path:
        return self.path(unit).with_suffix(".safetensors")

    def get(self, unit: str) -> _Trained | None:
        stored = super().get(unit)
        if stored is None or not self._decoder_path(unit).is_file():
            return None
        _, tensors = read_safetensors(self._decoder_path(unit), "seed-consistency decoder")
        return _Trained(scores=stored["scores"], decoder=tensors["decoder"].numpy(),
                        alive=np.asarray(stored["alive"], dtype=bool))

    def put(self, unit: str, trained: _Trained) -> None:
        if self.root is None:
            return
        write_safetensors(self._decoder_path(unit),
                          {"decoder": torch.from_numpy(trained.decoder)}, {"unit": unit})
        super().put(unit, {"scores": trained.scores, "alive": trained.alive.tolist()})


def _targets(config: Config, true_l0: float) -> tuple[int, ...]:
    targets = aut.targets_of(config, true_l0)
    if len(set(targets)) != len(targets):
        raise ValueError(f"l0_fractions {list(config.l0_fractions)} round to the L0 targets "
                         f"{list(targets)} (true L0 {true_l0:.2f}): each must be a different "
                         "target")
    return targets


def run(config: Config) -> Result:
    start = time.perf_counter()
    world = aut._world(config)
    store = _Store(config)
    targets = _targets(config, world.true_l0)
    runs, cells = [], []
    for target in targets:
        for name in config.architectures:
            trained = []
            for seed in config.seeds:
                unit = f"{name}-seed{seed}-l0{target}"
                done = store.get(unit)
                if done is None:
                    done = _train_run(name, seed, target, world, config)
                    store.put(unit, done)
                trained.append(done)
            cell_runs, cell = judge_cell(trained, world.F, config.data.hierarchy_pairs,
                                         config.threshold, config.mixture_cosine)
            runs += cell_runs
            cells.append(cell)
    tracking = track(cells, config.n_boot, config.seed)
    return Result(config=config, data_scale=world.scale, true_l0=world.true_l0,
                  targets=targets, runs=tuple(runs), cells=tuple(cells), tracking=tracking,
                  findings=findings(runs, cells, tracking, targets),
                  wall_time=time.perf_counter() - start)


def judge_cell(trained, features, hierarchy_pairs, threshold: float,
               mixture_cosine: float) -> tuple[list[Run], Cell]:
    """The runs of one cell (its seeds' trained SAEs, each with its scores, decoder and
    live-latent mask) and the cell's summary; the latents classed by
    :func:`classify_latents`."""
    decoders = [t.decoder for t in trained]
    latents = classify_latents(decoders, features, [t.alive for t in trained],
                               hierarchy_pairs, threshold, mixture_cosine)
    M = pair_matrix(decoders)
    n = len(trained)
    runs = []
    for s, (t, lat) in enumerate(zip(trained, latents, strict=True)):
        counts, kinds = _counts(lat)
        runs.append(Run(**t.scores, pair_mcc=float(np.delete(M[s], s).mean()), counts=counts,
                        kinds=kinds))
    width = len(decoders[0])
    intervals = {"pw_mcc": pair_interval(M).to_dict()}
    for metric in SUMMARISED:
        if metric in SHARES:
            values = [_shares(r.counts, width)[metric] for r in runs]
        else:
            values = [getattr(r, metric) for r in runs]
        values = [v for v in values if v is not None]
        if values:
            intervals[metric] = mean_interval(values).to_dict()
    cell = Cell(name=runs[0].name, target_l0=runs[0].target_l0,
                seeds=tuple(r.seed for r in runs), pair_mcc=tuple(map(tuple, M.tolist())),
                intervals=intervals,
                counts={c: sum(r.counts[c] for r in runs) for c in CLASSES},
                kinds={k: sum(r.kinds[k] for r in runs) for k in KINDS},
                n_latents=width * n)
    return runs, cell


# -- verdicts ----------------------------------------------------------------------------------
def track(cells, n_boot: int, seed: int) -> Tracking:
    """Spearman's rho of PW-MCC with MCC against the truth over the cells (their means)."""
    x = np.array([c.interval("mcc").mean for c in cells])
    y = np.array([c.interval("pw_mcc").mean for c in cells])
    reason = ""
    if len(cells) < 3:
        reason = f"{len(cells)} cells: a rank correlation needs 3"
    elif np.ptp(x) == 0 or np.ptp(y) == 0:
        reason = f"{'MCC' if np.ptp(x) == 0 else 'PW-MCC'} is the same in every cell"
    if reason:
        return Tracking(n=len(cells), rho=None, low=None, high=None, resolved=False,
                        reason=reason)
    rc = rank_correlation(x, y, n_boot=n_boot, seed=seed)
    return Tracking(n=rc.n, rho=rc.rho, low=rc.low, high=rc.high, resolved=rc.resolved)


def _seeds(cells) -> str:
    counts = sorted({len(c.seeds) for c in cells})
    return f"{' or '.join(map(str, counts))} seeds"


def findings(runs, cells, tracking: Tracking, targets) -> tuple[str, ...]:
    out = []
    worst = max(runs, key=lambda r: abs(r.l0_error))
    matched = all(abs(r.l0_error) <= aut.L0_TOLERANCE for r in runs)
    out.append(f"Every run's held-out L0 within {aut.L0_TOLERANCE:.0%} of its target: "
               f"{matched} (largest miss: {worst.name}, seed {worst.seed}, target "
               f"{worst.target_l0}: L0 {worst.l0:.2f}, {worst.l0_error:+.1%}).")
    missed = [r for r in runs if not r.trained]
    if missed:
        out.append("Runs whose trainer reported a miss: " + "; ".join(
            f"{r.name} seed {r.seed} target {r.target_l0}" for r in missed) + ".")
    out.append(_tracking_sentence(cells, tracking))
    out.append(_identity_sentence(cells))
    for target in targets:
        by = {c.name: c for c in cells if c.target_l0 == target}
        if "topk" in by and "relu" in by:
            out.append(_stability_sentence(by["topk"], by["relu"], target))
    for target in targets:
        group = [c for c in cells if c.target_l0 == target]
        out.append(_latent_sentence(group, target))
    return tuple(out)


def _tracking_sentence(cells, tracking: Tracking) -> str:
    over = f"the {len(cells)} (architecture, L0) cells ({_seeds(cells)} each)"
    if tracking.rho is None:
        return f"Over {over}, no rank correlation of PW-MCC with MCC: {tracking.reason}."
    verdict = (("PW-MCC ranks the cells as the truth does" if tracking.rho > 0 else
                "PW-MCC ranks the cells against the truth") if tracking.resolved else
               "the sign is not resolved (the interval contains 0)")
    return (f"Over {over}, Spearman's rho of PW-MCC between seeds with MCC against the truth "
            f"is {tracking.rho:+.2f} [{tracking.low:+.2f}, {tracking.high:+.2f}] (95% "
            f"bootstrap over the cells): {verdict}.")


def _identity_sentence(cells) -> str:
    above, below, unresolved = [], [], []
    for c in cells:
        verdict = compare(c.interval("pw_mcc"), c.interval("mcc"))
        label = f"{c.name} at L0 {c.target_l0}"
        (above if verdict > 0 else below if verdict < 0 else unresolved).append(label)
    text = (f"PW-MCC against MCC with the truth per cell ({_seeds(cells)}, 95% intervals: "
            f"jackknife over the seeds for PW-MCC, t for MCC): above the identity line in "
            f"{len(above)}, below in {len(below)}, not resolved in {len(unresolved)} of "
            f"{len(cells)} cells.")
    if above:
        text += f" Above: {'; '.join(above)}."
    if below:
        text += f" Below: {'; '.join(below)}."
    return text


def _stability_sentence(topk: Cell, relu: Cell, target) -> str:
    a, b = topk.interval("pw_mcc"), relu.interval("pw_mcc")
    verdict = compare(a, b)
    n = min(a.n, b.n)
    words = ("topk is less stable than relu" if verdict < 0 else
             "topk is more stable than relu" if verdict > 0 else
             f"the difference is {not_resolved(n)}")
    return (f"At L0 {target}, PW-MCC of topk {a} against relu {b} ({n} seeds, 95% jackknife "
            f"intervals): {words}.")


def _latent_sentence(group, target) -> str:
    def share(cell, metric):
        interval = cell.interval(metric)
        return "no such latents" if interval is None else str(interval)

    stable = "; ".join(f"{c.name} {share(c, 'true_given_stable')}" for c in group)
    unstable = "; ".join(f"{c.name} {share(c, 'false_given_unstable')}" for c in group)
    return (f"At L0 {target} ({_seeds(group)}, mean share per seed [95% t interval]): of the "
            f"latents every seed finds, the share that are true features: {stable}. Of the "
            f"seed-specific latents, the share that are not true features: {unstable}.")


# -- outputs -----------------------------------------------------------------------------------
def save(result: Result, out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from toysae.plotting import save_figure, style, wrap

    style()
    out_dir = Path(out_dir)
    n = len(result.cells)
    fig, axes = plt.subplots(2, 1, figsize=(9.0, 8.6 + 0.25 * n),
                             height_ratios=(1.25, 0.5 + 0.12 * n))
    _panel_scatter(axes[0], result)
    _panel_latents(axes[1], result)
    cfg = result.config
    fig.suptitle(wrap(f"Seed consistency on {cfg.data.n_features} features in d = {cfg.data.d} "
                      f"(true L0 {result.true_l0:.1f}), width {cfg.width}, {len(cfg.seeds)} "
                      f"seeds per cell; |cos| threshold {cfg.threshold:g}", 95))
    fig.tight_layout()
    return [save_figure(fig, out_dir / f"{NAME}.png"),
            write_text(out_dir / f"{NAME}.md", table(result))]


def _half(interval: Interval) -> tuple[float, float]:
    if not interval.resolved:
        return 0.0, 0.0
    return interval.mean - interval.low, interval.high - interval.mean


def _panel_scatter(ax, result: Result) -> None:
    markers = "osD^v<>p*h"
    colours = {n: f"C{i}" for i, n in enumerate(result.config.architectures)}
    for c in result.cells:
        x, y = c.interval("mcc"), c.interval("pw_mcc")
        ax.errorbar(x.mean, y.mean, xerr=np.array(_half(x))[:, None],
                    yerr=np.array(_half(y))[:, None], capsize=3, color=colours[c.name],
                    marker=markers[result.targets.index(c.target_l0) % len(markers)],
                    linestyle="none", label=f"{c.name}, L0 {c.target_l0}")
    values = [v for c in result.cells for i in (c.interval("mcc"), c.interval("pw_mcc"))
              for v in (i.low if i.resolved else i.mean, i.high if i.resolved else i.mean)]
    lo, hi = min(values), max(values)
    pad = 0.05 * max(hi - lo, 0.01)
    lims = (max(0.0, lo - pad), min(1.0, hi + pad))
    ax.plot(lims, lims, "--", color="gray", label="identity (PW-MCC = MCC)")
    ax.set_xlim(*lims)
    ax.set_ylim(*lims)
    ax.set_xlabel("MCC with the true features (mean over seeds, 95% t interval)")
    ax.set_ylabel("PW-MCC between seeds\n(95% jackknife interval)")
    ax.set_title("Does agreement between seeds track recovery of the truth?")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


_CLASS_LABELS = {"stable_true": "stable and true", "stable_false": "stable and false",
                 "unstable_true": "unstable and true", "unstable_false": "unstable and false"}
_CLASS_COLOURS = {"stable_true": "tab:green", "stable_false": "tab:orange",
                  "unstable_true": "tab:blue", "unstable_false": "tab:red"}


def _panel_latents(ax, result: Result) -> None:
    cells = result.cells
    y = np.arange(len(cells))[::-1]
    left = np.zeros(len(cells))
    for cls in CLASSES:
        share = np.array([c.counts[cls] / c.n_latents for c in cells])
        ax.barh(y, share, left=left, color=_CLASS_COLOURS[cls], label=_CLASS_LABELS[cls])
        left += share
    ax.set_yticks(y, [f"{c.name}, L0 {c.target_l0}" for c in cells])
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"share of the latents over the seeds (stable: matched in every other "
                  f"seed;\ntrue: |cos| with a feature >= {result.config.threshold:g})")
    ax.set_title("Are the latents every seed finds the true features?")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=4)


def _cell(cell: Cell, metric: str, digits: int) -> str:
    interval = cell.interval(metric)
    return "-" if interval is None else interval.format(digits)


SUMMARY_COLUMNS = (("L0", "l0", 2), ("MCC with the truth", "mcc", 3), ("PW-MCC", "pw_mcc", 3))


def summary_table(cells, true_l0: float, threshold: float) -> str:
    """Markdown: one row per architecture and target, its held-out L0, MCC with the truth
    and PW-MCC as mean [95% interval], and its 2x2 latent counts over the seeds, under a
    line giving the true L0, the seeds and the threshold."""
    lines = [f"True L0 {true_l0:.2f}; {_seeds(cells)} per row, mean [95% interval: t over the "
             "seeds, jackknife over the seeds for PW-MCC]; latent counts summed over the "
             f"seeds, stable = matched (|cos| >= {threshold:g}) in every other seed, true = "
             f"|cos| >= {threshold:g} with a true feature.", "",
             "| architecture | target L0 | " + " | ".join(c[0] for c in SUMMARY_COLUMNS)
             + " | " + " | ".join(_CLASS_LABELS[c] for c in CLASSES) + " |",
             "|" + "---|" * (len(SUMMARY_COLUMNS) + len(CLASSES) + 2)]
    for c in cells:
        lines.append(f"| {c.name} | {c.target_l0} | "
                     + " | ".join(_cell(c, metric, d) for _, metric, d in SUMMARY_COLUMNS)
                     + " | " + " | ".join(str(c.counts[k]) for k in CLASSES) + " |")
    return "\n".join(lines)


def report_tables(data: dict) -> dict[str, str]:
    """The tables ``toysae report`` renders from a stored result (``NAME.json``, parsed):
    ``summary``, :func:`summary_table`."""
    cells = [Cell.from_dict(c) for c in data["cells"]]
    return {"summary": summary_table(cells, data["true_l0"], data["config"]["threshold"])}


def table(result: Result) -> str:
    cfg = result.config
    shares = (("stable", "stable_share"), ("true", "true_share"),
              ("true if stable", "true_given_stable"),
              ("false if unstable", "false_given_unstable"))
    lines = [f"# {NAME}", "",
             f"{cfg.data.n_features} features in d = {cfg.data.d} "
             f"({len(cfg.data.hierarchy_pairs)} parent/child pairs), SAE width {cfg.width}, "
             f"seeds {list(cfg.seeds)}, data scaled by 1/{result.data_scale:.3g} to "
             "E||x||^2 = 1.", "", "## Summary", "",
             summary_table(result.cells, result.true_l0, cfg.threshold), "",
             "## Shares of each seed's latents", "",
             "Mean over the seeds [95% t interval]; 'true if stable' is the share of a seed's "
             "stable latents that are true features, 'false if unstable' the share of its "
             "seed-specific latents that are not.", "",
             "| architecture | target L0 | " + " | ".join(s[0] for s in shares) + " |",
             "|" + "---|" * (len(shares) + 2)]
    for c in result.cells:
        lines.append(f"| {c.name} | {c.target_l0} | "
                     + " | ".join(_cell(c, m, 3) for _, m in shares) + " |")
    lines += ["", "## The seed-specific non-features by kind", "",
              "Unstable and false latents over the seeds: dead (never fire on the evaluation "
              f"samples), parent+child (signed cosine >= {cfg.mixture_cosine:g} with a parent "
              "and one of its children), split (best feature, at |cos| >= "
              f"{cfg.mixture_cosine:g}, shared with another live latent of the same SAE), "
              "other.", "",
              "| architecture | target L0 | unstable and false | " + " | ".join(KINDS) + " |",
              "|" + "---|" * (len(KINDS) + 3)]
    for c in result.cells:
        lines.append(f"| {c.name} | {c.target_l0} | {c.counts['unstable_false']} | "
                     + " | ".join(str(c.kinds[k]) for k in KINDS) + " |")
    t = result.tracking
    lines += ["", "## Findings", "", *[f"- {s}" for s in result.findings], "",
              "Rank correlation of PW-MCC with MCC over the cells: "
              + (t.reason if t.rho is None else
                 f"rho {t.rho:+.2f} [{t.low:+.2f}, {t.high:+.2f}] over {t.n} cells.")
              + " PW-MCC: Song et al. (arXiv 2505.20254); seed-specific latents: Paulo & "
              "Belrose (arXiv 2501.16615).", ""]
    return "\n".join(lines)


def caption(data: dict) -> str:
    """One line of finding for the figure, from a stored result (``toysae report``): does
    PW-MCC track the truth over the cells, and TopK's stability against ReLU's."""
    said = [f for f in data["findings"] if f.startswith("Over the ")
            or (f.startswith("At L0 ") and "PW-MCC of topk" in f)]
    return " ".join(said) or data["findings"][0]
