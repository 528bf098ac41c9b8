"""Architectures under the theory: which SAEs end near a stationary point of dictionary learning.

The optimality-conditions seed ends with an open question: can the
first-order conditions of dictionary learning "arbitrate between different
architectural choices"? Here they are put to it, on the CPU-sized
benchmark-grade world :meth:`toysae.data.SyntheticConfig.synth_small` (2,048
Zipf-firing features in d = 256, 16 trees of exclusive children, true L0
about 10.6), rescaled so that ``E ||x||^2 = 1``.

1. **Matched L0.** Every registered architecture (:func:`architectures`; the
   shipped ones relu, tied, topk, batchtopk, jumprelu, gated, matryoshka)
   trains at width ``width`` on the same fixed training set with one recipe
   (Adam, LR schedule, resampling, each architecture's own dead-latent loss).
   The k-architectures (``penalty_kind`` "none": topk, batchtopk, matryoshka)
   get ``k = round(true L0)``; the penalty architectures get the coefficient
   found by a log-log secant search on short runs (``calibration_samples``
   each) for L0 = true L0. The L0 each one lands at on fresh evaluation
   samples is in the table.
2. **Scored against the truth** on ``n_eval`` fresh samples: MCC (Hungarian,
   per latent), mean F1 of latents as detectors of their best-matching
   feature, uniqueness, explained variance (relative to the mean) and the
   absorption rate of :func:`toysae.metrics.absorption_rate` (mean over the
   trees' parents; ``absorption_min_cosine`` is the cosine with the parent at
   which a child's latent counts as carrying it).
3. **Judged by the theory**: :func:`toysae.theory.check_sae` at one common
   ``lam`` on ``n_check`` samples, so every dictionary is asked the same
   question: with optimal codes, is it a first-order stationary point of
   ``1/2 ||x - z D||^2 + lam |z|_1``? Reported: the atom-stationarity
   violation (median and max over alive atoms), the certified hierarchy
   descent steps and their total verified drop, and the amortisation gap of
   the encoder. :class:`toysae.dictlearn.learner.DictionaryLearner` trained
   on that objective is the reference a stationary point looks like.
4. **Absorption over training**: for ``track`` the absorption rate, the
   certified hierarchy steps and the atom-stationarity violation are logged
   through the engine's ``eval_fn`` along its training run.

The SynthSAEBench paper (Chanin & Garriga-Alonso 2026, arXiv 2602.14687)
reports on its 16k world at L0 = 25 (F1 / MCC): Matryoshka 0.879 / 0.793,
BatchTopK 0.732 / 0.757, JumpReLU 0.732 / 0.753, standard L1 0.556 / 0.604.
The table sets ours beside them and says whether the order holds.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from toysae import metrics
from toysae._config import POSITIVE, Bounds, JsonMixin, Seed, validate_fields
from toysae._io import write_text
from toysae._validation import check_choice, check_int, check_tuple, shifted_seed
from toysae.data import SyntheticConfig, SyntheticData
from toysae.dictlearn import sparse_code
from toysae.dictlearn.learner import DictionaryLearner
from toysae.sae import ARCHITECTURES, TrainConfig, make_sae, train_sae
from toysae.theory import check_optimality, check_sae

NAME = "architectures-under-theory"
DESCRIPTION = ("Every SAE architecture at matched L0 on benchmark-grade hierarchical data: "
               "MCC, F1, absorption against the truth, and how far each dictionary is from a "
               "stationary point of dictionary learning.")

DICTLEARN = "dictlearn"
# SynthSAEBench-16k at L0 = 25, (F1, MCC); "relu" is the paper's standard L1 SAE
PAPER = {"matryoshka": (0.879, 0.793), "batchtopk": (0.732, 0.757),
         "jumprelu": (0.732, 0.753), "relu": (0.556, 0.604)}
# Where the coefficient search starts, for data with E ||x||^2 = 1, by what it weighs
_START_COEF = {"l1": 0.1, "l0": 0.003}


def architectures() -> tuple[str, ...]:
    """Every registered architecture, in listing order (``toysae.sae.ARCHITECTURES``)."""
    return tuple(ARCHITECTURES)


def k_architectures() -> tuple[str, ...]:
    """The architectures whose sparsity is set by ``k``: those with no penalty
    (``penalty_kind == "none"``); the rest are penalty architectures, calibrated."""
    return tuple(name for name in architectures() if _takes_k(name))


def _takes_k(name: str) -> bool:
    return ARCHITECTURES[name].penalty_kind == "none"


def _train(n_samples: int) -> TrainConfig:
    return TrainConfig(n_samples=n_samples, batch_size=1024, lr=3e-3, log_every=100)


@dataclass(frozen=True)
class Config(JsonMixin):
    data: SyntheticConfig = field(default_factory=SyntheticConfig.synth_small)
    width: Annotated[int, Bounds(8)] = 512
    architectures: tuple[str, ...] = field(default_factory=architectures)
    n_train: int = 262_144  # the fixed training set every SAE sees (several epochs)
    train: TrainConfig = field(default_factory=lambda: _train(2_000_000))
    calibration_samples: int = 250_000
    calibration_rounds: Annotated[int, Bounds(1)] = 3
    # stop searching at |L0 / target - 1| below this
    calibration_tol: Annotated[float, POSITIVE] = 0.05
    # full-length runs of a penalty architecture to land on the target
    final_rounds: Annotated[int, Bounds(1)] = 2
    # retrain at full length while |L0 / target - 1| is above this
    final_tol: Annotated[float, POSITIVE] = 0.1
    # where taken (matryoshka); None: width/8 .. width
    prefix_sizes: Annotated[tuple[int, ...] | None, Bounds(1)] = None
    n_eval: Annotated[int, Bounds(64)] = 8192
    n_check: Annotated[int, Bounds(64)] = 4096
    lam: Annotated[float, POSITIVE] = 0.1  # the one objective every dictionary is judged on
    dictlearn_samples: int = 65_536
    dictlearn_epochs: Annotated[int, Bounds(1)] = 8
    absorption_min_cosine: Annotated[float, Bounds(-1.0, 1.0)] = 0.1
    track: str = "topk"
    track_points: Annotated[int, Bounds(2)] = 10
    track_check: Annotated[int, Bounds(64)] = 1024
    seed: Seed = 0

    def __post_init__(self):
        validate_fields(self)
        if not self.data.hierarchy_pairs:
            raise ValueError("data must have a hierarchy (tree_roots or hierarchy): absorption "
                             "is measured on its (parent, child) pairs")
        # the registry is read when the config is built, and the minimums are other fields
        check_tuple(self.architectures, "architectures", check_choice,
                    choices=architectures())
        check_int(self.n_train, "n_train", minimum=self.train.batch_size)
        check_int(self.calibration_samples, "calibration_samples",
                  minimum=self.train.batch_size)
        check_int(self.dictlearn_samples, "dictlearn_samples", minimum=self.width)
        check_choice(self.track, "track", self.architectures)

    @classmethod
    def quick(cls) -> Config:
        return cls(data=SyntheticConfig.synth_small(n_features=512, d=64, tree_roots=4),
                   width=128, n_train=16_384, train=_train(60_000),
                   calibration_samples=20_000, calibration_rounds=2, n_eval=2048,
                   n_check=512, dictlearn_samples=4096, dictlearn_epochs=3, track_points=3,
                   track_check=256)


@dataclass(frozen=True)
class Scores(JsonMixin):
    """One learner's row of the table."""

    name: str
    sparsity_coef: float | None  # trained coefficient (penalty architectures)
    k: int | None  # k (k-architectures)
    l0: float  # on the evaluation samples
    mcc: float
    f1: float
    precision: float
    recall: float
    uniqueness: float
    explained_variance: float
    absorption: float  # mean over parents present in the evaluation samples
    objective: float  # the judged objective per sample, with optimal codes (lower: better)
    stationarity_median: float  # atom-stationarity violation over alive atoms
    stationarity_max: float
    n_stationary: int  # alive atoms within tolerance
    n_alive: int  # atoms with code mass under the optimal codes
    n_certified: int  # verified hierarchy descent steps
    certified_drop: float  # their total verified objective drop (units of the objective)
    amortisation_gap: float | None  # relative; None for dictionary learning (optimal codes)
    passed: bool  # every first-order condition holds


@dataclass(frozen=True)
class Calibration(JsonMixin):
    name: str
    tried: tuple  # ((coef, L0), ...) of the short runs, in the order tried
    chosen: float  # the coefficient of the reported (full-length) run
    finals: tuple = ()  # ((coef, L0), ...) of the full-length runs


@dataclass(frozen=True)
class Result(JsonMixin):
    config: Config
    data_scale: float  # the raw data's sqrt(E ||x||^2), divided out
    true_l0: float
    rows: tuple  # Scores, one per architecture, then dictionary learning
    calibrations: tuple  # Calibration per penalty architecture
    track_samples: tuple  # samples seen at each tracked point
    track: tuple  # ((name, values), ...) along training of config.track
    ranking: str  # how the paper's ranking fares here


def _prefix_sizes(config: Config) -> tuple:
    if config.prefix_sizes is not None:
        return tuple(config.prefix_sizes)
    w = config.width
    return tuple(sorted({max(1, w // 8), max(1, w // 4), max(1, w // 2), w}))


def _sae_kwargs(name: str, config: Config, k: int) -> dict:
    if _takes_k(name):
        kwargs = {"k": k, "seed": config.seed}
        if "prefix_sizes" in inspect.signature(ARCHITECTURES[name]).parameters:
            kwargs["prefix_sizes"] = _prefix_sizes(config)
        return kwargs
    return {"seed": config.seed}


def _train_one(name: str, X: np.ndarray, tc: TrainConfig, k: int, config: Config, eval_fn):
    sae = make_sae(name, X.shape[1], config.width, **_sae_kwargs(name, config, k))
    result = train_sae(sae, X, tc, progress=False, eval_fn=eval_fn)
    return sae.eval(), result


def _codes(sae, X: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return sae.encode(torch.from_numpy(X)).numpy()


def _next_coef(tried: list, target: float) -> float:
    """The coefficient a log-log secant through the last two (coef, L0) points predicts
    for ``target`` (one point: L0 ~ coef^-2, the slope measured for relu on synth_small)."""
    coef, l0 = tried[-1]
    slope = -2.0
    if len(tried) >= 2:
        (c0, l0a), (c1, l0b) = tried[-2], tried[-1]
        if c0 != c1 and l0a != l0b:
            slope = float(np.clip(math.log(l0b / l0a) / math.log(c1 / c0), -6.0, -0.25))
    return coef * (target / l0) ** (1.0 / slope)


def _miss(l0: float, target: float) -> float:
    """How far an L0 lands from the target, symmetric in ratio."""
    return abs(math.log(l0 / target))


def _closest(tried, target: float):
    return min(tried, key=lambda t: _miss(t[1], target))


def _calibrate(name: str, X: np.ndarray, X_eval: np.ndarray, target: float,
               config: Config) -> Calibration:
    """Log-log secant search for the coefficient whose short run lands at L0 = target."""
    short = config.train.replace(n_samples=config.calibration_samples)
    coef, tried = _START_COEF[ARCHITECTURES[name].penalty_kind], []
    for _ in range(config.calibration_rounds):
        sae = make_sae(name, X.shape[1], config.width, **_sae_kwargs(name, config, 1))
        train_sae(sae, X, short.replace(sparsity_coef=coef), progress=False)
        tried.append((coef, max(float(metrics.l0(_codes(sae.eval(), X_eval))), 1e-3)))
        if abs(tried[-1][1] / target - 1) < config.calibration_tol:
            break
        coef = _next_coef(tried, target)
    return Calibration(name, tuple(tried), _closest(tried, target)[0])


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


def _theory_scores(report, optimal_codes: np.ndarray) -> dict:
    """The first-order verdict on a dictionary, with its optimal codes (alive: code mass)."""
    atoms, hier = report.atoms, report.hierarchy
    alive = np.abs(optimal_codes).sum(axis=0) > 0
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
        Z = _codes(sae, Xs)
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


def run(config: Config) -> Result:
    gen = SyntheticData(config.data)
    train = gen.sample(config.n_train, seed=config.seed)
    ev = gen.sample(config.n_eval, seed=shifted_seed(config.seed, 1))
    scale = float(np.sqrt(np.mean(np.sum(train.x.astype(np.float64) ** 2, axis=1))))
    X = (train.x / scale).astype(np.float32)
    ev = ev._replace(x=(ev.x / scale).astype(np.float32))
    X_check = ev.x[:config.n_check]
    F = gen.features
    true_l0 = float(metrics.l0(train.codes))
    k = max(1, round(true_l0))
    X_cal = ev.x[:min(len(ev.x), 2048)]

    rows, calibrations, track, track_samples = [], [], (), ()
    for name in config.architectures:
        tracked = name == config.track
        tc = config.train
        if tracked:
            tc = tc.replace(log_every=max(1, tc.n_steps // (config.track_points - 1)))
        eval_fn = _track_fn(ev, F, config) if tracked else None
        if _takes_k(name):
            coef, finals = 0.0, ()
            sae, result = _train_one(name, X, tc, k, config, eval_fn)
        else:
            # The short runs choose a coefficient; full-length runs then correct it, since
            # L0 keeps moving after the short runs end (for gated and jumprelu, downwards).
            cal = _calibrate(name, X, X_cal, true_l0, config)
            coef, finals, best = cal.chosen, [], None
            for _ in range(config.final_rounds):
                sae, result = _train_one(name, X, tc.replace(sparsity_coef=coef), k, config,
                                         eval_fn)
                finals.append((coef, max(float(metrics.l0(_codes(sae, X_cal))), 1e-3)))
                if best is None or _miss(finals[-1][1], true_l0) < _miss(best[0][1], true_l0):
                    best = (finals[-1], sae, result)
                if abs(finals[-1][1] / true_l0 - 1) < config.final_tol:
                    break
                coef = _next_coef(list(cal.tried) + finals, true_l0)
            (coef, _), sae, result = best
            calibrations.append(Calibration(name, cal.tried, coef, tuple(finals)))
        if tracked:
            h = result.history
            track_samples = tuple(int(s) for s in h["samples"])
            track = tuple((key, tuple(float(v) for v in h[key]))
                          for key in ("absorption", "n_certified", "certified_drop",
                                      "stationarity_median", "eval_l0", "mcc"))
        Z = _codes(sae, ev.x)
        with torch.no_grad():
            x_hat = sae(torch.from_numpy(ev.x)).x_hat.numpy()
        D = sae.dictionary.detach().numpy()
        report = check_sae(sae, X_check, config.lam)
        rows.append(Scores(name=name, sparsity_coef=None if _takes_k(name) else coef,
                           k=k if _takes_k(name) else None,
                           **_truth_scores(Z, x_hat, D, ev, F, config),
                           **_theory_scores(report.optimality,
                                            report.amortisation.optimal_codes),
                           amortisation_gap=float(report.amortisation.relative_gap)))

    learner = DictionaryLearner(config.width, config.lam, max_epochs=config.dictlearn_epochs,
                                batch_size=1024, seed=config.seed, progress=False)
    learner.fit(X[:config.dictlearn_samples])
    D = learner.components_.astype(np.float64)
    Z = np.asarray(sparse_code(ev.x.astype(np.float64), D, config.lam, nonneg=True,
                               dtype=torch.float64).codes)
    report = check_optimality(X_check.astype(np.float64), D, Z[:config.n_check], config.lam)
    rows.append(Scores(name=DICTLEARN, sparsity_coef=config.lam, k=None,
                       **_truth_scores(Z, Z @ D, D, ev, F, config),
                       **_theory_scores(report, Z[:config.n_check]), amortisation_gap=None))
    return Result(config=config, data_scale=scale, true_l0=true_l0, rows=tuple(rows),
                  calibrations=tuple(calibrations), track_samples=track_samples,
                  track=track, ranking=_ranking(rows))


def _ranking(rows) -> str:
    by = {r.name: r for r in rows if r.name in PAPER}
    if len(by) < 2:
        return "fewer than two of the paper's architectures were run: no ranking to compare"
    ours = sorted(by, key=lambda n: -by[n].f1)
    paper = sorted(by, key=lambda n: -PAPER[n][0])
    parts = [f"F1 order here: {' > '.join(ours)}; paper: {' > '.join(paper)}."]
    if "matryoshka" in by:
        first = ours[0] == "matryoshka"
        parts.append(f"Matryoshka is {'' if first else 'not '}ahead on F1 here.")
    if "relu" in by:
        last = ours[-1] == "relu"
        parts.append(f"The standard L1 SAE (relu) is {'' if last else 'not '}last on F1 here.")
    return " ".join(parts)


def save(result: Result, out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from toysae.plotting import save_figure, style

    style()
    out_dir = Path(out_dir)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    _panel_stationarity(axes[0], result)
    _panel_absorption(axes[1], result)
    _panel_track(axes[2], result)
    cfg = result.config
    fig.suptitle(f"SAE architectures at matched L0 (true L0 {result.true_l0:.1f}) on "
                 f"{cfg.data.n_features} hierarchical features in d = {cfg.data.d}, width "
                 f"{cfg.width}: truth vs first-order optimality (lam = {cfg.lam:g})")
    fig.tight_layout()
    return [save_figure(fig, out_dir / f"{NAME}.png"),
            write_text(out_dir / f"{NAME}.md", table(result))]


def _panel_stationarity(ax, result: Result) -> None:
    for r in result.rows:
        ax.scatter(max(r.stationarity_median, 1e-6), r.f1, s=40 + 600 * r.absorption,
                   color="black" if r.name == DICTLEARN else "tab:blue", alpha=0.7)
        ax.annotate(r.name, (max(r.stationarity_median, 1e-6), r.f1), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    values = [max(r.stationarity_median, 1e-6) for r in result.rows]
    log = max(values) / min(values) > 10  # a narrow range reads better on a linear axis
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("median atom-stationarity violation (tangential / normal force"
                  + (", log)" if log else ")"))
    ax.set_ylabel("mean F1 of latents as feature detectors")
    ax.set_title("Closer to stationary (left) vs better detectors (up);\nmarker area: "
                 "absorption rate")


def _panel_absorption(ax, result: Result) -> None:
    names = [r.name for r in result.rows]
    x = np.arange(len(names))
    ax.bar(x - 0.2, [r.absorption for r in result.rows], 0.4, label="absorption rate",
           color="tab:red")
    ax.set_ylabel("absorption rate (share of parent samples)")
    ax.set_xticks(x, names, rotation=30, ha="right")
    twin = ax.twinx()
    steps = [r.n_certified for r in result.rows]
    twin.bar(x + 0.2, steps, 0.4, color="tab:gray", label="certified hierarchy steps")
    twin.set_ylim(0, 1.15 * max(1, max(steps)))
    twin.set_ylabel("certified hierarchy descent steps (count)")
    ax.set_title("Absorption against the truth (red) and\nhierarchy steps the theory certifies "
                 "(gray)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8)


def _panel_track(ax, result: Result) -> None:
    track = dict(result.track)
    if not track:
        ax.set_axis_off()
        return
    s = np.asarray(result.track_samples, dtype=float)
    ax.plot(s, track["absorption"], "o-", color="tab:red", label="absorption rate")
    ax.plot(s, track["mcc"], "s-", color="tab:blue", label="MCC")
    ax.set_xlabel("training samples seen")
    ax.set_ylabel("absorption rate / MCC")
    twin = ax.twinx()
    twin.plot(s, track["n_certified"], "^--", color="tab:gray",
              label="certified hierarchy steps")
    twin.set_ylim(0, 1.15 * max(1.0, max(track["n_certified"])))
    twin.set_ylabel("certified hierarchy descent steps (count)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{result.config.track} along training: absorption, MCC\nand the "
                 "hierarchy steps the theory certifies")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="center right", fontsize=8)


def table(result: Result) -> str:
    cfg = result.config
    lines = [f"# {NAME}", "",
             f"{cfg.data.n_features} features in d = {cfg.data.d} ({len(cfg.data.hierarchy_pairs)}"
             f" parent/child pairs), SAE width {cfg.width}, true L0 {result.true_l0:.2f}; "
             f"theory at lam = {cfg.lam:g} on {cfg.n_check} samples (data scaled by "
             f"1/{result.data_scale:.3g} to E||x||^2 = 1).", "",
             "| learner | coef / k | L0 | MCC | F1 | uniqueness | EV | absorption | "
             "objective / sample | stationarity median / max | stationary atoms | "
             "certified steps (drop) | amortisation gap | paper F1 / MCC |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result.rows:
        knob = f"k={r.k}" if r.k is not None else f"{r.sparsity_coef:.3g}"
        paper = PAPER.get(r.name)
        lines.append(
            f"| {r.name} | {knob} | {r.l0:.2f} | {r.mcc:.3f} | {r.f1:.3f} | "
            f"{r.uniqueness:.3f} | {r.explained_variance:.3f} | {r.absorption:.3f} | "
            f"{r.objective:.4g} | {r.stationarity_median:.3g} / {r.stationarity_max:.3g} | "
            f"{r.n_stationary}/{r.n_alive} | {r.n_certified} ({r.certified_drop:.3g}) | "
            f"{'-' if r.amortisation_gap is None else f'{r.amortisation_gap:.3g}'} | "
            f"{'-' if paper is None else f'{paper[0]:.3f} / {paper[1]:.3f}'} |")
    lines += ["", f"Ranking: {result.ranking}", "",
              "Paper: SynthSAEBench-16k at L0 = 25 (arXiv 2602.14687); 'relu' is its standard "
              "L1 SAE. Coefficient searches, (coef, L0) of the short runs then [of the "
              "full-length runs]: " +
              "; ".join(f"{c.name}: " + ", ".join(f"({a:.3g}, {b:.2f})" for a, b in c.tried)
                        + " [" + ", ".join(f"({a:.3g}, {b:.2f})" for a, b in c.finals) + "]"
                        for c in result.calibrations), ""]
    return "\n".join(lines)
