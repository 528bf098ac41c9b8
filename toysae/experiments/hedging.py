"""Feature hedging: does an SAE narrower than the number of true features merge parts of
correlated features into its latents, does it get worse as the SAE narrows, and is that
what the objective wants or a training failure?

Chanin, Dulka & Garriga-Alonso (2025, "Feature Hedging: Correlated Features Break Narrow
Sparse Autoencoders", arXiv 2505.11756) argue that a narrow SAE trained on correlated
features folds components of the features it has no latent for into the latents it has
("hedged latents"), that the narrower it is the worse, and they measure it on language
models without ground truth by a hedging degree (:func:`toysae.metrics.hedging_degree`).
Here the truth is known. On a world of ``data.n_features`` ORTHONORMAL features
(``SyntheticConfig(orthogonal=True)``, firing rates spread tenfold, rescaled to
``E ||x||^2 = 1``), whose Gaussian copula is low-rank with its strength swept over
``correlations`` (0: independent firing), ReLU SAEs of every width of ``width_fractions``
(times the number of features) train at ONE fixed L1 coefficient ``sparsity_coef``, the
paper's protocol (an L0 controller would move the coefficient between a control and an
extended SAE and confound their difference), over ``seeds``:

1. **The paper's protocol**, as in the authors' code (chanind/feature-hedging-paper,
   ``hedging_paper/scripts/train_hedging_eval_saelens_sae.py``): an *initial* SAE of width
   ``W`` trains on ``n_initial`` samples; from it two continuations train on the same
   ``n_continue`` samples in the same order: the *control* (unchanged) and the *extended*
   SAE (:func:`extend_sae`: ``W + n_new`` latents, the original ``W`` copied from the
   initial SAE, the new ones with the architecture's own initialisation at a seed). The
   paper's hedging degree compares the two decoders.
2. **The truth.** With orthonormal features a unit atom decomposes exactly,
   ``c_ij = <d_i, f_j>`` with ``sum_j c_ij^2 <= 1``. A live latent's feature is
   ``f(i) = argmax_j |c_ij|``; a feature is *tracked* when some live latent has
   ``|c| >= threshold`` with it. Per latent (:func:`latent_masses`): its *hedging*, the
   mass ``sum c_ij^2`` on untracked features other than its own (the paper's mechanism:
   features no latent represents), its *interference*, the mass on other tracked
   features, and ``1 - c_{i f(i)}^2``, all it is not its own feature. SAE-level: the mean
   over the live latents, for the decoder rows and for the encoder rows (normalised),
   both read against the decoder's ``f(i)`` and tracked features. The extended SAE's
   original latents are scored against the control's, so the drop shows what the added
   latents took over.
3. **Is hedging what the objective wants?** For each control SAE, at the ``lam`` whose
   optimal codes have its L0 (:func:`toysae.theory.sae_lam_for_l0`, on ``n_check``
   evaluation samples, its ``b_dec`` the bias, as ``l0-sweep`` does), the optimal codes
   (:func:`toysae.dictlearn.sparse_code`, float64 FISTA to a KKT gap of 1e-9, convergence
   recorded) and (a) :func:`toysae.theory.check_optimality`: atom stationarity, its worst
   and median relative violation, the pair identity, the bias condition; (b) the direct
   test: the objective per sample ``1/2 ||x - b - z D||^2 + lam ||z||_1`` at the optimal
   codes for ``D_hedged`` (the control's decoder) against ``D_pure``
   (:func:`pure_dictionary`: every live latent whose best feature is its alone replaced
   by that feature, sign matched, the others unchanged). ``F(hedged) < F(pure)`` with
   the interval below 0 means the objective prefers the hedged atoms at that width:
   hedging is the optimum's, not a training failure.
4. **Findings**, each with its interval and seed count, a difference called only where
   95% intervals separate (:mod:`toysae.stats`): truth hedging at the smallest against the
   largest width per correlation, at the strongest against no correlation per width,
   whether the paper's degree ranks the cells as the truth does (Spearman over the cells,
   bootstrap interval), the sign of ``F(hedged) - F(pure)`` per cell, the stationarity
   verdicts and what the added latents took over.

With ``work_dir`` every finished unit (one correlation, width and seed: its three SAEs
trained and scored) is kept as a JSON file, so a stopped run continues where it stopped
and a run with more seeds, widths or correlations trains only the new ones.

Cost, measured as CPU time on one thread of a shared 2-core machine: a unit of the full
config (2M + 2 x 1M training samples, then the theory on 4,096 samples) took 15.9, 15.8,
16.6 and 19.6 s at widths 8, 16, 32 and 64 (correlation 0.6, seed 0: 68 s for the slice),
so the 48 units of the full config take about 14 minutes on one core; the quick config
took 13.5 s.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from toysae import metrics
from toysae._config import POSITIVE, Bounds, JsonMixin, Seed, validate_fields
from toysae._io import write_text
from toysae._validation import check_float, check_int, check_seed, shifted_seed, to_numpy
from toysae.data import SyntheticConfig, SyntheticData
from toysae.dictionary_objective import dictionary_objective
from toysae.dictlearn import sparse_code
from toysae.dictlearn.sparse_coding import ConvergenceWarning
from toysae.experiments._run_store import RunStore
from toysae.experiments.seed_consistency import Tracking
from toysae.sae import SparseAutoencoder, TrainConfig, make_sae, train_sae
from toysae.stats import (
    Interval,
    check_seeds,
    compare,
    mean_interval,
    not_resolved,
    rank_correlation,
)
from toysae.theory import atom_stationarity, check_optimality, sae_dictionary, sae_lam_for_l0

NAME = "hedging"
DESCRIPTION = ("Feature hedging (arXiv 2505.11756): ReLU SAEs from 1/8 to 1x as wide as "
               "the number of orthonormal true features, at one L1 coefficient, over copula "
               "correlation strengths and seeds: each latent's mass on features no latent "
               "represents (the truth), the paper's hedging degree from a control and an "
               "extended SAE, and whether the objective prefers the hedged atoms to pure "
               "ones at the matched lam, with 95% intervals.")

#: The optimal codes' solves: FISTA in float64 to this KKT gap, with a cap no solve here
#: comes near (a few hundred iterations measured), so none stops silently at it
SOLVE_TOL = 1e-9
SOLVE_MAX_ITER = 200_000
#: Orthonormal features: the rows of the truth must be unit and orthogonal to this
ORTHONORMAL_ATOL = 1e-5
#: Per-run numbers summarised over the seeds of a cell
SUMMARISED = ("l0", "extended_l0", "explained_variance", "n_tracked", "hedging",
              "interference", "off_feature", "encoder_hedging", "encoder_interference",
              "encoder_off_feature", "extended_hedging", "degree", "proj_portion",
              "baseline_portion", "delta_norm", "lam", "atom_violation_max",
              "atom_violation_median", "pure_atom_violation_median", "pair_violations",
              "bias_violation", "n_replaced", "objective_hedged", "objective_pure",
              "objective_gap")


def orthogonal_world(n_features: int = 64, d: int | None = None, *, mean_active: float = 3.5,
                     rate_spread: float = 10.0, correlation_rank: int = 4) -> SyntheticConfig:
    """The experiment's world: ``n_features`` orthonormal features in ``d`` dimensions (``d =
    n_features`` by default), firing by the decay law with the most frequent feature
    ``rate_spread`` times as frequent as the rarest, ``mean_active`` firing per sample,
    uniform magnitudes, and a low-rank copula of rank ``correlation_rank`` whose strength
    the experiment sets (``correlation_strength=0`` here: independent firing)."""
    return SyntheticConfig(d=n_features if d is None else d, n_features=n_features,
                           orthogonal=True, mean_active=mean_active,
                           decay=float(rate_spread ** (-1 / max(n_features - 1, 1))),
                           correlation="low_rank", correlation_rank=correlation_rank,
                           correlation_strength=0.0)


def _increasing(values: tuple, name: str) -> None:
    if (np.diff(values) <= 0).any():
        raise ValueError(f"{name} must be strictly increasing, got {list(values)}")


def widths_of(fractions, n_features: int) -> tuple[int, ...]:
    """Each fraction of ``n_features`` rounded half up, at least 1."""
    return tuple(max(1, math.floor(f * n_features + 0.5)) for f in fractions)


@dataclass(frozen=True)
class Config(JsonMixin):
    data: SyntheticConfig = field(default_factory=orthogonal_world)
    # SAE widths as fractions of the number of features: increasing, at most 1
    width_fractions: Annotated[tuple[float, ...], Bounds(0.0, 1.0, min_inclusive=False)] = \
        (0.125, 0.25, 0.5, 1.0)
    # copula strengths (data.correlation_strength), increasing; 0 is independent firing
    correlations: Annotated[tuple[float, ...], Bounds(0.0, 1.0, max_inclusive=False)] = \
        (0.0, 0.3, 0.6, 0.9)
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds: initialisation and data order
    # latents the extended SAE adds, the same at every width (the paper adds 64 at every
    # width): 8 is the smallest width, so the extension at most doubles an SAE
    n_new: Annotated[int, Bounds(1)] = 8
    n_train: Annotated[int, Bounds(1)] = 131_072  # the fixed training set of each world
    n_initial: Annotated[int, Bounds(1)] = 2_000_000  # samples the initial SAE trains on
    n_continue: Annotated[int, Bounds(1)] = 1_000_000  # samples of each continuation
    sparsity_coef: Annotated[float, POSITIVE] = 0.04  # the one L1 coefficient, every width
    lr: Annotated[float, POSITIVE] = 3e-3
    batch_size: Annotated[int, Bounds(1)] = 256
    # |c| at or above which a live latent tracks a feature
    threshold: Annotated[float, Bounds(0.0, 1.0, min_inclusive=False)] = 0.9
    n_eval: Annotated[int, Bounds(64)] = 8192
    n_check: Annotated[int, Bounds(64)] = 4096  # evaluation samples the theory reads
    lam_rtol: Annotated[float, POSITIVE] = 0.02  # of the matched lam's L0
    n_baselines: Annotated[int, Bounds(2)] = 50  # random spans of the degree's baseline
    n_boot: Annotated[int, Bounds(100)] = 2000  # bootstrap resamples of the rank correlation
    work_dir: str | None = None  # keeps each finished unit; a rerun continues from them
    seed: Seed = 0  # the worlds, their training and evaluation samples

    def __post_init__(self):
        validate_fields(self)
        _increasing(self.width_fractions, "width_fractions")
        widths = widths_of(self.width_fractions, self.data.n_features)
        if len(set(widths)) != len(widths):
            raise ValueError(f"width_fractions {list(self.width_fractions)} round to the "
                             f"widths {list(widths)} of {self.data.n_features} features: "
                             "each must be a different width")
        _increasing(self.correlations, "correlations")
        check_seeds(self.seeds)
        if len(self.seeds) < 2:
            raise ValueError(f"seeds must hold at least 2 seeds (every verdict is an "
                             f"interval over seeds), got {list(self.seeds)}")
        if not self.data.orthogonal:
            raise ValueError("data.orthogonal must be True: the truth decomposes an atom on "
                             "orthonormal features")
        if self.data.correlation != "low_rank":
            raise ValueError(f"data.correlation must be 'low_rank' (the copula whose strength "
                             f"is swept), got {self.data.correlation!r}")
        if self.data.correlation_strength != 0:
            raise ValueError("data.correlation_strength must be 0: the experiment sets it "
                             "from correlations")
        if self.n_new >= self.data.d:
            raise ValueError(f"n_new must be < data.d ({self.data.d}): as many random rows "
                             f"span the space and the hedging degree is undefined, got "
                             f"{self.n_new}")
        if self.n_check > self.n_eval:
            raise ValueError(f"n_check must be <= n_eval ({self.n_eval}), got {self.n_check}")
        if self.n_train < self.batch_size:
            raise ValueError(f"n_train must be >= batch_size ({self.batch_size}), got "
                             f"{self.n_train}")

    @classmethod
    def quick(cls) -> Config:
        return cls(data=orthogonal_world(32), width_fractions=(0.25, 0.5, 1.0),
                   correlations=(0.0, 0.9), seeds=(0, 1), n_new=4, n_train=16_384,
                   n_initial=150_000, n_continue=75_000, n_eval=2048, n_check=1024,
                   n_boot=500)

    @property
    def widths(self) -> tuple[int, ...]:
        return widths_of(self.width_fractions, self.data.n_features)

    def world(self, correlation: float) -> SyntheticConfig:
        return dataclasses.replace(self.data, correlation_strength=float(correlation))


# -- results ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class World(JsonMixin):
    """One correlation strength's world: its scale, true L0 and copula."""

    correlation: float
    scale: float  # the raw data's sqrt(E ||x||^2), divided out
    true_l0: float  # mean active features per training sample
    copula_max: float  # largest |off-diagonal| of the copula's correlation (0: none)
    copula_mean: float  # mean |off-diagonal|


@dataclass(frozen=True)
class Run(JsonMixin):
    """One unit: a control and an extended SAE grown from one initial SAE, at one
    correlation, width and seed, scored against the truth and checked at the matched lam."""

    correlation: float
    width: int
    seed: int
    trained: bool  # every one of the three trainings reported success
    train_message: str  # the first miss, if any
    l0: float  # the control's, on the evaluation samples
    extended_l0: float
    explained_variance: float  # the control's
    n_alive: int  # the control's latents that fire on the evaluation samples
    n_tracked: int  # features some live latent has |c| >= threshold with
    hedging: float  # decoder: mean over live latents of the mass on untracked features
    interference: float  # ... on other tracked features
    off_feature: float  # ... 1 - c_{i f(i)}^2
    encoder_hedging: float  # the same of the normalised encoder rows
    encoder_interference: float
    encoder_off_feature: float
    extended_hedging: float  # the extended SAE's original latents, against the control's
    degree: float  # the paper's hedging degree (metrics.hedging_degree)
    proj_portion: float
    baseline_portion: float
    baseline_std: float
    delta_norm: float  # mean ||extended_i - control_i|| of the original latents
    lam: float  # whose optimal codes have the control's L0 on the check samples
    lam_l0_error: float
    lam_success: bool
    solves_converged: bool  # both optimal-code solves met SOLVE_TOL
    atoms_passed: bool  # atom stationarity of the control's decoder at lam
    atom_violation_max: float  # relative: tangential over normal force
    atom_violation_median: float  # over the atoms with code mass
    pure_atom_violation_median: float  # the same of D_pure
    pairs_passed: bool
    pair_violations: int
    pairs_checked: int
    bias_violation: float  # ||mean residual|| / lam at the SAE's b_dec
    n_replaced: int  # latents D_pure replaces by their feature
    objective_hedged: float  # per sample, optimal codes at lam
    objective_pure: float
    objective_gap: float  # hedged - pure


@dataclass(frozen=True)
class Cell(JsonMixin):
    """One correlation and width over its seeds: ``intervals[metric]`` an
    :class:`toysae.stats.Interval` as a dict (Student-t over the seeds)."""

    correlation: float
    width: int
    width_fraction: float
    seeds: tuple
    intervals: dict
    atoms_passed: int  # runs whose decoder passes atom stationarity
    pairs_passed: int
    converged: int  # runs whose optimal-code solves all converged

    def interval(self, metric: str) -> Interval | None:
        value = self.intervals.get(metric)
        return None if value is None else Interval(**value)

    @property
    def n(self) -> int:
        return len(self.seeds)


@dataclass(frozen=True)
class Result(JsonMixin):
    config: Config
    widths: tuple
    worlds: tuple  # World per correlation
    runs: tuple  # Run per correlation x width x seed
    cells: tuple  # Cell per correlation x width
    tracking: Tracking  # the paper's degree against the truth hedging over the cells
    findings: tuple  # sentences, each with its intervals and seed count
    wall_time: float  # seconds for the units done in this call (kept ones are free)


# -- the truth -------------------------------------------------------------------------------
def _orthonormal(features) -> np.ndarray:
    F = to_numpy(features, "features", ndim=2)
    if F.shape[0] == 0 or F.shape[0] > F.shape[1]:
        raise ValueError(f"features must be 1 to d orthonormal rows, got shape {F.shape}")
    off = np.abs(F @ F.T - np.eye(F.shape[0])).max()
    if off > ORTHONORMAL_ATOL:
        raise ValueError(f"features must be orthonormal rows (F F^T = I within "
                         f"{ORTHONORMAL_ATOL:g}), off by {off:.3g}")
    return F


def _unit_rows(rows, name: str) -> np.ndarray:
    R = to_numpy(rows, name, ndim=2)
    norms = np.linalg.norm(R, axis=1)
    if (norms == 0).any():
        raise ValueError(f"{name} has {int((norms == 0).sum())} zero row(s)")
    return R / norms[:, None]


def feature_tracking(decoder, features, alive, threshold: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Each latent's feature and the features the SAE tracks.

    decoder : (width, d) rows (normalised here). features : (n_features, d) orthonormal.
    alive : (width,) bool, the latents that fire on the evaluation samples.
    Returns ``best`` (width,) int, ``argmax_j |<d_i, f_j>|`` (ties: the lower index), and
    ``tracked`` (n_features,) bool: some live latent has ``|c| >= threshold`` with it.
    """
    F = _orthonormal(features)
    D = _unit_rows(decoder, "decoder")
    if D.shape[1] != F.shape[1]:
        raise ValueError(f"decoder has dimension {D.shape[1]} but features have "
                         f"{F.shape[1]}")
    alive = np.asarray(alive, dtype=bool)
    if alive.shape != (D.shape[0],):
        raise ValueError(f"alive must have shape ({D.shape[0]},), got {alive.shape}")
    threshold = check_float(threshold, "threshold", minimum=0.0, maximum=1.0,
                            min_inclusive=False)
    C = np.abs(D @ F.T)
    best = C.argmax(axis=1)
    tracked = np.zeros(F.shape[0], dtype=bool)
    tracked[best[alive & (C.max(axis=1) >= threshold)]] = True
    return best, tracked


def latent_masses(rows, features, best, tracked) -> dict[str, np.ndarray]:
    """How each row's unit direction splits over orthonormal ``features``.

    rows : (n, d), normalised here (decoder atoms or encoder rows). best : (n,) each row's
    own feature (:func:`feature_tracking`'s, from the decoder). tracked : (n_features,)
    bool. With ``c_ij = <row_i, f_j>``, ``sum_j c_ij^2 <= 1`` (1 when the features span the
    space), and per row (``(n,)`` arrays):

    - ``hedging``: ``sum c_ij^2`` over UNTRACKED features ``j != best_i``, its mass on
      features no latent represents;
    - ``interference``: the same over the other TRACKED features;
    - ``off_feature``: ``1 - c_{i best_i}^2``, which is ``hedging + interference`` plus the
      mass outside the features' span.
    """
    F = _orthonormal(features)
    R = _unit_rows(rows, "rows")
    best = np.asarray(best, dtype=np.int64)
    tracked = np.asarray(tracked, dtype=bool)
    if best.shape != (R.shape[0],) or tracked.shape != (F.shape[0],):
        raise ValueError(f"best must have shape ({R.shape[0]},) and tracked "
                         f"({F.shape[0]},), got {best.shape} and {tracked.shape}")
    C2 = (R @ F.T) ** 2
    own = np.zeros_like(C2, dtype=bool)
    own[np.arange(len(R)), best] = True
    return {"hedging": np.where(~tracked[None] & ~own, C2, 0.0).sum(axis=1),
            "interference": np.where(tracked[None] & ~own, C2, 0.0).sum(axis=1),
            "off_feature": 1.0 - C2[np.arange(len(R)), best]}


def pure_dictionary(decoder, features, alive) -> tuple[np.ndarray, np.ndarray]:
    """``D_pure``: ``decoder`` (unit rows) with every live latent whose best feature (largest
    ``|c|``) is no other live latent's replaced by that feature, its sign matched; dead
    latents and latents that share a best feature are kept. Returns ``(D_pure, replaced)``,
    ``replaced`` the (width,) bool mask of the rows changed."""
    F = _orthonormal(features)
    D = _unit_rows(decoder, "decoder")
    alive = np.asarray(alive, dtype=bool)
    C = D @ F.T
    best = np.abs(C).argmax(axis=1)
    shared = np.bincount(best[alive], minlength=F.shape[0])
    replaced = alive & (shared[best] == 1)
    out = D.copy()
    rows = np.flatnonzero(replaced)
    out[rows] = np.sign(C[rows, best[rows]])[:, None] * F[best[rows]]
    return out, replaced


# -- the SAEs --------------------------------------------------------------------------------
def extend_sae(sae: SparseAutoencoder, n_new: int, seed: int) -> SparseAutoencoder:
    """A copy of ``sae`` with ``n_new`` latents added after its own: the architecture built
    at width ``width + n_new`` with ``seed`` (its own initialisation, which the new
    latents keep), then every per-latent parameter's first ``width`` slices and every
    other parameter copied from ``sae``."""
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder, got {type(sae).__name__}")
    n_new = check_int(n_new, "n_new", minimum=1)
    wide = make_sae(sae.architecture, **{**sae.config(), "width": sae.width + n_new,
                                         "seed": check_seed(seed)})
    names = {id(p): n for n, p in sae.named_parameters()}
    axes = {names[id(p)]: axis for p, axis in sae.latent_parameters()}
    narrow = sae.state_dict()
    state = wide.state_dict()
    for key, value in narrow.items():
        if key in axes:
            state[key].narrow(axes[key], 0, sae.width).copy_(value)
        elif state[key].shape == value.shape:
            state[key].copy_(value)
        else:
            raise ValueError(f"cannot extend a {sae.architecture} SAE: {key} has shape "
                             f"{tuple(value.shape)} at width {sae.width} and "
                             f"{tuple(state[key].shape)} at width {wide.width}, and it is "
                             "not one of its per-latent parameters")
    wide.load_state_dict(state)
    return wide


def _train(sae, X: np.ndarray, config: Config, n_samples: int, seed: int):
    tc = TrainConfig(n_samples=n_samples, batch_size=config.batch_size, lr=config.lr,
                     sparsity_coef=config.sparsity_coef, log_every=100, seed=seed)
    return train_sae(sae, X, tc, progress=False)


@dataclass
class _World:
    info: World
    X: np.ndarray  # the training set, unit scale
    ev: object  # the evaluation Batch, unit scale
    F: np.ndarray  # the true features


def _world(correlation: float, config: Config) -> _World:
    gen = SyntheticData(config.world(correlation))
    train = gen.sample(config.n_train, seed=config.seed)
    ev = gen.sample(config.n_eval, seed=shifted_seed(config.seed, 1))
    scale = float(np.sqrt(np.mean(np.sum(train.x.astype(np.float64) ** 2, axis=1))))
    C = gen.correlation
    off = np.zeros(1) if C is None else np.abs(C[~np.eye(len(C), dtype=bool)])
    info = World(correlation=float(correlation), scale=scale,
                 true_l0=float(metrics.l0(train.codes)), copula_max=float(off.max()),
                 copula_mean=float(off.mean()))
    return _World(info=info, X=(train.x / scale).astype(np.float32),
                  ev=ev._replace(x=(ev.x / scale).astype(np.float32)),
                  F=gen.features.astype(np.float64))


def _solve(X: np.ndarray, D: np.ndarray, lam: float):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # recorded: solves_converged
        return sparse_code(X, D, lam, dtype=torch.float64, tol=SOLVE_TOL,
                           max_iter=SOLVE_MAX_ITER)


def objective_test(X, D_hedged, D_pure, lam: float, bias) -> dict:
    """Both dictionaries' objective per sample at their optimal codes for ``X`` at ``lam``
    (``bias`` subtracted from ``X`` for both), the optimal codes of ``D_hedged``, and
    whether both solves converged."""
    X = to_numpy(X, "X", ndim=2)
    target = X - to_numpy(bias, "bias", ndim=1)
    hedged, pure = _solve(target, D_hedged, lam), _solve(target, D_pure, lam)
    n = X.shape[0]
    f_hedged = dictionary_objective(X, D_hedged, hedged.codes, lam, bias=bias) / n
    f_pure = dictionary_objective(X, D_pure, pure.codes, lam, bias=bias) / n
    return {"hedged": float(f_hedged), "pure": float(f_pure), "codes": hedged.codes,
            "pure_codes": pure.codes, "converged": bool(hedged.success and pure.success)}


def _masses(rows, F, best, tracked, alive) -> dict[str, float]:
    return {k: float(v[alive].mean()) for k, v in latent_masses(rows, F, best, tracked).items()}


def _theory(sae, ev_x: np.ndarray, F: np.ndarray, alive: np.ndarray, config: Config) -> dict:
    X = ev_x[:config.n_check].astype(np.float64)
    matched = sae_lam_for_l0(sae, X, rtol=config.lam_rtol)
    lam = float(matched.lam)
    D, b = sae_dictionary(sae)
    D_pure, replaced = pure_dictionary(D, F, alive)
    test = objective_test(X, D, D_pure, lam, b)
    report = check_optimality(X, D, test["codes"], lam, decoder_bias=True, bias=b)
    atoms = report.atoms
    pure = atom_stationarity(X, D_pure, test["pure_codes"], lam, bias=b)

    def median(rep) -> float:
        return float(np.median(rep.violation[rep.alive])) if rep.alive.any() else 0.0

    return dict(lam=lam, lam_l0_error=float(matched.relative_error),
                lam_success=bool(matched.success), solves_converged=test["converged"],
                atoms_passed=bool(atoms.passed), atom_violation_max=float(atoms.max_violation),
                atom_violation_median=median(atoms), pure_atom_violation_median=median(pure),
                pairs_passed=bool(report.pairs.passed),
                pair_violations=int(report.pairs.n_violations),
                pairs_checked=int(report.pairs.n_pairs_checked),
                bias_violation=float(report.bias.violation), n_replaced=int(replaced.sum()),
                objective_hedged=test["hedged"], objective_pure=test["pure"],
                objective_gap=test["hedged"] - test["pure"])


def _unit(correlation: float, width: int, seed: int, world: _World, config: Config) -> Run:
    """Train one unit's initial, control and extended SAEs and score them."""
    X, ev, F = world.X, world.ev, world.F
    initial = make_sae("relu", X.shape[1], width, seed=seed)
    results = [_train(initial, X, config, config.n_initial, seed)]
    control = copy.deepcopy(initial)
    extended = extend_sae(initial, config.n_new, shifted_seed(seed, 2))
    continuation = shifted_seed(seed, 1)  # the same samples, in the same order, for both
    results += [_train(sae, X, config, config.n_continue, continuation)
                for sae in (control, extended)]
    control.eval()
    extended.eval()
    with torch.no_grad():
        out = control(torch.from_numpy(ev.x))
        Z, x_hat = out.codes.numpy(), out.x_hat.numpy()
        Z_ext = extended.encode(torch.from_numpy(ev.x)).numpy()
    alive = ~metrics.dead_latents(Z)
    if not alive.any():
        raise ValueError(f"the control SAE (correlation {correlation:g}, width {width}, seed "
                         f"{seed}) has no latent that fires on the evaluation samples: "
                         f"sparsity_coef {config.sparsity_coef:g} is too large")
    D = sae_dictionary(control)[0]
    D_ext = sae_dictionary(extended)[0]
    encoder = control.W_enc.detach().double().numpy().T
    best, tracked = feature_tracking(D, F, alive, config.threshold)
    decoder = _masses(D, F, best, tracked, alive)
    enc = _masses(encoder, F, best, tracked, alive)
    ext_alive = ~metrics.dead_latents(Z_ext)[:width]
    extended_hedging = (_masses(D_ext[:width], F, best, tracked, ext_alive)["hedging"]
                        if ext_alive.any() else 0.0)
    degree = metrics.hedging_degree(D, D_ext, n_baselines=config.n_baselines, seed=seed)
    missed = [r.message for r in results if not r.success]
    return Run(correlation=float(correlation), width=width, seed=seed, trained=not missed,
               train_message=missed[0] if missed else "",
               l0=float(metrics.l0(Z)), extended_l0=float(metrics.l0(Z_ext)),
               explained_variance=metrics.explained_variance(ev.x, x_hat),
               n_alive=int(alive.sum()), n_tracked=int(tracked.sum()),
               hedging=decoder["hedging"], interference=decoder["interference"],
               off_feature=decoder["off_feature"], encoder_hedging=enc["hedging"],
               encoder_interference=enc["interference"],
               encoder_off_feature=enc["off_feature"], extended_hedging=extended_hedging,
               degree=degree.degree, proj_portion=degree.proj_portion,
               baseline_portion=degree.baseline_portion, baseline_std=degree.baseline_std,
               delta_norm=degree.delta_norm, **_theory(control, ev.x, F, alive, config))


class _Store(RunStore):
    """Finished units, keyed by every field but the lists of what runs (widths,
    correlations, seeds) and the bootstrap that only judges the kept units."""

    def __init__(self, config: Config):
        super().__init__(config, ("width_fractions", "correlations", "seeds", "n_boot"))


def run(config: Config) -> Result:
    start = time.perf_counter()
    store = _Store(config)
    worlds, runs, cells = [], [], []
    for correlation in config.correlations:
        world = _world(correlation, config)
        worlds.append(world.info)
        for fraction, width in zip(config.width_fractions, config.widths, strict=True):
            mine = []
            for seed in config.seeds:
                unit = f"r{correlation:g}-w{width}-seed{seed}"
                kept = store.get(unit)
                done = None if kept is None else Run.from_dict(
                    {k: v for k, v in kept.items() if k not in ("commit", "dirty")})
                if done is None:
                    done = _unit(correlation, width, seed, world, config)
                    store.put(unit, done.to_dict())
                mine.append(done)
            runs += mine
            cells.append(summarise(mine, fraction))
    tracking = track(cells, config.n_boot, config.seed)
    return Result(config=config, widths=config.widths, worlds=tuple(worlds), runs=tuple(runs),
                  cells=tuple(cells), tracking=tracking,
                  findings=findings(config, worlds, runs, cells, tracking),
                  wall_time=time.perf_counter() - start)


def summarise(runs, width_fraction: float) -> Cell:
    """The seeds of one correlation and width: each SUMMARISED number's t interval."""
    first = runs[0]
    intervals = {m: mean_interval([getattr(r, m) for r in runs]).to_dict() for m in SUMMARISED}
    return Cell(correlation=first.correlation, width=first.width,
                width_fraction=float(width_fraction), seeds=tuple(r.seed for r in runs),
                intervals=intervals, atoms_passed=sum(r.atoms_passed for r in runs),
                pairs_passed=sum(r.pairs_passed for r in runs),
                converged=sum(r.solves_converged for r in runs))


def track(cells, n_boot: int, seed: int) -> Tracking:
    """Spearman's rho of the paper's degree with the truth hedging (decoder) over the cells
    (their means)."""
    x = np.array([c.interval("hedging").mean for c in cells])
    y = np.array([c.interval("degree").mean for c in cells])
    reason = ""
    if len(cells) < 3:
        reason = f"{len(cells)} cells: a rank correlation needs 3"
    elif np.ptp(x) == 0 or np.ptp(y) == 0:
        reason = (f"{'the truth hedging' if np.ptp(x) == 0 else 'the degree'} is the same in "
                  "every cell")
    if reason:
        return Tracking(n=len(cells), rho=None, low=None, high=None, resolved=False,
                        reason=reason)
    rc = rank_correlation(x, y, n_boot=n_boot, seed=seed)
    return Tracking(n=rc.n, rho=rc.rho, low=rc.low, high=rc.high, resolved=rc.resolved)


# -- findings --------------------------------------------------------------------------------
def _width_label(cell: Cell) -> str:
    return f"width {cell.width} ({cell.width_fraction:g}x)"


def _seeds(cells) -> str:
    counts = sorted({c.n for c in cells})
    return f"{' or '.join(map(str, counts))} seeds"


# Masses below this are shown as 0.000 (three decimals): two of them are not compared.
MASS_RESOLUTION = 1e-3


def _versus(a: Interval, b: Interval, more: str, less: str, floor: float = 0.0) -> str:
    """``more`` where ``a`` lies above ``b`` with separate intervals, ``less`` below;
    "none at either" where both means are below ``floor`` (a difference nobody can read)."""
    if max(abs(a.mean), abs(b.mean)) < floor:
        return f"none at either (both below {floor:g})"
    verdict = compare(a, b)
    return more if verdict > 0 else less if verdict < 0 else not_resolved(min(a.n, b.n))


def findings(config: Config, worlds, runs, cells, tracking: Tracking) -> tuple[str, ...]:
    out = []
    low, high = min(runs, key=lambda r: r.l0), max(runs, key=lambda r: r.l0)
    true = ", ".join(f"{w.true_l0:.2f}" for w in worlds)
    out.append(f"At the one sparsity_coef {config.sparsity_coef:g}, the control SAEs' held-out "
               f"L0 runs from {low.l0:.2f} (width {low.width}, correlation "
               f"{low.correlation:g}) to {high.l0:.2f} (width {high.width}, correlation "
               f"{high.correlation:g}); the worlds' true L0: {true}.")
    missed = [r for r in runs if not r.trained]
    if missed:
        out.append(f"Units with a training that reported a miss ({len(missed)} of "
                   f"{len(runs)}): " + "; ".join(f"correlation {r.correlation:g} width "
                                                 f"{r.width} seed {r.seed}" for r in missed)
                   + ".")
    by = {(c.correlation, c.width): c for c in cells}
    narrow, wide = config.widths[0], config.widths[-1]
    for r in config.correlations:
        a, b = by[(r, narrow)], by[(r, wide)]
        out.append(
            f"At correlation {r:g} ({_seeds([a, b])}, 95% t intervals), the truth hedging of "
            f"the decoder is {a.interval('hedging')} at {_width_label(a)} against "
            f"{b.interval('hedging')} at {_width_label(b)}: "
            + _versus(a.interval("hedging"), b.interval("hedging"),
                      "it grows as the SAE narrows", "it shrinks as the SAE narrows",
                      MASS_RESOLUTION)
            + f"; of the encoder rows {a.interval('encoder_hedging')} against "
            f"{b.interval('encoder_hedging')}: "
            + _versus(a.interval("encoder_hedging"), b.interval("encoder_hedging"),
                      "grows as the SAE narrows", "shrinks as the SAE narrows",
                      MASS_RESOLUTION) + ".")
    if len(config.correlations) > 1:
        weak, strong = config.correlations[0], config.correlations[-1]
        parts = []
        for w in config.widths:
            a, b = by[(strong, w)], by[(weak, w)]
            parts.append(f"{_width_label(a)} {a.interval('hedging')} against "
                         f"{b.interval('hedging')}: "
                         + _versus(a.interval("hedging"), b.interval("hedging"), "higher",
                                   "lower", MASS_RESOLUTION))
        out.append(f"Truth hedging of the decoder at correlation {strong:g} against "
                   f"{weak:g} ({_seeds(cells)}, 95% t intervals): " + "; ".join(parts) + ".")
    out.append(_tracking_sentence(cells, tracking))
    out.append(_objective_sentence(cells))
    out.append(_stationarity_sentence(runs, cells))
    out.append(_takeover_sentence(cells, config.n_new))
    return tuple(out)


def _tracking_sentence(cells, tracking: Tracking) -> str:
    over = f"the {len(cells)} (correlation, width) cells ({_seeds(cells)} each)"
    if tracking.rho is None:
        return f"Over {over}, no rank correlation of the paper's degree with the truth: " \
               f"{tracking.reason}."
    verdict = (("the paper's degree ranks the cells as the truth hedging does"
                if tracking.rho > 0 else "the paper's degree ranks the cells against the truth")
               if tracking.resolved else "the sign is not resolved (the interval contains 0)")
    return (f"Over {over}, Spearman's rho of the paper's hedging degree with the truth hedging "
            f"of the decoder is {tracking.rho:+.2f} [{tracking.low:+.2f}, "
            f"{tracking.high:+.2f}] (95% bootstrap over the cells): {verdict}.")


def _cell_label(c: Cell) -> str:
    return f"correlation {c.correlation:g} {_width_label(c)}"


def _objective_sentence(cells) -> str:
    below, above, unresolved, vacuous = [], [], [], []
    for c in cells:
        gap = c.interval("objective_gap")
        label = f"{_cell_label(c)} {gap.format(5)}"
        if c.interval("n_replaced").mean == 0:
            vacuous.append(_cell_label(c))
        elif gap.resolved and gap.high < 0:
            below.append(label)
        elif gap.resolved and gap.low > 0:
            above.append(label)
        else:
            unresolved.append(label)
    text = (f"F(hedged) - F(pure), the objective per sample at the matched lam with optimal "
            f"codes ({_seeds(cells)}, 95% t intervals): below 0 (the objective prefers the "
            f"hedged atoms) in {len(below)}, above 0 (it prefers the pure ones) in "
            f"{len(above)}, not resolved in {len(unresolved)} of {len(cells)} cells")
    text += "." if not vacuous else (f"; in {len(vacuous)} no latent has a best feature of "
                                     f"its own to replace ({'; '.join(vacuous)}).")
    for name, group in (("Below", below), ("Above", above), ("Not resolved", unresolved)):
        if group:
            text += f" {name}: {'; '.join(group)}."
    return text


def _stationarity_sentence(runs, cells) -> str:
    n = len(runs)
    atoms = sum(r.atoms_passed for r in runs)
    pairs = sum(r.pairs_passed for r in runs)
    converged = sum(r.solves_converged for r in runs)
    worst = max(runs, key=lambda r: r.atom_violation_max)
    best = min(runs, key=lambda r: r.atom_violation_max)
    closer = sum(compare(c.interval("atom_violation_median"),
                         c.interval("pure_atom_violation_median")) < 0 for c in cells)
    further = sum(compare(c.interval("atom_violation_median"),
                          c.interval("pure_atom_violation_median")) > 0 for c in cells)
    return (f"At the matched lam, atom stationarity holds for {atoms} of {n} control "
            f"decoders and the pair identity for {pairs}; the worst relative violation runs "
            f"from {best.atom_violation_max:.3g} to {worst.atom_violation_max:.3g} (width "
            f"{worst.width}, correlation {worst.correlation:g}, seed {worst.seed}). The "
            f"median violation of the hedged decoder is below that of the pure one, "
            f"intervals separating, in {closer} of {len(cells)} cells and above it in "
            f"{further} ({_seeds(cells)}); the optimal-code solves converged in {converged} "
            f"of {n} units.")


def _takeover_sentence(cells, n_new: int) -> str:
    hedged = [c for c in cells if c.interval("hedging").mean >= MASS_RESOLUTION]
    dropped = [c for c in hedged
               if compare(c.interval("extended_hedging"), c.interval("hedging")) < 0]
    return (f"With {n_new} latents added, the original latents' truth hedging (against the "
            f"control's tracked features) is lower than the control's, intervals separating, "
            f"in {len(dropped)} of the {len(hedged)} cells with a control hedging of at least "
            f"{MASS_RESOLUTION:g} ({_seeds(cells)})"
            + (": " + "; ".join(f"{_cell_label(c)} {c.interval('hedging').format(3)} -> "
                                f"{c.interval('extended_hedging').format(3)}"
                                for c in dropped) if dropped else "") + ".")


# -- outputs ---------------------------------------------------------------------------------
def save(result: Result, out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from toysae.plotting import save_figure, style, wrap

    style()
    out_dir = Path(out_dir)
    cfg = result.config
    fig, axes = plt.subplots(2, 2, figsize=(9.0, 8.4))
    colours = {r: f"C{i}" for i, r in enumerate(cfg.correlations)}
    _panel_truth(axes[0, 0], result, colours)
    _panel_degree(axes[0, 1], result, colours)
    _panel_scatter(axes[1, 0], result, colours)
    _panel_objective(axes[1, 1], result, colours)
    markers = "osD^v<>ph*"
    handles = [Line2D([], [], color=colours[r], marker="o", label=f"correlation {r:g}")
               for r in cfg.correlations]
    handles.append(Line2D([], [], color="0.3", linestyle="--", marker="s",
                          label="encoder rows (dashed)"))
    handles += [Line2D([], [], color="0.3", linestyle="none", marker=markers[i % len(markers)],
                       label=f"width {w} (scatter)") for i, w in enumerate(result.widths)]
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False)
    fig.suptitle(wrap(f"Feature hedging of ReLU SAEs on {cfg.data.n_features} orthonormal "
                      f"features in d = {cfg.data.d}, one L1 coefficient "
                      f"({cfg.sparsity_coef:g}), {len(cfg.seeds)} seeds per point (means, 95% "
                      "t intervals)", 95))
    rows = math.ceil(len(handles) / 4)
    fig.tight_layout(rect=(0, (0.3 + 0.25 * rows) / 8.4, 1, 1))
    return [save_figure(fig, out_dir / f"{NAME}.png"),
            write_text(out_dir / f"{NAME}.md", table(result))]


def _errors(intervals) -> np.ndarray:
    return np.array([[i.mean - i.low, i.high - i.mean] if i.resolved else [0.0, 0.0]
                     for i in intervals]).T


def _width_axis(ax, result: Result) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(list(result.config.width_fractions)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("SAE width / number of features (log scale)")


def _lines(ax, result: Result, colours, metric: str, **style) -> None:
    for r in result.config.correlations:
        mine = [c for c in result.cells if c.correlation == r]
        values = [c.interval(metric) for c in mine]
        ax.errorbar([c.width_fraction for c in mine], [v.mean for v in values],
                    yerr=_errors(values), color=colours[r], capsize=3, **style)


def _panel_truth(ax, result: Result, colours) -> None:
    _lines(ax, result, colours, "hedging", marker="o", linestyle="-")
    _lines(ax, result, colours, "encoder_hedging", marker="s", linestyle="--", alpha=0.8)
    _width_axis(ax, result)
    ax.set_ylabel("mass on untracked features\n(truth hedging, mean over live latents)")
    ax.set_title("Truth: how much of a latent is features it lacks")


def _panel_degree(ax, result: Result, colours) -> None:
    _lines(ax, result, colours, "degree", marker="o", linestyle="-")
    _width_axis(ax, result)
    ax.set_ylabel(f"hedging degree ({result.config.n_new} latents added)")
    ax.set_title("The paper's hedging degree (no truth)")


def _panel_scatter(ax, result: Result, colours) -> None:
    markers = "osD^v<>ph*"
    for c in result.cells:
        x, y = c.interval("hedging"), c.interval("degree")
        ax.errorbar(x.mean, y.mean, xerr=_errors([x]), yerr=_errors([y]), capsize=2,
                    color=colours[c.correlation], linestyle="none",
                    marker=markers[result.widths.index(c.width) % len(markers)])
    t = result.tracking
    ax.set_xlabel("truth hedging of the decoder")
    ax.set_ylabel("hedging degree")
    ax.set_title("Spearman over the cells: " + (t.reason if t.rho is None else
                                                f"{t.rho:+.2f} [{t.low:+.2f}, {t.high:+.2f}]"))


def _panel_objective(ax, result: Result, colours) -> None:
    _lines(ax, result, colours, "objective_gap", marker="o", linestyle="-")
    ax.axhline(0.0, color="black", linewidth=1, linestyle=":")
    _width_axis(ax, result)
    n = len(result.runs)
    passed = sum(r.atoms_passed for r in result.runs)
    ax.set_ylabel("F(hedged) - F(pure) per sample\n(at the matched lam, optimal codes)")
    ax.set_title(f"Below 0: the objective prefers the hedged atoms\n(atom stationarity holds "
                 f"for {passed} of {n} decoders)")


def _cell(interval: Interval | None, digits: int) -> str:
    return "-" if interval is None else interval.format(digits)


SUMMARY_COLUMNS = (("L0", "l0", 2), ("truth hedging (decoder)", "hedging", 3),
                   ("truth hedging (encoder)", "encoder_hedging", 3),
                   ("hedging degree", "degree", 3), ("F(hedged) - F(pure)", "objective_gap", 5))


def summary_table(cells, seeds: int) -> str:
    """Markdown: one row per correlation and width, the control SAE's L0, the truth hedging
    of its decoder and encoder rows, the paper's degree and F(hedged) - F(pure) as mean
    [95% t interval], and how many of its decoders pass atom stationarity."""
    lines = [f"{seeds} seeds per row, mean [95% t interval over the seeds]; truth hedging: "
             "a live latent's mass on features no latent tracks; F(hedged) - F(pure): the "
             "objective per sample at the matched lam, below 0 where the objective prefers "
             "the hedged atoms.", "",
             "| correlation | width | " + " | ".join(c[0] for c in SUMMARY_COLUMNS)
             + " | atom stationarity holds |",
             "|" + "---|" * (len(SUMMARY_COLUMNS) + 3)]
    for c in cells:
        lines.append(f"| {c.correlation:g} | {c.width} ({c.width_fraction:g}x) | "
                     + " | ".join(_cell(c.interval(m), d) for _, m, d in SUMMARY_COLUMNS)
                     + f" | {c.atoms_passed} of {c.n} |")
    return "\n".join(lines)


def report_tables(data: dict) -> dict[str, str]:
    """The tables ``toysae report`` renders from a stored result (``NAME.json``, parsed):
    ``summary`` (:func:`summary_table`) and ``findings`` (the findings as a list)."""
    cells = [Cell.from_dict(c) for c in data["cells"]]
    return {"summary": summary_table(cells, len(data["config"]["seeds"])),
            "findings": "\n".join(f"- {f}" for f in data["findings"])}


def caption(data: dict) -> str:
    """The line under the figure (``toysae report``): whether the paper's degree ranks the
    cells as the truth does, and where the objective prefers the hedged atoms."""
    said = [f for f in data["findings"] if f.startswith(("Over the ", "F(hedged) - F(pure)"))]
    return " ".join(s.split(" Below:")[0] for s in said) or data["findings"][0]


_DETAIL_COLUMNS = (("interference", "interference", 3), ("1 - c^2", "off_feature", 3),
                   ("tracked", "n_tracked", 1), ("extended's hedging", "extended_hedging", 3),
                   ("proj portion", "proj_portion", 3), ("baseline", "baseline_portion", 3),
                   ("move", "delta_norm", 3), ("lam", "lam", 4),
                   ("atom violation (median)", "atom_violation_median", 3),
                   ("pure's (median)", "pure_atom_violation_median", 3),
                   ("worst", "atom_violation_max", 3), ("pairs failing", "pair_violations", 1),
                   ("bias", "bias_violation", 3), ("replaced", "n_replaced", 1))


def table(result: Result) -> str:
    cfg = result.config
    lines = [f"# {NAME}", "",
             f"{cfg.data.n_features} orthonormal features in d = {cfg.data.d}, copula rank "
             f"{cfg.data.correlation_rank}; ReLU SAEs at widths {list(result.widths)} and "
             f"sparsity_coef {cfg.sparsity_coef:g}; {cfg.n_initial} samples for the initial "
             f"SAE, {cfg.n_continue} for each continuation; {cfg.n_new} latents added; seeds "
             f"{list(cfg.seeds)}; theory on {cfg.n_check} evaluation samples.", "",
             "| correlation | data scale | true L0 | copula max abs | copula mean abs |",
             "|---|---|---|---|---|"]
    for w in result.worlds:
        lines.append(f"| {w.correlation:g} | {w.scale:.3f} | {w.true_l0:.2f} | "
                     f"{w.copula_max:.3f} | {w.copula_mean:.3f} |")
    lines += ["", "## Summary", "", summary_table(result.cells, len(cfg.seeds)), "",
              "## Details", "",
              "Mean [95% t interval]; interference: mass on other tracked features; 1 - c^2: "
              "all a latent is not its own feature; extended's hedging: the extended SAE's "
              "original latents against the control's tracked features; proj portion and "
              "baseline: the degree's parts; move: mean ||delta||; atom violations relative "
              "(tangential over normal force) over atoms with code mass; bias: ||mean "
              "residual|| / lam at the SAE's b_dec; replaced: latents D_pure replaces.", "",
              "| correlation | width | " + " | ".join(c[0] for c in _DETAIL_COLUMNS) + " |",
              "|" + "---|" * (len(_DETAIL_COLUMNS) + 2)]
    for c in result.cells:
        lines.append(f"| {c.correlation:g} | {c.width} | "
                     + " | ".join(_cell(c.interval(m), d) for _, m, d in _DETAIL_COLUMNS)
                     + " |")
    lines += ["", "## Findings", "", *[f"- {s}" for s in result.findings], "",
              "Hedging and its degree: Chanin, Dulka & Garriga-Alonso (arXiv 2505.11756), the "
              "degree as in the authors' code (chanind/feature-hedging-paper).", ""]
    return "\n".join(lines)
