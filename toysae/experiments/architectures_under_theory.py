"""Architectures under the theory: every SAE at a truly matched L0, over seeds, against the
truth and against first-order optimality through lenses that favour no training objective.

The optimality-conditions seed ends with an open question: can the first-order
conditions of dictionary learning "arbitrate between different architectural
choices"? Here they are put to it, on the CPU-sized benchmark-grade world
:meth:`toysae.data.SyntheticConfig.synth_small` (2,048 Zipf-firing features in
d = 256, 16 trees of exclusive children, true L0 about 10.6), rescaled so that
``E ||x||^2 = 1``. One world (``seed``); each learner trains once per training seed
(``seeds``: its initialisation and its data order) on the same fixed training set.

1. **Matched L0.** For each target (``l0_fractions`` of the true L0, rounded: the
   true L0 and about 75% of it, as SynthSAEBench reports L0 25 and 20), every
   registered architecture trains at width ``width`` with one recipe. The
   k-architectures (``penalty_kind`` "none") get ``k = target``; the others train
   with ``TrainConfig(target_l0=target)``, the engine's L0 controller, from a low
   start per penalty kind. The held-out L0 of each run is in the table beside its
   target.
2. **Scored against the truth** on ``n_eval`` fresh samples: MCC, mean F1 of
   latents as detectors of their best-matching feature, precision, recall,
   uniqueness, explained variance, and the absorption rate over the trees' parents.
3. **Judged by the theory**, three lenses on ``n_check`` samples:
   - *common lam*: :func:`toysae.theory.check_sae` at one ``lam`` for all (the atom
     stationarity, the certified hierarchy steps, the amortisation gap): favours the
     SAEs trained on about that L1 objective;
   - *matched lam*: the same at the ``lam`` whose re-solved optimal codes have the
     SAE's own L0 (:func:`toysae.theory.sae_lam_for_l0`), each SAE asked at its own
     sparsity;
   - *own codes*: :func:`toysae.theory.sae_decoder_stationarity`, the decoder against
     the best decoder for the codes its own encoder gives (no penalty, any
     architecture): the energy-weighted mean atom angle and the loss a refit saves.
   :class:`toysae.dictlearn.learner.DictionaryLearner` on the common-lam objective is
   the reference a stationary point looks like (one per seed).
4. **Verdicts with intervals.** Every number is a mean over seeds with a 95%
   Student-t interval (:mod:`toysae.stats`); a difference, and each of the paper's
   pairwise F1 orders, is called only where intervals separate. Whether any theory
   number predicts the truth is Spearman's rho over all SAE runs (architectures x
   seeds x targets) with a bootstrap interval.
5. **Absorption over training** for ``track`` (its first seed and target): absorption,
   MCC and the theory's verdict along the run, through the engine's ``eval_fn``.

With ``work_dir`` every finished run (one architecture, seed and target) is kept as a
JSON file, so a stopped run continues where it stopped.

The SynthSAEBench paper (Chanin & Garriga-Alonso 2026, arXiv 2602.14687) reports on
its 16k world at L0 = 25 (F1 / MCC): Matryoshka 0.879 / 0.793, BatchTopK 0.732 /
0.757, JumpReLU 0.732 / 0.753, standard L1 0.556 / 0.604, Matching Pursuit 0.446 /
0.693. The table sets ours beside them.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from toysae import metrics
from toysae._config import POSITIVE, Bounds, JsonMixin, Seed, validate_fields
from toysae._io import write_text
from toysae._validation import check_choice, check_float, check_tuple, shifted_seed
from toysae.data import SyntheticConfig, SyntheticData
from toysae.dictlearn import sparse_code
from toysae.dictlearn.learner import DictionaryLearner
from toysae.experiments._run_store import RunStore
from toysae.experiments.synthsaebench import PAPER, paper_orders
from toysae.sae import ARCHITECTURES, TrainConfig, make_sae, start_coef, train_sae
from toysae.stats import (
    Interval,
    check_seeds,
    compare,
    mean_interval,
    not_resolved,
    rank_correlation,
)
from toysae.theory import (
    check_optimality,
    check_sae,
    decoder_stationarity,
    sae_decoder_stationarity,
    sae_lam_for_l0,
)

NAME = "architectures-under-theory"
DESCRIPTION = ("Every SAE architecture at a controlled, matched L0 over seeds on "
               "benchmark-grade hierarchical data: MCC, F1, absorption against the truth with "
               "95% intervals, and first-order optimality through three lenses.")

DICTLEARN = "dictlearn"
# A held-out L0 within this of its target counts as matched
L0_TOLERANCE = 0.03

# Every number of a run summarised over seeds, then the theory numbers and the truth
# metrics the correlations pair up
SUMMARISED = ("l0", "mcc", "f1", "precision", "recall", "uniqueness", "explained_variance",
              "absorption", "stationarity_median", "n_certified", "amortisation_gap",
              "lam_matched", "stationarity_matched", "n_certified_matched",
              "amortisation_gap_matched", "decoder_angle", "decoder_loss_drop")
THEORY = ("stationarity_median", "n_certified", "amortisation_gap", "stationarity_matched",
          "n_certified_matched", "amortisation_gap_matched", "decoder_angle",
          "decoder_loss_drop")
TRUTH = ("f1", "mcc")


def architectures() -> tuple[str, ...]:
    """Every registered architecture, in listing order (``toysae.sae.ARCHITECTURES``)."""
    return tuple(ARCHITECTURES)


def k_architectures() -> tuple[str, ...]:
    """The architectures whose sparsity is set by ``k``: those with no penalty
    (``penalty_kind == "none"``); the rest train to the target with the L0 controller."""
    return tuple(name for name in architectures() if takes_k(name))


def takes_k(name: str) -> bool:
    return ARCHITECTURES[name].penalty_kind == "none"


def train_recipe(n_samples: int, batch_size: int = 1024) -> TrainConfig:
    return TrainConfig(n_samples=n_samples, batch_size=batch_size, lr=3e-3, log_every=100)


def _distinct(values: tuple, name: str) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat, got {list(values)}")


@dataclass(frozen=True)
class Config(JsonMixin):
    data: SyntheticConfig = field(default_factory=SyntheticConfig.synth_small)
    width: Annotated[int, Bounds(8)] = 512
    architectures: tuple[str, ...] = field(default_factory=architectures)
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds: initialisation and data order
    l0_fractions: Annotated[tuple[float, ...], Bounds(0.0, 4.0, min_inclusive=False)] = \
        (1.0, 0.75)  # targets as fractions of the true L0
    n_train: int = 262_144  # the fixed training set every SAE sees (several epochs)
    train: TrainConfig = field(default_factory=lambda: train_recipe(1_000_000, batch_size=256))
    # where taken (matryoshka); None: width/8 .. width
    prefix_sizes: Annotated[tuple[int, ...] | None, Bounds(1)] = None
    n_eval: Annotated[int, Bounds(64)] = 8192
    n_check: Annotated[int, Bounds(64)] = 1024
    lam: Annotated[float, POSITIVE] = 0.1  # the common objective of the first lens
    lam_rtol: Annotated[float, POSITIVE] = 0.02  # of the matched lam's L0
    dictlearn_samples: int = 65_536
    dictlearn_epochs: Annotated[int, Bounds(1)] = 8
    absorption_min_cosine: Annotated[float, Bounds(-1.0, 1.0)] = 0.1
    track: str = "topk"
    track_points: Annotated[int, Bounds(2)] = 10
    track_check: Annotated[int, Bounds(64)] = 1024
    n_boot: Annotated[int, Bounds(100)] = 2000  # bootstrap resamples of the correlations
    work_dir: str | None = None  # keeps each finished run; a rerun continues from them
    seed: Seed = 0  # the world, its training and evaluation samples

    def __post_init__(self):
        validate_fields(self)
        if not self.data.hierarchy_pairs:
            raise ValueError("data must have a hierarchy (tree_roots or hierarchy): absorption "
                             "is measured on its (parent, child) pairs")
        # the registry is read when the config is built, and the minimums are other fields
        check_tuple(self.architectures, "architectures", check_choice,
                    choices=architectures())
        _distinct(self.architectures, "architectures")
        check_seeds(self.seeds)
        check_tuple(self.l0_fractions, "l0_fractions", check_float, minimum=0.0,
                    min_inclusive=False)
        _distinct(self.l0_fractions, "l0_fractions")
        if self.train.target_l0 is not None:
            raise ValueError("train.target_l0 must be None: the experiment sets each run's "
                             "target from l0_fractions")
        if self.n_train < self.train.batch_size:
            raise ValueError(f"n_train must be >= train.batch_size ({self.train.batch_size}), "
                             f"got {self.n_train}")
        if self.dictlearn_samples < self.width:
            raise ValueError(f"dictlearn_samples must be >= width ({self.width}), got "
                             f"{self.dictlearn_samples}")
        check_choice(self.track, "track", self.architectures)

    @classmethod
    def quick(cls) -> Config:
        return cls(data=SyntheticConfig.synth_small(n_features=512, d=64, tree_roots=4),
                   width=128, seeds=(0, 1), l0_fractions=(1.0,), n_train=16_384,
                   train=train_recipe(120_000, batch_size=128), n_eval=2048, n_check=512,
                   dictlearn_samples=4096, dictlearn_epochs=3, track_points=3,
                   track_check=256, n_boot=500)


@dataclass(frozen=True)
class Scores(JsonMixin):
    """One run: a learner at one training seed and one L0 target."""

    name: str
    seed: int
    target_l0: int | None  # None for dictionary learning (its sparsity is lam's)
    sparsity_coef: float | None  # where the controller ended (penalty architectures)
    k: int | None  # k (k-architectures)
    trained: bool  # the trainer's success (a controlled run that missed: False)
    train_message: str
    l0: float  # on the evaluation samples
    mcc: float
    f1: float
    precision: float
    recall: float
    uniqueness: float
    explained_variance: float
    absorption: float  # mean over parents present in the evaluation samples
    # the common-lam lens
    objective: float  # the judged objective per sample, with optimal codes (lower: better)
    stationarity_median: float  # atom-stationarity violation over alive atoms
    stationarity_max: float
    n_stationary: int  # alive atoms within tolerance
    n_alive: int  # atoms with code mass under the optimal codes
    n_certified: int  # verified hierarchy descent steps
    certified_drop: float  # their total verified objective drop (units of the objective)
    amortisation_gap: float | None  # relative; None for dictionary learning
    passed: bool  # every first-order condition holds
    # the matched-lam lens
    lam_matched: float  # the lam whose optimal codes have this learner's L0
    lam_matched_l0_error: float  # relative miss of that L0
    stationarity_matched: float
    n_certified_matched: int
    amortisation_gap_matched: float | None
    # the own-codes lens
    decoder_angle: float  # degrees, energy-weighted mean over live atoms
    decoder_loss_drop: float  # relative loss a least-squares decoder saves

    @property
    def l0_error(self) -> float | None:
        """Relative miss of the held-out L0 from the target (None without a target)."""
        return None if self.target_l0 is None else self.l0 / self.target_l0 - 1


@dataclass(frozen=True)
class Summary(JsonMixin):
    """One learner at one target over its seeds: ``intervals[metric]`` is an
    :class:`toysae.stats.Interval` as a dict (mean, low, high, n, level, method)."""

    name: str
    target_l0: int | None
    seeds: tuple[int, ...]
    intervals: dict

    def interval(self, metric: str) -> Interval | None:
        value = self.intervals.get(metric)
        return None if value is None else Interval(**value)


@dataclass(frozen=True)
class Correlation(JsonMixin):
    """Spearman's rho of a theory number with a truth metric over the SAE runs at one
    target (``target_l0``) or pooled over the targets (None), with its bootstrap interval;
    ``rho`` None (and ``reason``) where it is undefined."""

    theory: str
    truth: str
    target_l0: int | None
    n: int
    rho: float | None
    low: float | None
    high: float | None
    resolved: bool  # the interval excludes 0
    reason: str = ""


@dataclass(frozen=True)
class Result(JsonMixin):
    config: Config
    data_scale: float  # the raw data's sqrt(E ||x||^2), divided out
    true_l0: float
    targets: tuple  # the L0 targets, one per l0_fraction
    runs: tuple  # Scores, every learner x seed x target, then dictionary learning per seed
    summaries: tuple  # Summary per learner and target (dictionary learning: target None)
    correlations: tuple  # Correlation per theory number x truth metric
    track_samples: tuple  # samples seen at each tracked point
    track: tuple  # ((name, values), ...) along training of config.track
    ranking: tuple  # one sentence per target: how the paper's pairwise orders fare here
    findings: tuple  # sentences, each calling a difference only where intervals separate
    wall_time: float  # seconds for the runs done in this call (stored ones are free)


# -- one run ------------------------------------------------------------------------------
def _prefix_sizes(config: Config) -> tuple:
    if config.prefix_sizes is not None:
        return tuple(config.prefix_sizes)
    w = config.width
    return tuple(sorted({max(1, w // 8), max(1, w // 4), max(1, w // 2), w}))


def sae_kwargs(name: str, config: Config, k: int, seed: int) -> dict:
    kwargs = {"seed": seed}
    if takes_k(name):
        kwargs["k"] = k
        if "prefix_sizes" in inspect.signature(ARCHITECTURES[name]).parameters:
            kwargs["prefix_sizes"] = _prefix_sizes(config)
    return kwargs


def encode(sae, X: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return sae.encode(torch.from_numpy(X)).numpy()


def _truth_scores(Z: np.ndarray, x_hat: np.ndarray, D: np.ndarray, ev, F: np.ndarray,
                  config: Config) -> dict:
    precision, recall, f1 = metrics.detection_scores(Z, ev.codes, F, D)
    absorption = metrics.absorption_rate(Z, ev.codes, F, D, config.data.hierarchy_pairs,
                                         min_cosine=config.absorption_min_cosine)
    return dict(l0=float(metrics.l0(Z)), mcc=metrics.mcc(D, F), f1=float(f1.mean()),
                precision=float(precision.mean()), recall=float(recall.mean()),
                uniqueness=metrics.uniqueness(F, D),
                explained_variance=metrics.explained_variance(ev.x, x_hat),
                absorption=float(np.nanmean(absorption)) if np.isfinite(absorption).any()
                else 0.0)


def _theory_scores(report, optimal_codes) -> dict:
    """The first-order verdict on a dictionary, with its optimal codes (alive: code mass)."""
    atoms, hier = report.atoms, report.hierarchy
    alive = np.asarray(abs(optimal_codes).sum(axis=0)).ravel() > 0
    v = atoms.violation[alive] if alive.any() else np.zeros(1)
    return dict(objective=float(report.objective) / report.n_samples,
                stationarity_median=float(np.median(v)), stationarity_max=float(v.max()),
                n_stationary=int((atoms.violation[alive] <= atoms.tol).sum()),
                n_alive=int(alive.sum()), n_certified=int(hier.n_certified),
                certified_drop=float(sum(s.verified_drop for s in hier.steps if s.passed)),
                passed=bool(report.passed))


def _track_fn(ev, F: np.ndarray, config: Config):
    """``eval_fn`` for the engine: absorption and the theory's verdict at a logging step,
    on the first ``track_check`` evaluation samples."""
    Xs = ev.x[:config.track_check]

    def evaluate(sae) -> dict[str, float]:
        Z = encode(sae, Xs)
        D = sae.dictionary.detach().numpy()
        rates = metrics.absorption_rate(Z, ev.codes[:len(Xs)], F, D,
                                        config.data.hierarchy_pairs,
                                        min_cosine=config.absorption_min_cosine)
        rep = check_sae(sae, Xs, config.lam, max_steps=50)
        theory = _theory_scores(rep.optimality, rep.amortisation.optimal_codes)
        return {"absorption": float(np.nanmean(rates)) if np.isfinite(rates).any() else 0.0,
                "eval_l0": float(metrics.l0(Z)), "mcc": metrics.mcc(D, F),
                "n_certified": float(theory["n_certified"]),
                "certified_drop": theory["certified_drop"],
                "stationarity_median": theory["stationarity_median"]}

    return evaluate


TRACKED = ("absorption", "n_certified", "certified_drop", "stationarity_median", "eval_l0",
           "mcc")


def train_run(name: str, seed: int, target: int, world: _World, config: Config,
               tracked: bool):
    tc = config.train.replace(seed=seed)
    if not takes_k(name):
        tc = tc.replace(target_l0=float(target),
                        sparsity_coef=start_coef(ARCHITECTURES[name].penalty_kind))
    if tracked:
        tc = tc.replace(log_every=max(1, tc.n_steps // (config.track_points - 1)))
    sae = make_sae(name, world.X.shape[1], config.width,
                   **sae_kwargs(name, config, target, seed))
    eval_fn = _track_fn(world.ev, world.F, config) if tracked else None
    result = train_sae(sae, world.X, tc, progress=False, eval_fn=eval_fn)
    return sae.eval(), result


def _sae_run(name: str, seed: int, target: int, world: _World, config: Config,
             tracked: bool) -> tuple[Scores, dict]:
    sae, result = train_run(name, seed, target, world, config, tracked)
    ev, X_check = world.ev, world.ev.x[:config.n_check]
    Z = encode(sae, ev.x)
    with torch.no_grad():
        x_hat = sae(torch.from_numpy(ev.x)).x_hat.numpy()
    D = sae.dictionary.detach().numpy()
    common = check_sae(sae, X_check, config.lam)
    matched_lam = sae_lam_for_l0(sae, X_check, rtol=config.lam_rtol)
    matched = check_sae(sae, X_check, matched_lam.lam)
    own = sae_decoder_stationarity(sae, X_check)
    track = {}
    if tracked:
        h = result.history
        track = {"samples": [int(s) for s in h["samples"]],
                 **{key: [float(v) for v in h[key]] for key in TRACKED}}
    scores = Scores(
        name=name, seed=seed, target_l0=target,
        sparsity_coef=None if takes_k(name) else float(result.final_sparsity_coef),
        k=target if takes_k(name) else None, trained=bool(result.success),
        train_message=result.message,
        **_truth_scores(Z, x_hat, D, ev, world.F, config),
        **_theory_scores(common.optimality, common.amortisation.optimal_codes),
        amortisation_gap=float(common.amortisation.relative_gap),
        **_matched_scores(matched_lam, matched),
        amortisation_gap_matched=float(matched.amortisation.relative_gap),
        decoder_angle=float(own.mean_angle_deg), decoder_loss_drop=float(own.relative_loss_drop))
    return scores, track


def _matched_scores(matched_lam, report) -> dict:
    theory = _theory_scores(report.optimality, report.amortisation.optimal_codes)
    return dict(lam_matched=float(matched_lam.lam),
                lam_matched_l0_error=float(matched_lam.relative_error),
                stationarity_matched=theory["stationarity_median"],
                n_certified_matched=theory["n_certified"])


def _dictlearn_run(seed: int, world: _World, config: Config) -> Scores:
    """Dictionary learning on the common-lam objective: the stationary reference. Its codes
    are optimal at ``lam``, so its matched lam is ``lam`` and both lenses agree."""
    learner = DictionaryLearner(config.width, config.lam, max_epochs=config.dictlearn_epochs,
                                batch_size=1024, seed=seed, progress=False)
    learner.fit(world.X[:config.dictlearn_samples])
    D = learner.components_.astype(np.float64)
    ev = world.ev
    Z = np.asarray(sparse_code(ev.x.astype(np.float64), D, config.lam, nonneg=True,
                               dtype=torch.float64).codes)
    X_check = ev.x[:config.n_check].astype(np.float64)
    report = check_optimality(X_check, D, Z[:config.n_check], config.lam)
    theory = _theory_scores(report, Z[:config.n_check])
    own = decoder_stationarity(X_check, D, Z[:config.n_check])
    return Scores(name=DICTLEARN, seed=seed, target_l0=None, sparsity_coef=config.lam, k=None,
                  trained=True, train_message="", **_truth_scores(Z, Z @ D, D, ev, world.F,
                                                                  config),
                  **theory, amortisation_gap=None, lam_matched=config.lam,
                  lam_matched_l0_error=0.0, stationarity_matched=theory["stationarity_median"],
                  n_certified_matched=theory["n_certified"], amortisation_gap_matched=None,
                  decoder_angle=float(own.mean_angle_deg),
                  decoder_loss_drop=float(own.relative_loss_drop))


# -- the world and the store of finished runs ---------------------------------------------
@dataclass
class _World:
    X: np.ndarray  # the training set, unit scale
    ev: object  # the evaluation Batch, unit scale
    F: np.ndarray  # the true features
    scale: float
    true_l0: float


def _world(config: Config) -> _World:
    gen = SyntheticData(config.data)
    train = gen.sample(config.n_train, seed=config.seed)
    ev = gen.sample(config.n_eval, seed=shifted_seed(config.seed, 1))
    scale = float(np.sqrt(np.mean(np.sum(train.x.astype(np.float64) ** 2, axis=1))))
    return _World(X=(train.x / scale).astype(np.float32),
                  ev=ev._replace(x=(ev.x / scale).astype(np.float32)), F=gen.features,
                  scale=scale, true_l0=float(metrics.l0(train.codes)))


class _Store(RunStore):
    """Finished runs (:class:`toysae.experiments._run_store.RunStore`), keyed by every field
    but the lists of architectures, seeds and targets (and ``track``, ``n_boot``), so a
    larger run reuses a smaller one's runs."""

    def __init__(self, config: Config):
        super().__init__(config, ("architectures", "seeds", "l0_fractions", "track", "n_boot"))

    def get(self, unit: str, tracked: bool) -> tuple[Scores, dict] | None:
        stored = super().get(unit)
        if stored is None or (tracked and not stored["track"]):
            return None  # not kept, or kept without the tracking this run asks for
        return Scores.from_dict(stored["scores"]), stored["track"]

    def put(self, unit: str, scores: Scores, track: dict) -> None:
        super().put(unit, {"scores": scores.to_dict(), "track": track})


def targets_of(config: Config, true_l0: float) -> tuple[int, ...]:
    """The L0 targets: each fraction of the true L0, rounded, at least 1."""
    return tuple(max(1, round(f * true_l0)) for f in config.l0_fractions)


def run(config: Config) -> Result:
    start = time.perf_counter()
    world = _world(config)
    store = _Store(config)
    targets = targets_of(config, world.true_l0)
    runs, track = [], {}
    for target in targets:
        for name in config.architectures:
            for seed in config.seeds:
                tracked = (name == config.track and seed == config.seeds[0]
                           and target == targets[0])
                unit = f"{name}-seed{seed}-l0{target}"
                done = store.get(unit, tracked)
                if done is None:
                    done = _sae_run(name, seed, target, world, config, tracked)
                    store.put(unit, *done)
                runs.append(done[0])
                if tracked:
                    track = done[1]
    for seed in config.seeds:
        unit = f"{DICTLEARN}-seed{seed}"
        done = store.get(unit, False)
        if done is None:
            done = (_dictlearn_run(seed, world, config), {})
            store.put(unit, *done)
        runs.append(done[0])
    summaries = summarise(runs)
    # Within each target, and pooled: pooled runs mix the targets' own differences (a
    # sparser target raises F1 and moves every theory number), which a within-target
    # correlation cannot mistake for the theory predicting the truth.
    saes = [r for r in runs if r.name != DICTLEARN]
    correlations = sum((correlate([r for r in saes if r.target_l0 == t], config.n_boot,
                                  config.seed, t) for t in targets), ())
    if len(targets) > 1:
        correlations += correlate(saes, config.n_boot, config.seed)
    ranking = tuple(ranking_sentence([s for s in summaries if s.target_l0 == t], t)
                    for t in targets)
    track_samples = tuple(track.pop("samples", ()))
    return Result(config=config, data_scale=world.scale, true_l0=world.true_l0,
                  targets=targets, runs=tuple(runs), summaries=summaries,
                  correlations=correlations, track_samples=track_samples,
                  track=tuple((k, tuple(v)) for k, v in track.items()), ranking=ranking,
                  findings=findings(runs, summaries, correlations, targets),
                  wall_time=time.perf_counter() - start)


# -- verdicts ------------------------------------------------------------------------------
def summarise(runs) -> tuple[Summary, ...]:
    """One Summary per (learner, target), in the order the runs came."""
    groups: dict[tuple, list[Scores]] = {}
    for r in runs:
        groups.setdefault((r.name, r.target_l0), []).append(r)
    out = []
    for (name, target), members in groups.items():
        intervals = {}
        for metric in SUMMARISED:
            values = [getattr(r, metric) for r in members]
            if all(v is not None for v in values):
                intervals[metric] = mean_interval(values).to_dict()
        out.append(Summary(name=name, target_l0=target,
                           seeds=tuple(r.seed for r in members), intervals=intervals))
    return tuple(out)


def correlate(runs, n_boot: int, seed: int, target_l0: int | None = None
              ) -> tuple[Correlation, ...]:
    """Spearman's rho of every theory number with every truth metric over ``runs`` (labelled
    with ``target_l0``: the runs' common target, or None when they are pooled)."""
    out = []
    for theory in THEORY:
        for truth in TRUTH:
            pairs = [(getattr(r, theory), getattr(r, truth)) for r in runs
                     if getattr(r, theory) is not None]
            x, y = (np.array(v, dtype=float) for v in zip(*pairs, strict=True)) if pairs \
                else (np.zeros(0), np.zeros(0))
            reason = ""
            if len(pairs) < 3:
                reason = f"{len(pairs)} runs: a rank correlation needs 3"
            elif np.ptp(x) == 0 or np.ptp(y) == 0:
                reason = f"{theory if np.ptp(x) == 0 else truth} is the same in every run"
            if reason:
                out.append(Correlation(theory, truth, target_l0, len(pairs), None, None, None,
                                       False, reason))
                continue
            rc = rank_correlation(x, y, n_boot=n_boot, seed=seed)
            out.append(Correlation(theory, truth, target_l0, rc.n, rc.rho, rc.low, rc.high,
                                   rc.resolved))
    return tuple(out)


def ranking_sentence(summaries, target) -> str:
    """How each of the paper's pairwise F1 orders fares at ``target``: reproduced or
    reversed where the intervals separate, not resolved otherwise (paper ties skipped;
    :func:`toysae.experiments.synthsaebench.paper_orders`)."""
    return paper_orders({s.name: s.interval("f1") for s in summaries if s.name in PAPER},
                        "f1", target)


def _best(summaries, metric: str) -> str:
    """Which learner leads on ``metric``, and whether the lead is resolved."""
    ranked = sorted(summaries, key=lambda s: -s.interval(metric).mean)
    first, second = ranked[0], ranked[1]
    a, b = first.interval(metric), second.interval(metric)
    if compare(a, b) > 0:
        return (f"{first.name} leads on {metric} ({a}) ahead of {second.name} ({b}), "
                "intervals separate")
    return (f"{first.name} has the highest mean {metric} ({a}), but its lead over "
            f"{second.name} ({b}) is {not_resolved(min(a.n, b.n))}")


def findings(runs, summaries, correlations, targets) -> tuple[str, ...]:
    out = []
    saes = [r for r in runs if r.name != DICTLEARN]
    worst = max(saes, key=lambda r: abs(r.l0_error))
    matched = all(abs(r.l0_error) <= L0_TOLERANCE for r in saes)
    out.append(f"Every SAE run's held-out L0 within {L0_TOLERANCE:.0%} of its target: "
               f"{matched} (largest miss: {worst.name}, seed {worst.seed}, target "
               f"{worst.target_l0}: L0 {worst.l0:.2f}, {worst.l0_error:+.1%}).")
    missed = [r for r in saes if not r.trained]
    if missed:
        out.append("Runs whose trainer reported a miss: " + "; ".join(
            f"{r.name} seed {r.seed} target {r.target_l0}" for r in missed) + ".")
    for target in targets:
        group = [s for s in summaries if s.target_l0 == target]
        if len(group) >= 2:
            out.append(f"At L0 {target}: " + "; ".join(_best(group, m) for m in TRUTH) + ".")
    for target in targets:
        out.append(_correlation_finding([c for c in correlations if c.target_l0 == target],
                                        f"the SAE runs at L0 {target}"))
    pooled = [c for c in correlations if c.target_l0 is None]
    if pooled:
        out.append(_correlation_finding(pooled, "all SAE runs pooled over the targets")
                   + " Pooled runs also carry the difference between the targets.")
    return tuple(out)


def _correlation_finding(correlations, over: str) -> str:
    called = [c for c in correlations if c.rho is not None and c.resolved]
    if not called:
        return (f"Over {over}, no theory number's rank correlation with F1 or MCC is "
                "resolved: none predicts the truth there.")
    return (f"Over {over}, resolved rank correlations (interval excludes 0): " + "; ".join(
        f"{c.theory} with {c.truth}: rho {c.rho:+.2f} [{c.low:+.2f}, {c.high:+.2f}]"
        for c in called) + f" ({len(called)} of {len(correlations)} pairs).")


# -- outputs ---------------------------------------------------------------------------------
def save(result: Result, out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from toysae.plotting import save_figure, style, wrap

    style()
    out_dir = Path(out_dir)
    fig, axes = plt.subplots(2, 2, figsize=(9.0, 10.2))
    _panel_truth(axes[0, 0], result)
    _panel_lenses(axes[0, 1], result)
    _panel_theory_vs_truth(axes[1, 0], result)
    _panel_track(axes[1, 1], result)
    cfg = result.config
    l0 = [r.l0 for r in result.runs if r.target_l0 is not None]
    fig.suptitle(wrap(
        f"SAE architectures at L0 targets {', '.join(str(t) for t in result.targets)} "
        f"(held-out L0 {min(l0):.1f}-{max(l0):.1f}; true L0 {result.true_l0:.1f}) on "
        f"{cfg.data.n_features} hierarchical features in d = {cfg.data.d}, width {cfg.width}, "
        f"{len(cfg.seeds)} seeds (means, 95% intervals)", 95))
    fig.tight_layout()
    return [save_figure(fig, out_dir / f"{NAME}.png"),
            write_text(out_dir / f"{NAME}.md", table(result))]


def _errorbar(ax, x, intervals, **kwargs):
    means = np.array([i.mean for i in intervals])
    lows = np.array([i.mean - (i.low if i.resolved else i.mean) for i in intervals])
    highs = np.array([(i.high if i.resolved else i.mean) - i.mean for i in intervals])
    ax.errorbar(x, means, yerr=[lows, highs], fmt="o", capsize=3, **kwargs)


def _sae_names(result: Result) -> list[str]:
    return [n for n in result.config.architectures]


def _legend_below(ax, handles=None, labels=None, ncol: int = 2, below: float = -0.3) -> None:
    """The legend under the panel (and its tick labels), off the data."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, below), ncol=ncol,
              handlelength=1.5, columnspacing=1.0)


def _panel_truth(ax, result: Result) -> None:
    names = _sae_names(result)
    x = np.arange(len(names))
    width = 0.8 / len(result.targets)
    for j, target in enumerate(result.targets):
        by = {s.name: s for s in result.summaries if s.target_l0 == target}
        _errorbar(ax, x + (j - (len(result.targets) - 1) / 2) * width,
                  [by[n].interval("f1") for n in names], label=f"F1 at L0 {target}")
    paper = [(i, PAPER[n][0]) for i, n in enumerate(names) if n in PAPER]
    if paper:
        ax.scatter(*zip(*paper, strict=True), marker="_", s=300, color="black",
                   label="paper F1 (16k world, L0 25)")
    ax.set_xticks(x, names, rotation=35, ha="right", rotation_mode="anchor")
    ax.set_ylabel("mean F1 of latents as detectors")
    ax.set_ylim(0, 1.02)
    ax.set_title("Against the truth: F1 by architecture")
    _legend_below(ax, below=-0.36)


def _panel_lenses(ax, result: Result) -> None:
    names = _sae_names(result)
    target = result.targets[0]
    by = {s.name: s for s in result.summaries if s.target_l0 == target}
    x = np.arange(len(names))
    _errorbar(ax, x - 0.15, [by[n].interval("stationarity_median") for n in names],
              label=f"common lam = {result.config.lam:g}")
    _errorbar(ax, x + 0.15, [by[n].interval("stationarity_matched") for n in names],
              label="lam matched to its L0")
    values = [by[n].interval(m).mean for n in names
              for m in ("stationarity_median", "stationarity_matched")]
    log = min(values) > 0 and max(values) > 10 * min(values)  # a narrow range reads linear
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("median atom-stationarity\nviolation (ratio" + (", log)" if log else ")"))
    ax.set_xticks(x, names, rotation=35, ha="right", rotation_mode="anchor")
    twin = ax.twinx()
    angles = [by[n].interval("decoder_angle") for n in names]
    twin.plot(x, [a.mean for a in angles], "s--", color="tab:gray",
              label="own codes: mean atom angle (right)")
    twin.set_ylabel("decoder angle to its best atom,\nown codes (degrees)")
    ax.set_title(f"Three theory lenses at L0 {target}")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    _legend_below(ax, h1 + h2, l1 + l2, ncol=2, below=-0.36)


def _panel_theory_vs_truth(ax, result: Result) -> None:
    from toysae.plotting import say

    defined = [c for c in result.correlations if c.rho is not None and c.truth == "f1"
               and c.target_l0 == result.targets[0]]
    if not defined:
        say(ax, f"no theory number has a defined\nrank correlation with F1 at L0 "
                f"{result.targets[0]}", title="Theory vs truth")
        return
    strongest = max(defined, key=lambda c: abs(c.rho))
    saes = [r for r in result.runs if r.name != DICTLEARN
            and r.target_l0 == strongest.target_l0]
    for name in _sae_names(result):
        mine = [r for r in saes if r.name == name]
        ax.scatter([getattr(r, strongest.theory) for r in mine], [r.f1 for r in mine],
                   label=name, alpha=0.8)
    ax.set_xlabel(f"{strongest.theory}\n(the theory number with the largest |rho| with F1)")
    ax.set_ylabel("mean F1 of latents as detectors")
    ax.set_title(f"Theory vs truth at L0 {strongest.target_l0} ({strongest.n} SAE runs):\n"
                 f"Spearman rho {strongest.rho:+.2f} [{strongest.low:+.2f}, "
                 f"{strongest.high:+.2f}]")
    _legend_below(ax, ncol=4, below=-0.3)


def _track_points(samples: np.ndarray) -> np.ndarray:
    """Indices of the tracked points to draw: a point logged within 2% of the run's length
    before the next one (the last log step and the end of training) is the same
    measurement twice; the later one is kept."""
    span = max(float(samples.max() - samples.min()), 1.0) if samples.size else 1.0
    keep = [k for k in range(samples.size)
            if k == samples.size - 1 or samples[k + 1] - samples[k] > 0.02 * span]
    return np.array(keep, dtype=int)


def _panel_track(ax, result: Result) -> None:
    from toysae.plotting import say

    track = dict(result.track)
    title = (f"{result.config.track} along training (seed {result.config.seeds[0]}, L0 "
             f"{result.targets[0]})")
    if not track:
        say(ax, "no run tracked", title=title)
        return
    from matplotlib.ticker import MaxNLocator

    s = np.asarray(result.track_samples, dtype=float)
    keep = _track_points(s)
    s = s[keep] / 1000  # in thousands: six-digit tick labels crowd the panel
    ax.plot(s, np.asarray(track["absorption"])[keep], "o-", color="tab:red",
            label="absorption rate")
    ax.plot(s, np.asarray(track["mcc"])[keep], "s-", color="tab:blue", label="MCC")
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.set_xlabel("training samples seen (thousands)")
    ax.set_ylabel("absorption rate / MCC")
    ax.set_ylim(0, 1.02)
    certified = np.asarray(track["n_certified"], dtype=float)[keep]
    h, labels = ax.get_legend_handles_labels()
    if certified.any():
        twin = ax.twinx()
        twin.plot(s, certified, "^--", color="tab:gray", label="certified hierarchy steps "
                                                                "(right)")
        twin.set_ylim(0, 1.15 * max(1.0, certified.max()))
        twin.set_ylabel("certified hierarchy descent\nsteps (count)")
        h2, l2 = twin.get_legend_handles_labels()
        h, labels = h + h2, labels + l2
    else:
        ax.text(0.5, 0.5, "no certified hierarchy step\nat any tracked point",
                transform=ax.transAxes, ha="center", va="center")
    ax.set_title(title + ":\nabsorption, MCC, certified steps")
    _legend_below(ax, h, labels, ncol=2, below=-0.2)


_COLUMNS = (("L0", "l0", 2), ("MCC", "mcc", 3), ("F1", "f1", 3),
            ("EV", "explained_variance", 3), ("absorption", "absorption", 3),
            ("stationarity, common lam", "stationarity_median", 3),
            ("certified steps", "n_certified", 1), ("gap, common lam", "amortisation_gap", 3),
            ("matched lam", "lam_matched", 3), ("stationarity, matched", "stationarity_matched",
                                                3),
            ("gap, matched", "amortisation_gap_matched", 3),
            ("decoder angle (deg)", "decoder_angle", 2),
            ("decoder loss drop", "decoder_loss_drop", 3))


def _cell(summary: Summary, metric: str, digits: int) -> str:
    interval = summary.interval(metric)
    return "-" if interval is None else interval.format(digits)


# The compact table of the docs (toysae report): sparsity and the two truth scores
SUMMARY_METRICS = ("l0", "mcc", "f1")


def summary_table(summaries, targets, true_l0: float, lam: float) -> str:
    """Markdown: one row per learner and target (dictionary learning, which has no target,
    last), its L0, MCC and F1 as mean [95% interval] over the seeds, as :func:`table`
    writes them, under a line giving the true L0 and the dictionary learner's lam."""
    digits = {metric: d for _, metric, d in _COLUMNS}
    names = {metric: label for label, metric, _ in _COLUMNS}
    seeds = sorted({len(s.seeds) for s in summaries})
    lines = [f"True L0 {true_l0:.2f}; each cell the mean over {' or '.join(map(str, seeds))} "
             f"seeds [95% Student-t interval]; {DICTLEARN} solves the L1 objective at lam = "
             f"{lam:g}.", "",
             "| learner | target L0 | " + " | ".join(names[m] for m in SUMMARY_METRICS) + " |",
             "|" + "---|" * (len(SUMMARY_METRICS) + 2)]
    for target in (*targets, None):
        for s in (s for s in summaries if s.target_l0 == target):
            lines.append(f"| {s.name} | {'-' if target is None else target} | "
                         + " | ".join(_cell(s, m, digits[m]) for m in SUMMARY_METRICS) + " |")
    return "\n".join(lines)


def report_tables(data: dict) -> dict[str, str]:
    """The tables ``toysae report`` renders from a stored result (``NAME.json``, parsed):
    ``summary``, :func:`summary_table`."""
    summaries = [Summary.from_dict(s) for s in data["summaries"]]
    return {"summary": summary_table(summaries, tuple(data["targets"]), data["true_l0"],
                                     data["config"]["lam"])}


def table(result: Result) -> str:
    cfg = result.config
    header = ("| learner | target L0 | " + " | ".join(c[0] for c in _COLUMNS)
              + " | paper F1 / MCC |")
    rule = "|" + "---|" * (len(_COLUMNS) + 3)
    lines = [f"# {NAME}", "",
             f"{cfg.data.n_features} features in d = {cfg.data.d} "
             f"({len(cfg.data.hierarchy_pairs)} parent/child pairs), SAE width {cfg.width}, "
             f"true L0 {result.true_l0:.2f}; seeds {list(cfg.seeds)}; each cell the mean "
             "over seeds and its 95% Student-t interval; theory on "
             f"{cfg.n_check} samples (data scaled by 1/{result.data_scale:.3g} to E||x||^2 = "
             "1).", ""]
    for target in (*result.targets, None):
        group = [s for s in result.summaries if s.target_l0 == target]
        if not group:
            continue
        title = (f"L0 target {target}" if target is not None
                 else f"{DICTLEARN} (lam = {cfg.lam:g})")
        lines += ["", f"## {title}", "", header, rule]
        for s in group:
            paper = PAPER.get(s.name)
            lines.append(f"| {s.name} | {'-' if target is None else target} | "
                         + " | ".join(_cell(s, metric, digits) for _, metric, digits in _COLUMNS)
                         + f" | {'-' if paper is None else f'{paper[0]:.3f} / {paper[1]:.3f}'} |")
    groups = sorted({c.target_l0 for c in result.correlations},
                    key=lambda t: (t is None, -(t or 0)))
    names = [f"L0 {t}" if t is not None else "pooled" for t in groups]
    lines += ["", "## Does a theory number predict the truth?", "",
              "Spearman's rho over the SAE runs (architectures x seeds) at each target, and "
              "pooled over the targets; 95% bootstrap interval over the runs.", "",
              "| theory number | " + " | ".join(f"{t}, {n}" for n in names
                                              for t in ("F1", "MCC")) + " |",
              "|---|" + "---|" * (2 * len(groups))]
    by = {(c.theory, c.truth, c.target_l0): c for c in result.correlations}
    for theory in THEORY:
        cells = []
        for group in groups:
            for truth in TRUTH:
                c = by[(theory, truth, group)]
                cells.append(c.reason if c.rho is None else
                             f"{c.rho:+.2f} [{c.low:+.2f}, {c.high:+.2f}]"
                             + (" (resolved)" if c.resolved else ""))
        lines.append(f"| {theory} | " + " | ".join(cells) + " |")
    lines += ["", "## Ranking", "", *[f"- {s}" for s in result.ranking], "",
              "## Findings", "", *[f"- {s}" for s in result.findings], "",
              "Paper: SynthSAEBench-16k at L0 = 25 (arXiv 2602.14687); 'relu' is its standard "
              "L1 SAE.", ""]
    return "\n".join(lines)


def caption(data: dict) -> str:
    """One line of finding for the figure, from a stored result (``toysae report``): who
    leads at the first target, and which theory numbers predict F1 or MCC there."""
    first = data["targets"][0]
    lead = next((f for f in data["findings"] if f.startswith(f"At L0 {first}: ")), "")
    predicts = next((f for f in data["findings"]
                     if f.startswith(f"Over the SAE runs at L0 {first},")), "")
    return " ".join(x for x in (lead, predicts) if x) or data["findings"][0]
