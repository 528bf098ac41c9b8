"""Which L0 is right: SAEs swept from a quarter to four times the true L0 on correlated
worlds with known features, and whether any selector that never sees the truth finds it.

"Sparse but Wrong" (Chanin & Garriga-Alonso 2025, arXiv 2508.16560) reports that an SAE
trained below the true L0 mixes correlated features into its latents to reconstruct
better, that one trained above it finds degenerate mixtures, and that most published SAEs
sit too low; it proposes a proxy that finds the right L0 without ground truth, the *n-th
decoder projection* (below). Here the question is put to toysae's ground truth:

1. **The sweep.** On each world of ``worlds`` (``synth_small``: 2,048 Zipf-firing features
   in d = 256 with 16 trees and a rank-25 copula; ``reference``: the reference toy, 512
   features in d = 256, with its copula made low-rank and strong so that features are
   correlated), rescaled to ``E ||x||^2 = 1``, every architecture of ``architectures``
   (relu trained to its target by the engine's L0 controller; topk and matryoshka at
   ``k = target``) trains at ``width`` for every L0 target ``round(f * true L0)`` of
   ``l0_fractions`` (log-spaced, 1/4 to 4 by default; targets that round to the same
   integer are run once) and every training seed of ``seeds``.
2. **Scored against the truth** on ``n_eval`` fresh samples: MCC, mean F1 of latents as
   detectors, explained variance, and the absorption rate over the trees' parents (only
   where the world has a hierarchy).
3. **Ground-truth-free selectors**, each a number computed without the features, read on
   the curve of its mean over seeds against L0; each picks one L0 per world and
   architecture:
   - ``decoder_projection``: the n-th decoder projection (:func:`decoder_projection`),
     lowest; ``n`` is ``projection_n``, by default the first n of
     :func:`projection_ladder` at or above the largest target of the world's sweep
     (the paper reads ``s_n`` with ``n`` above the right L0, which a user does not know:
     so above every L0 they try);
   - ``stationarity``, ``amortisation_gap``, ``code_kkt``, ``certified_steps``: toysae's
     first-order verdict on the SAE at the ``lam`` whose optimal codes have its own L0
     (:func:`toysae.theory.sae_lam_for_l0`, :func:`toysae.theory.check_sae`): the median
     atom-stationarity violation, the relative amortisation gap, the mean code-KKT
     violation of the encoder's codes (:func:`toysae.theory.code_kkt`) and the number of
     certified hierarchy descent steps; each lowest (the decoder and encoder closest to
     a first-order optimum);
   - ``consistency``: the pairwise MCC of the seeds' decoders (PW-MCC, Song et al. 2025,
     arXiv 2505.20254), highest;
   - ``ev_elbow``: the elbow of explained variance against log L0 (the point farthest
     above the chord from the sweep's first point to its last, both axes scaled to
     [0, 1]; no pick when no point lies above it).
   Ties go to the smaller L0; a number equal at every L0 picks nothing.
4. **Verdicts.** Each pick's L0 over the true L0 (the mean held-out L0 there, with its
   interval), whether it is within 20% of the true L0, and its MCC against the MCC at
   the best L0 in hindsight, a difference called only where 95% intervals over the
   seeds separate (:mod:`toysae.stats`). The per-seed picks (each seed's own curve) say
   how stable a pick is.

The sweep is centred, in log scale, on the true L0: a selector that favours the middle
of whatever range it is given would look right here for that reason alone, which is why
ties go to the sparser end and the elbow is taken on the measured L0.

With ``work_dir`` each finished (world, architecture, target) group, all its seeds, is
kept as a JSON file, so a stopped run continues where it stopped.

Cost: the full config is 153 SAE runs (synth_small: 9 targets, reference: 8, x 3
architectures x 3 seeds) of 1M samples each. Measured on one thread, as CPU time of
single runs at full size (shared 2-core machine): 10.7-22.1 s a run at 1M samples (relu at
its two ends, topk at the true L0, matryoshka), 7.1 s on average over eight runs at 393k
samples, twice that at 1M; about 38 minutes in all on one core. The quick config, both
worlds at 5 targets, 2 seeds: about 22 s of CPU time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from toysae import metrics
from toysae._config import POSITIVE, Bounds, JsonMixin, OneOf, Seed, validate_fields
from toysae._io import write_text
from toysae._validation import check_choice, check_int, check_tuple, shifted_seed, to_numpy
from toysae.data import SyntheticConfig, SyntheticData
from toysae.experiments._run_store import RunStore
from toysae.experiments.architectures_under_theory import (
    architectures,
    encode,
    sae_kwargs,
    takes_k,
    train_recipe,
)
from toysae.experiments.seed_consistency import pair_matrix
from toysae.sae import ARCHITECTURES, TrainConfig, make_sae, start_coef, train_sae
from toysae.stats import (
    Interval,
    check_seeds,
    compare,
    mean_interval,
    not_resolved,
    pair_interval,
)
from toysae.theory import check_sae, code_kkt, sae_dictionary, sae_lam_for_l0

NAME = "l0-sweep"
DESCRIPTION = ("Which L0 is right (arXiv 2508.16560): relu, topk and matryoshka swept from "
               "1/4 to 4x the true L0 on two correlated worlds over seeds; MCC, F1, "
               "absorption and EV against L0 with 95% intervals, and where ground-truth-free "
               "selectors (the n-th decoder projection, the theory numbers, PW-MCC across "
               "seeds, the EV elbow) put the L0.")

WORLDS = ("synth_small", "reference")
# Within this of the true L0 a selector counts as right (the 20%)
WITHIN = 0.2
# A controlled run's held-out L0 within this of its target counts as matched
L0_TOLERANCE = 0.03

# (selector, what it reads, "min" or "max"); the elbow is its own rule
SELECTORS = (("decoder_projection", "projection", "min"),
             ("stationarity", "stationarity", "min"),
             ("amortisation_gap", "amortisation_gap", "min"),
             ("code_kkt", "code_kkt", "min"),
             ("certified_steps", "n_certified", "min"),
             ("consistency", "consistency", "max"),
             ("ev_elbow", "explained_variance", "elbow"))
SELECTOR_NAMES = tuple(s[0] for s in SELECTORS)
LABELS = {"decoder_projection": "n-th decoder projection, lowest (arXiv 2508.16560)",
          "stationarity": "atom stationarity at matched lam, lowest",
          "amortisation_gap": "amortisation gap at matched lam, lowest",
          "code_kkt": "code KKT of the encoder at matched lam, lowest",
          "certified_steps": "certified hierarchy steps at matched lam, fewest",
          "consistency": "PW-MCC across seeds, highest",
          "ev_elbow": "elbow of EV against log L0"}
# Per-run numbers summarised over seeds at each target
SUMMARISED = ("l0", "mcc", "f1", "explained_variance", "absorption", "projection",
              "stationarity", "amortisation_gap", "code_kkt", "n_certified", "lam_matched")
SWEPT = ("relu", "topk", "matryoshka")


def reference_world(**overrides) -> SyntheticConfig:
    """The reference toy (:class:`toysae.data.SyntheticConfig` defaults: 512 features in
    d = 256, about 5 active) with its copula correlated: rank 25, strength 0.5, so a pair of
    features has a firing correlation of about 0.5 u_i . u_j with u unit rows in 25
    dimensions (typically 0.1, up to 0.4), where the default dense copula gives about
    0.02."""
    return SyntheticConfig(**{"correlation": "low_rank", "correlation_rank": 25,
                              "correlation_strength": 0.5, **overrides})


def default_fractions(n: int = 9, low: float = 0.25, high: float = 4.0) -> tuple:
    """``n`` log-spaced fractions of the true L0 from ``low`` to ``high`` (9 by default:
    steps of sqrt 2, the true L0 itself in the middle)."""
    return tuple(float(f) for f in np.round(np.geomspace(low, high, n), 6))


# -- the proxy ---------------------------------------------------------------------------------
def decoder_projection(X, dictionary, b_dec=None, ns=(1,)) -> tuple[float, ...]:
    """The n-th decoder projection ``s_n`` of a decoder on the samples ``X`` (Chanin &
    Garriga-Alonso 2025, arXiv 2508.16560), for each ``n`` of ``ns``.

    The projections of the centred samples on the decoder atoms, ``P = (X - b_dec) @
    dictionary.T`` (B, width), are sorted over the whole matrix, largest first; ``s_n`` is
    the entry at 0-based position ``n * B`` of that order (as the authors' code reads it):
    the level that ``n * B`` projections lie above, i.e. ``n`` latents per sample on
    average. With the true features as the decoder and ``n`` above the true L0 it is the
    largest interference of an inactive feature; a decoder whose atoms mix correlated
    features projects more of every sample onto many atoms and raises it.

    X : (B, d). dictionary : (width, d), the decoder's rows. b_dec : (d,) or None.
    ns : positive ints, each below ``width``.
    """
    X = to_numpy(X, "X", ndim=2)
    D = to_numpy(dictionary, "dictionary", ndim=2)
    if X.shape[0] == 0:
        raise ValueError(f"X must be non-empty, got shape {X.shape}")
    if D.shape[1] != X.shape[1]:
        raise ValueError(f"dictionary must have {X.shape[1]} columns (X's d), got shape "
                         f"{D.shape}")
    ns = check_tuple(ns, "ns", check_int, minimum=1, maximum=D.shape[0] - 1)
    if b_dec is not None:
        b_dec = to_numpy(b_dec, "b_dec", ndim=1)
        if b_dec.shape != (X.shape[1],):
            raise ValueError(f"b_dec must have shape {(X.shape[1],)}, got {b_dec.shape}")
        X = X - b_dec
    flat = (X @ D.T).ravel()
    positions = [flat.size - 1 - n * X.shape[0] for n in ns]  # ascending order's index
    part = np.partition(flat, sorted(set(positions)))
    return tuple(float(part[p]) for p in positions)


# -- picks on a curve ------------------------------------------------------------------------
def pick_extreme(values, rule: str) -> int | None:
    """Index of the lowest (``rule="min"``) or highest (``"max"``) of ``values`` (ordered by
    L0), the first (the smallest L0) among ties; None when every value is the same or none
    is finite (a number that does not move with L0 picks nothing)."""
    rule = check_choice(rule, "rule", ("min", "max"))
    v = np.asarray([np.nan if x is None else x for x in values], dtype=float)
    finite = np.isfinite(v)
    if not finite.any() or np.ptp(v[finite]) == 0:
        return None
    v = np.where(finite, v if rule == "min" else -v, np.inf)
    return int(np.argmin(v))


def pick_elbow(l0s, values) -> int | None:
    """The elbow of ``values`` (explained variance) against ``log(l0s)``: both scaled to
    [0, 1], the point farthest above the chord from the first point to the last (the
    Kneedle rule); None when no point lies above the chord, or with fewer than 3 points."""
    x = np.log(np.asarray(l0s, dtype=float))
    y = np.asarray(values, dtype=float)
    if x.size != y.size:
        raise ValueError(f"l0s and values must have the same length, got {x.size} and "
                         f"{y.size}")
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0 or not np.isfinite(x + y).all():
        return None
    order = np.argsort(x, kind="stable")
    xs = (x[order] - x[order][0]) / np.ptp(x)
    ys = (y[order] - y.min()) / np.ptp(y)
    above = ys - (ys[0] + (ys[-1] - ys[0]) * xs)
    best = int(np.argmax(above))
    return int(order[best]) if above[best] > 1e-12 else None


# -- the config ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config(JsonMixin):
    worlds: Annotated[tuple[str, ...], OneOf(WORLDS)] = WORLDS
    synth_small: SyntheticConfig = field(default_factory=SyntheticConfig.synth_small)
    reference: SyntheticConfig = field(default_factory=reference_world)
    width: Annotated[int, Bounds(8)] = 512
    architectures: tuple[str, ...] = SWEPT
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds: initialisation and data order
    # L0 targets as fractions of each world's true L0: positive, increasing
    l0_fractions: Annotated[tuple[float, ...], POSITIVE] = field(
        default_factory=default_fractions)
    n_train: int = 65_536  # the fixed training set of each world (several epochs)
    train: TrainConfig = field(default_factory=lambda: train_recipe(1_000_000, batch_size=256))
    # where taken (matryoshka); None: width/8 .. width
    prefix_sizes: Annotated[tuple[int, ...] | None, Bounds(1)] = None
    n_eval: Annotated[int, Bounds(64)] = 8192
    n_check: Annotated[int, Bounds(64)] = 512
    lam_rtol: Annotated[float, POSITIVE] = 0.02  # of the matched lam's L0
    max_steps: Annotated[int, Bounds(1)] = 100  # hierarchy steps the certificate tries
    # n of the decoder projection; None: the ladder's first n >= each world's largest target
    projection_n: Annotated[int | None, Bounds(1)] = None
    absorption_min_cosine: Annotated[float, Bounds(-1.0, 1.0)] = 0.1
    work_dir: str | None = None  # keeps each finished group; a rerun continues from them
    seed: Seed = 0  # the worlds, their training and evaluation samples

    def __post_init__(self):
        validate_fields(self)
        _distinct(self.worlds, "worlds")
        check_tuple(self.architectures, "architectures", check_choice,
                    choices=architectures())
        _distinct(self.architectures, "architectures")
        check_seeds(self.seeds)
        if len(self.seeds) < 2:
            raise ValueError(f"seeds must hold at least 2 seeds (the consistency selector "
                             f"compares seeds), got {list(self.seeds)}")
        steps = np.diff(self.l0_fractions)
        if (steps <= 0).any():
            raise ValueError(f"l0_fractions must be increasing, got {list(self.l0_fractions)}")
        if self.train.target_l0 is not None:
            raise ValueError("train.target_l0 must be None: the experiment sets each run's "
                             "target from l0_fractions")
        if self.n_train < self.train.batch_size:
            raise ValueError(f"n_train must be >= train.batch_size ({self.train.batch_size}), "
                             f"got {self.n_train}")
        if self.projection_n is not None and self.projection_n >= self.width:
            raise ValueError(f"projection_n must be < width ({self.width}), got "
                             f"{self.projection_n}")

    @classmethod
    def quick(cls) -> Config:
        # the controller's gain raised: a quick run has too few steps for the default
        return cls(synth_small=SyntheticConfig.synth_small(n_features=384, d=48, tree_roots=4),
                   reference=reference_world(n_features=128, d=48),
                   width=64, seeds=(0, 1), l0_fractions=default_fractions(5),
                   n_train=8192, train=train_recipe(24_576, batch_size=128).replace(l0_gain=0.2),
                   n_eval=1024, n_check=128, max_steps=20)

    def world_config(self, name: str) -> SyntheticConfig:
        return getattr(self, check_choice(name, "world", WORLDS))


def _distinct(values: tuple, name: str) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat, got {list(values)}")


# -- results ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run(JsonMixin):
    """One SAE: an architecture at one seed and L0 target on one world."""

    world: str
    name: str
    seed: int
    target_l0: int
    k: int | None  # k (k-architectures)
    sparsity_coef: float | None  # where the controller ended (penalty architectures)
    trained: bool  # the trainer's success (a controlled run that missed: False)
    train_message: str
    l0: float  # on the evaluation samples
    mcc: float
    f1: float
    explained_variance: float
    absorption: float | None  # None on a world without a hierarchy
    projections: tuple  # s_n for each n of the world's projection_ns
    projection: float  # s_n at the world's projection_n (the selector's)
    lam_matched: float  # the lam whose optimal codes have this SAE's L0
    lam_matched_l0_error: float
    stationarity: float  # median atom-stationarity violation over alive atoms
    amortisation_gap: float  # relative
    code_kkt: float  # mean code-KKT violation of the encoder's codes (units of lam)
    code_kkt_max: float
    n_certified: int  # verified hierarchy descent steps

    @property
    def l0_error(self) -> float:
        return self.l0 / self.target_l0 - 1


@dataclass(frozen=True)
class World(JsonMixin):
    name: str
    n_features: int
    d: int
    true_l0: float  # mean active features per training sample
    scale: float  # the raw data's sqrt(E ||x||^2), divided out
    targets: tuple  # the L0 targets, increasing
    projection_n: int  # n of the decoder-projection selector
    projection_ns: tuple  # every n whose s_n is kept (projection_ladder)
    hierarchy: bool  # absorption is measured


@dataclass(frozen=True)
class Point(JsonMixin):
    """One architecture at one target on one world over its seeds: ``intervals[metric]``
    an :class:`toysae.stats.Interval` as a dict; ``consistency`` the PW-MCC of the seeds'
    decoders (``interval("consistency")`` its jackknife interval)."""

    world: str
    name: str
    target_l0: int
    seeds: tuple
    intervals: dict
    consistency: float  # metrics.pairwise_mcc of the seeds' decoders
    consistency_interval: dict  # its jackknife interval over the seeds (stats.pair_interval)

    def interval(self, metric: str) -> Interval | None:
        if metric == "consistency":
            return Interval(**self.consistency_interval)
        value = self.intervals.get(metric)
        return None if value is None else Interval(**value)


@dataclass(frozen=True)
class Pick(JsonMixin):
    """Where one selector puts the L0 for one architecture on one world."""

    world: str
    name: str
    selector: str  # a SELECTOR_NAMES entry, or "hindsight" (the best MCC)
    target_l0: int | None  # None: no pick (the number does not move with L0)
    ratio: dict | None  # the held-out L0 there over the true L0: an Interval as a dict
    within: bool | None  # |mean ratio - 1| <= WITHIN
    mcc: dict | None  # MCC there, an Interval as a dict
    versus: str  # against the hindsight MCC: "best", "lower", "higher", "not resolved ..."
    seed_ratios: tuple | None  # each seed's own pick, its L0 over the true L0 (None: no
    # per-seed pick, or a seed with none)
    reason: str = ""

    def interval(self, key: str) -> Interval | None:
        value = getattr(self, key)
        return None if value is None else Interval(**value)


@dataclass(frozen=True)
class Result(JsonMixin):
    config: Config
    worlds: tuple  # World per world
    runs: tuple  # Run per world x architecture x target x seed
    points: tuple  # Point per world x architecture x target
    picks: tuple  # Pick per world x architecture x (hindsight, then each selector)
    projection_picks: tuple  # ((world, name, n, pick ratio or None), ...): s_n at every n
    findings: tuple
    wall_time: float  # seconds for the groups done in this call (kept ones are free)


# -- one run -----------------------------------------------------------------------------------
@dataclass
class _World:
    info: World
    X: np.ndarray  # the training set, unit scale
    ev: object  # the evaluation Batch, unit scale
    F: np.ndarray  # the true features
    pairs: tuple  # (parent, child) pairs


def _world(name: str, config: Config) -> _World:
    data = config.world_config(name)
    gen = SyntheticData(data)
    train = gen.sample(config.n_train, seed=config.seed)
    ev = gen.sample(config.n_eval, seed=shifted_seed(config.seed, 1))
    scale = float(np.sqrt(np.mean(np.sum(train.x.astype(np.float64) ** 2, axis=1))))
    true_l0 = float(metrics.l0(train.codes))
    targets = targets_of(config.l0_fractions, true_l0)
    ns = projection_ladder(config.width, config.projection_n)
    n = config.projection_n
    if n is None:  # the first n of the ladder at or above every target
        n = next((m for m in ns if m >= max(targets)), ns[-1])
    info = World(name=name, n_features=data.n_features, d=data.d, true_l0=true_l0,
                 scale=scale, targets=targets, projection_n=n, projection_ns=ns,
                 hierarchy=bool(data.hierarchy_pairs))
    return _World(info=info, X=(train.x / scale).astype(np.float32),
                  ev=ev._replace(x=(ev.x / scale).astype(np.float32)), F=gen.features,
                  pairs=tuple(data.hierarchy_pairs))


def projection_ladder(width: int, extra: int | None = None) -> tuple[int, ...]:
    """The n at which every run's decoder projection is kept: ``round(sqrt(2)**k)`` below
    ``width`` (1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, ...), and ``extra``. It depends on the
    width alone, not on the sweep, so a kept run serves a sweep of other targets."""
    width = check_int(width, "width", minimum=2)
    ladder = {int(round(math.sqrt(2) ** k)) for k in range(2 * int(math.log2(width)) + 2)}
    if extra is not None:
        ladder.add(check_int(extra, "extra", minimum=1, maximum=width - 1))
    return tuple(sorted(n for n in ladder if n < width))


def targets_of(fractions, true_l0: float) -> tuple[int, ...]:
    """The L0 targets: each fraction of the true L0 rounded half up, at least 1, each
    integer once (increasing fractions can round to the same target at a small true L0)."""
    return tuple(sorted({max(1, math.floor(f * true_l0 + 0.5)) for f in fractions}))


def _train_one(name: str, seed: int, target: int, world: _World, config: Config):
    tc = config.train.replace(seed=seed)
    if not takes_k(name):
        tc = tc.replace(target_l0=float(target),
                        sparsity_coef=start_coef(ARCHITECTURES[name].penalty_kind))
    sae = make_sae(name, world.X.shape[1], config.width,
                   **sae_kwargs(name, config, target, seed))
    result = train_sae(sae, world.X, tc, progress=False)
    return sae.eval(), result


def _run(name: str, seed: int, target: int, world: _World, config: Config
         ) -> tuple[Run, np.ndarray]:
    """Train and score one SAE; returns its scores and its decoder (for the consistency)."""
    sae, result = _train_one(name, seed, target, world, config)
    ev = world.ev
    Z = encode(sae, ev.x)
    with torch.no_grad():
        x_hat = sae(torch.from_numpy(ev.x)).x_hat.numpy()
    D, b_dec = sae_dictionary(sae)
    _, _, f1 = metrics.detection_scores(Z, ev.codes, world.F, D)
    absorption = None
    if world.pairs:
        rates = metrics.absorption_rate(Z, ev.codes, world.F, D, world.pairs,
                                        min_cosine=config.absorption_min_cosine)
        absorption = float(np.nanmean(rates)) if np.isfinite(rates).any() else 0.0
    info = world.info
    projections = decoder_projection(ev.x, D, b_dec, info.projection_ns)
    X_check = ev.x[:config.n_check]
    matched = sae_lam_for_l0(sae, X_check, rtol=config.lam_rtol)
    report = check_sae(sae, X_check, matched.lam, max_steps=config.max_steps)
    amort, opt = report.amortisation, report.optimality
    alive = np.asarray(abs(amort.optimal_codes).sum(axis=0)).ravel() > 0
    violation = opt.atoms.violation[alive] if alive.any() else np.zeros(1)
    kkt = code_kkt(X_check, D, amort.sae_codes, matched.lam, bias=b_dec)
    run = Run(world=info.name, name=name, seed=seed, target_l0=target,
              k=target if takes_k(name) else None,
              sparsity_coef=None if takes_k(name) else float(result.final_sparsity_coef),
              trained=bool(result.success), train_message=result.message,
              l0=float(metrics.l0(Z)), mcc=metrics.mcc(D, world.F), f1=float(f1.mean()),
              explained_variance=metrics.explained_variance(ev.x, x_hat),
              absorption=absorption, projections=projections,
              projection=projections[info.projection_ns.index(info.projection_n)],
              lam_matched=float(matched.lam),
              lam_matched_l0_error=float(matched.relative_error),
              stationarity=float(np.median(violation)),
              amortisation_gap=float(amort.relative_gap),
              code_kkt=float(kkt.mean_violation), code_kkt_max=float(kkt.max_violation),
              n_certified=int(opt.hierarchy.n_certified))
    return run, D


def consistency_of(dictionaries) -> tuple[float, dict]:
    """PW-MCC of the seeds' decoders (:func:`toysae.metrics.pairwise_mcc`: the mean over
    pairs of their Hungarian-matched |cos|) and its jackknife interval over the seeds
    (:func:`toysae.stats.pair_interval`, as ``seed-consistency`` gives it), as a dict."""
    Ds = list(dictionaries)
    return (metrics.pairwise_mcc(Ds), pair_interval(pair_matrix(Ds)).to_dict())


class _Store(RunStore):
    """Finished groups (one world, architecture and target, every seed), keyed by every
    field but the lists of worlds, architectures and fractions, so a larger run reuses a
    smaller one's groups (a change of seeds is a different group)."""

    def __init__(self, config: Config):
        super().__init__(config, ("worlds", "architectures", "l0_fractions"))


def _group(name: str, target: int, world: _World, config: Config, store: _Store
           ) -> tuple[tuple[Run, ...], dict]:
    unit = f"{world.info.name}-{name}-l0{target}"
    kept = store.get(unit)
    if kept is not None:
        return tuple(Run.from_dict(r) for r in kept["runs"]), kept["consistency"]
    done = [_run(name, seed, target, world, config) for seed in config.seeds]
    runs = tuple(r for r, _ in done)
    value, interval = consistency_of([D for _, D in done])
    consistency = {"value": value, "interval": interval}
    store.put(unit, {"runs": [r.to_dict() for r in runs], "consistency": consistency})
    return runs, consistency


def run(config: Config) -> Result:
    start = time.perf_counter()
    store = _Store(config)
    worlds, runs, points = [], [], []
    for world_name in config.worlds:
        world = _world(world_name, config)
        worlds.append(world.info)
        for name in config.architectures:
            for target in world.info.targets:
                group, consistency = _group(name, target, world, config, store)
                runs += group
                points.append(_point(group, consistency))
    picks, projection_picks = [], []
    for info in worlds:
        for name in config.architectures:
            mine = [p for p in points if p.world == info.name and p.name == name]
            seed_runs = {s: [r for r in runs if r.world == info.name and r.name == name
                             and r.seed == s] for s in config.seeds}
            picks += select(mine, seed_runs, info.true_l0)
            projection_picks += _projection_picks(mine, seed_runs, info)
    runs, points, picks = tuple(runs), tuple(points), tuple(picks)
    return Result(config=config, worlds=tuple(worlds), runs=runs, points=points, picks=picks,
                  projection_picks=tuple(projection_picks),
                  findings=findings(worlds, runs, points, picks),
                  wall_time=time.perf_counter() - start)


def _point(group, consistency: dict) -> Point:
    """The seed means of one group and its PW-MCC (``{"value", "interval"}``)."""
    intervals = {}
    for metric in SUMMARISED:
        values = [getattr(r, metric) for r in group]
        if all(v is not None for v in values):
            intervals[metric] = mean_interval(values).to_dict()
    first = group[0]
    return Point(world=first.world, name=first.name, target_l0=first.target_l0,
                 seeds=tuple(r.seed for r in group), intervals=intervals,
                 consistency=float(consistency["value"]),
                 consistency_interval=consistency["interval"])


# -- the selectors ----------------------------------------------------------------------------
def _mean(point: Point, metric: str) -> float | None:
    if metric == "consistency":
        return point.consistency
    interval = point.interval(metric)
    return None if interval is None else interval.mean


def _pick_on(points, metric: str, rule: str) -> int | None:
    if rule == "elbow":
        return pick_elbow([_mean(p, "l0") for p in points], [_mean(p, metric) for p in points])
    return pick_extreme([_mean(p, metric) for p in points], rule)


def _seed_pick(runs, metric: str, rule: str) -> int | None:
    if rule == "elbow":
        return pick_elbow([r.l0 for r in runs], [getattr(r, metric) for r in runs])
    return pick_extreme([getattr(r, metric) for r in runs], rule)


def select(points, seed_runs: dict, true_l0: float) -> list[Pick]:
    """The hindsight pick (the best mean MCC) and each selector's pick for one architecture
    on one world. ``points``: its Points by increasing target; ``seed_runs``: each seed's
    Runs in the same order (for the per-seed picks)."""
    points = sorted(points, key=lambda p: p.target_l0)
    best = pick_extreme([_mean(p, "mcc") for p in points], "max")
    best = len(points) - 1 if best is None else best
    hindsight = points[best].interval("mcc")
    out = [_pick(points, best, "hindsight", true_l0, hindsight, None)]
    for selector, metric, rule in SELECTORS:
        index = _pick_on(points, metric, rule)
        seed_ratios = None
        if metric != "consistency":
            seed_ratios = []
            for runs in seed_runs.values():
                runs = sorted(runs, key=lambda r: r.target_l0)
                i = _seed_pick(runs, metric, rule)
                seed_ratios.append(None if i is None else runs[i].l0 / true_l0)
            seed_ratios = tuple(seed_ratios)
        out.append(_pick(points, index, selector, true_l0, hindsight, seed_ratios))
    return out


def _pick(points, index, selector: str, true_l0: float, hindsight: Interval,
          seed_ratios) -> Pick:
    p0 = points[0]
    if index is None:
        return Pick(world=p0.world, name=p0.name, selector=selector, target_l0=None,
                    ratio=None, within=None, mcc=None, versus="no pick",
                    seed_ratios=seed_ratios,
                    reason="the same at every L0 of the sweep, or no elbow")
    p = points[index]
    l0 = p.interval("l0")
    ratio = Interval(mean=l0.mean / true_l0, low=None if l0.low is None else l0.low / true_l0,
                     high=None if l0.high is None else l0.high / true_l0, n=l0.n,
                     level=l0.level, method=l0.method)
    mcc = p.interval("mcc")
    if selector == "hindsight" or mcc == hindsight:
        versus = "best"
    else:
        versus = {1: "higher", -1: "lower", 0: not_resolved(min(mcc.n, hindsight.n))}[
            compare(mcc, hindsight)]
    return Pick(world=p.world, name=p.name, selector=selector, target_l0=p.target_l0,
                ratio=ratio.to_dict(), within=bool(abs(ratio.mean - 1) <= WITHIN),
                mcc=mcc.to_dict(), versus=versus, seed_ratios=seed_ratios)


def _projection_picks(points, seed_runs, info: World) -> list[tuple]:
    """The decoder projection's pick at every kept n (ratio of the mean held-out L0 to the
    true L0, None for no pick): how much the proxy's answer depends on n."""
    points = sorted(points, key=lambda p: p.target_l0)
    out = []
    for j, n in enumerate(info.projection_ns):
        means = [float(np.mean([r.projections[j] for runs in seed_runs.values()
                                for r in runs if r.target_l0 == p.target_l0]))
                 for p in points]
        i = pick_extreme(means, "min")
        out.append((info.name, points[0].name, n,
                    None if i is None else points[i].interval("l0").mean / info.true_l0))
    return out


# -- findings -------------------------------------------------------------------------------
def _ratio_text(pick: Pick) -> str:
    ratio = pick.interval("ratio")
    return f"{ratio.format(2)}x the true L0" if ratio.resolved else \
        f"{ratio.mean:.2f}x the true L0 (1 seed)"


def findings(worlds, runs, points, picks) -> tuple[str, ...]:
    out = []
    controlled = [r for r in runs if r.k is None]
    if controlled:
        worst = max(controlled, key=lambda r: abs(r.l0_error))
        matched = all(abs(r.l0_error) <= L0_TOLERANCE for r in controlled)
        out.append(f"Every controlled run's held-out L0 within {L0_TOLERANCE:.0%} of its "
                   f"target: {matched} (largest miss: {worst.world}, {worst.name}, seed "
                   f"{worst.seed}, target {worst.target_l0}: L0 {worst.l0:.2f}, "
                   f"{worst.l0_error:+.1%}).")
    missed = [r for r in runs if not r.trained]
    if missed:
        out.append(f"Runs whose trainer reported a miss ({len(missed)} of {len(runs)}): "
                   + "; ".join(f"{r.world} {r.name} seed {r.seed} target {r.target_l0} "
                               f"(L0 {r.l0:.2f})" for r in missed) + ".")
    by = {(p.world, p.name, p.selector): p for p in picks}
    for info in worlds:
        names = sorted({p.name for p in picks if p.world == info.name},
                       key=[p.name for p in picks].index)
        for name in names:
            best = by[(info.name, name, "hindsight")]
            mine = sorted((p for p in points if p.world == info.name and p.name == name),
                          key=lambda p: p.target_l0)
            hind = best.interval("mcc")
            below = sum(compare(p.interval("mcc"), hind) < 0 for p in mine
                        if p.target_l0 != best.target_l0)
            n = hind.n
            out.append(f"{info.name}, {name}: MCC is highest at L0 {_ratio_text(best)} (MCC "
                       f"{hind.format(3)}, {n} seeds); {below} of the other {len(mine) - 1} "
                       f"sweep points have an MCC below it with intervals separating.")
    for selector in SELECTOR_NAMES:
        mine = [p for p in picks if p.selector == selector]
        inside = [p for p in mine if p.within]
        lower = [p for p in mine if p.versus == "lower"]
        cases = "; ".join(f"{p.world} {p.name}: " + ("no pick" if p.target_l0 is None else
                                                   f"{_ratio_text(p)}, MCC "
                                                   f"{p.interval('mcc').format(3)}")
                          for p in mine)
        out.append(f"{selector} ({LABELS[selector]}) lands within {WITHIN:.0%} of the true "
                   f"L0 in {len(inside)} of {len(mine)} cases; its MCC is below the "
                   f"hindsight best, intervals separating, in {len(lower)} ({cases}).")
    always = [s for s in SELECTOR_NAMES
              if all(p.within for p in picks if p.selector == s)]
    never = [s for s in SELECTOR_NAMES
             if not any(p.within for p in picks if p.selector == s)]
    out.append("Within 20% of the true L0 in every world and architecture: "
               + (", ".join(always) if always else "no selector") + "; in none: "
               + (", ".join(never) if never else "no selector") + ".")
    return tuple(out)


# -- outputs ---------------------------------------------------------------------------------
_PANELS = (("mcc", "MCC (matched latents)"),
           ("f1", "mean F1 as detectors"),
           ("absorption", "absorption rate"),
           ("explained_variance", "explained variance"))


def save(result: Result, out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from toysae.plotting import save_figure, style, wrap

    style()
    out_dir = Path(out_dir)
    cfg = result.config
    cols = len(result.worlds)  # one column per world, one row per metric
    height = 2.5 * len(_PANELS) + 1.1
    fig, axes = plt.subplots(len(_PANELS), cols, figsize=(9.0, height), squeeze=False)
    for i, info in enumerate(result.worlds):
        for j, (metric, label) in enumerate(_PANELS):
            _panel_metric(axes[j, i], result, info, metric, label)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle(wrap(f"SAEs across L0 on correlated worlds: width {cfg.width}, "
                      f"{len(cfg.seeds)} seeds (means, 95% intervals); dotted: the true L0, "
                      f"band: within {WITHIN:.0%}", 95))
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1))
    paths = [save_figure(fig, out_dir / f"{NAME}.png")]
    names = list(cfg.architectures)
    height = 2.9 * len(names) + 1.9
    fig, axes = plt.subplots(len(names), cols, figsize=(9.0, height), squeeze=False)
    for i, info in enumerate(result.worlds):
        for j, name in enumerate(names):
            _panel_selectors(axes[j, i], result, info, name)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, frameon=False)
    fig.suptitle(wrap("Ground-truth-free selectors across L0 (each scaled to [0, 1] over the "
                      "sweep; markers: each one's pick) beside MCC", 95))
    fig.tight_layout(rect=(0, 1.25 / height, 1, 1))
    paths.append(save_figure(fig, out_dir / f"{NAME}-selectors.png"))
    paths.append(write_text(out_dir / f"{NAME}.md", table(result)))
    return paths


def _true_l0_marks(ax) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.axvline(1.0, color="black", linestyle=":", linewidth=1)
    ax.axvspan(1 - WITHIN, 1 + WITHIN, color="0.85", zorder=0)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator([2.0 ** k for k in range(-5, 6)]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("SAE L0 / true L0 (log scale)")


def _panel_metric(ax, result: Result, info: World, metric: str, label: str) -> None:
    if metric == "absorption" and not info.hierarchy:
        ax.text(0.5, 0.5, f"{info.name}: no hierarchy,\nno absorption to measure",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    for name in result.config.architectures:
        mine = sorted((p for p in result.points if p.world == info.name and p.name == name),
                      key=lambda p: p.target_l0)
        x = np.array([p.interval("l0").mean for p in mine]) / info.true_l0
        vals = [p.interval(metric) for p in mine]
        means = np.array([v.mean for v in vals])
        low = np.array([v.mean - (v.low if v.resolved else v.mean) for v in vals])
        high = np.array([(v.high if v.resolved else v.mean) - v.mean for v in vals])
        ax.errorbar(x, means, yerr=[low, high], fmt="o-", capsize=3, label=name)
    _true_l0_marks(ax)
    ax.set_ylabel(label)
    ax.set_title(f"{info.name} (true L0 {info.true_l0:.2f})")


def _scaled(values) -> np.ndarray:
    v = np.asarray([np.nan if x is None else x for x in values], dtype=float)
    span = np.nanmax(v) - np.nanmin(v) if np.isfinite(v).any() else 0
    return np.zeros_like(v) if not span else (v - np.nanmin(v)) / span


def _panel_selectors(ax, result: Result, info: World, name: str) -> None:
    mine = sorted((p for p in result.points if p.world == info.name and p.name == name),
                  key=lambda p: p.target_l0)
    x = np.array([p.interval("l0").mean for p in mine]) / info.true_l0
    ax.plot(x, _scaled([_mean(p, "mcc") for p in mine]), "k-", linewidth=2.5,
            label="MCC (truth)")
    by = {(p.selector): p for p in result.picks if p.world == info.name and p.name == name}
    for k, (selector, metric, _) in enumerate(SELECTORS):
        y = _scaled([_mean(p, metric) for p in mine])
        line, = ax.plot(x, y, "-", color=f"C{k}", alpha=0.8, label=LABELS[selector])
        pick = by[selector]
        if pick.target_l0 is not None:
            i = [p.target_l0 for p in mine].index(pick.target_l0)
            ax.plot(x[i], y[i], "v", color=line.get_color(), markersize=9)
    _true_l0_marks(ax)
    ax.set_ylabel("scaled to [0, 1]")
    ax.set_title(f"{info.name}, {name}")


def _cell(interval: Interval | None, digits: int = 3) -> str:
    return "-" if interval is None else interval.format(digits)


def selectors_table(worlds, picks) -> str:
    """Markdown: for each world and architecture, the L0 each selector picks (its mean
    held-out L0 over the true L0, 95% interval over the seeds), whether that is within 20%
    of the true L0, the MCC there, and how it compares with the best MCC in hindsight."""
    lines = [f"Each pick's L0 is its mean held-out L0 over the true L0 [95% Student-t "
             f"interval over the seeds]; within: within {WITHIN:.0%} of the true L0; versus: "
             "the MCC there against the best MCC in hindsight (called where intervals "
             "separate).", "",
             "| world (true L0) | learner | selector | L0 / true L0 | within | MCC there | "
             "versus hindsight | seeds' own picks |",
             "|---|---|---|---|---|---|---|---|"]
    true = {w.name: w.true_l0 for w in worlds}
    for p in picks:
        seeds = "-" if p.seed_ratios is None else ", ".join(
            "none" if r is None else f"{r:.2f}" for r in p.seed_ratios)
        within = "-" if p.within is None else ("yes" if p.within else "no")
        lines.append(f"| {p.world} ({true[p.world]:.2f}) | {p.name} | {p.selector} | "
                     f"{_cell(p.interval('ratio'), 2)} | {within} | "
                     f"{_cell(p.interval('mcc'))} | {p.versus} | {seeds} |")
    return "\n".join(lines)


def caption(data: dict) -> str:
    """The line under the figure (``toysae report``): where MCC peaks for each architecture
    and world, and which selectors land within 20% of the true L0 everywhere and nowhere,
    from a stored result."""
    picks = [Pick.from_dict(p) for p in data["picks"]]
    peaks = "; ".join(f"{p.world} {p.name} {p.interval('ratio').mean:.2f}x"
                      for p in picks if p.selector == "hindsight")
    return (f"MCC against L0 / true L0 over {len(data['config']['seeds'])} seeds (95% "
            f"intervals); MCC peaks at {peaks}. {data['findings'][-1]}")


def report_tables(data: dict) -> dict[str, str]:
    """The tables ``toysae report`` renders from a stored result (``NAME.json``, parsed):
    ``selectors``, :func:`selectors_table`."""
    worlds = [World.from_dict(w) for w in data["worlds"]]
    picks = [Pick.from_dict(p) for p in data["picks"]]
    return {"selectors": selectors_table(worlds, picks)}


_COLUMNS = (("L0", "l0", 2), ("MCC", "mcc", 3), ("F1", "f1", 3),
            ("EV", "explained_variance", 3), ("absorption", "absorption", 3),
            ("s_n", "projection", 3), ("stationarity", "stationarity", 3),
            ("gap", "amortisation_gap", 3), ("code KKT", "code_kkt", 4),
            ("certified", "n_certified", 1), ("matched lam", "lam_matched", 3))


def table(result: Result) -> str:
    cfg = result.config
    lines = [f"# {NAME}", "",
             f"SAE width {cfg.width}; seeds {list(cfg.seeds)}; each cell the mean over the "
             "seeds [95% Student-t interval]; theory numbers at the lam matched to each "
             f"SAE's L0 on {cfg.n_check} samples; s_n: the n-th decoder projection "
             "(arXiv 2508.16560); PW-MCC: the mean MCC between the seeds' decoders [jackknife "
             "interval over the seeds].", ""]
    for info in result.worlds:
        lines += [f"## {info.name}", "",
                  f"{info.n_features} features in d = {info.d}, true L0 {info.true_l0:.2f} "
                  f"(data scaled by 1/{info.scale:.3g} to E||x||^2 = 1); targets "
                  f"{list(info.targets)}; s_n at n = {info.projection_n}.", "",
                  "| learner | target | " + " | ".join(c[0] for c in _COLUMNS)
                  + " | PW-MCC |", "|" + "---|" * (len(_COLUMNS) + 3)]
        for p in (p for p in result.points if p.world == info.name):
            lines.append(f"| {p.name} | {p.target_l0} | " + " | ".join(
                _cell(p.interval(m), d) for _, m, d in _COLUMNS)
                + f" | {_cell(p.interval('consistency'))} |")
        lines.append("")
    lines += ["## Selectors", "", selectors_table(result.worlds, result.picks), "",
              "## The decoder projection's pick at every n", "",
              "The L0 (mean held-out L0 over the true L0) where s_n is lowest, for each n "
              "kept; the selector above reads the n of its world.", ""]
    for info in result.worlds:
        ns = info.projection_ns
        lines += [f"### {info.name}", "", "| learner | " + " | ".join(f"n = {n}" for n in ns)
                  + " |", "|" + "---|" * (len(ns) + 1)]
        for name in cfg.architectures:
            cells = {n: r for w, a, n, r in result.projection_picks
                     if w == info.name and a == name}
            lines.append(f"| {name} | " + " | ".join(
                "none" if cells[n] is None else f"{cells[n]:.2f}" for n in ns) + " |")
        lines.append("")
    lines += ["## Findings", "", *[f"- {s}" for s in result.findings], ""]
    return "\n".join(lines)
