"""Seed 002 (probabilistic disentanglement, part 1): SAE grids over L1 penalty x dictionary size.

(a) The 3-D toy (6 true features in 3-D): 12 ReLU+L1 SAEs, 4 penalties x 3
dictionary sizes, trained as one batched model; the four heat-maps of the
seed (reconstruction loss, MMCS with the true features, mean MMCS with the
larger dictionaries of the same penalty, dead latents), PCA's MMCS as the
baseline (the seed quotes 0.42 for PCA), and a GIF of the atoms moving toward
the true features during training.
(a') Why PCA scores 0.67 here and 0.42 in the seed: a principal direction has no
sign, and the seed's replication code scores PCA with *signed* cosines, so its
number depends on the arbitrary signs the eigen-solver returns. toysae points
each direction along the data (``_pca_dictionary``, what nonnegative codes could
use). The result also holds the sign-free score (absolute cosines) and the
spread of the signed score over all ``2^k`` sign choices of the ``k``
eigenvectors and over ``pca_seeds`` generator seeds, to show where 0.42 falls.
(b) The reference toy (256-d, 512 features, 5 active on average) over an
L1 x width-ratio grid, with the same four heat-maps.

Scores are measured on held-out samples. Penalties follow the package's loss
(``mean 1/2 ||x - x_hat||^2 + sparsity_coef * mean ||f||_1``, not divided by the width as
in the seed's code), so the seed's numeric penalties do not carry over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from toysae import metrics
from toysae._config import POSITIVE, Bounds, JsonMixin, Seed, validate_fields
from toysae._io import atomic_path
from toysae._validation import shifted_seed
from toysae.data import SyntheticConfig, SyntheticData
from toysae.sae.config import TrainConfig
from toysae.sae.grid import GridResult, train_grid
from toysae.stats import check_seeds, compare, mean_interval, not_resolved

NAME = "seed002-grid"
DESCRIPTION = ("SAE grids over L1 x dictionary size on the 3-D toy (12 SAEs, one batched "
               "model, four heat-maps, PCA baseline, training GIF) and on the reference toy.")


def _toy_train() -> TrainConfig:
    return TrainConfig(n_samples=768_000, batch_size=256, lr=7e-3, log_every=100)


def _reference_train() -> TrainConfig:
    return TrainConfig(n_samples=500_000, batch_size=256, lr=7e-3, log_every=200)


@dataclass(frozen=True)
class Config(JsonMixin):
    """Defaults: the full experiment. ``Config.quick()`` is the small version."""

    toy: SyntheticConfig = field(default_factory=SyntheticConfig.toy_3d)
    toy_sparsity_coefs: Annotated[tuple[float, ...], Bounds(0.0)] = (0.01, 0.03, 0.1, 0.3)
    toy_widths: Annotated[tuple[int, ...], Bounds(1)] = (6, 12, 24)
    toy_train: TrainConfig = field(default_factory=_toy_train)
    reference: SyntheticConfig = field(default_factory=SyntheticConfig)
    reference_sparsity_coefs: Annotated[tuple[float, ...], Bounds(0.0)] = (0.01, 0.04, 0.16)
    reference_width_ratios: Annotated[tuple[float, ...], POSITIVE] = (0.5, 1.0, 2.0, 4.0)
    reference_train: TrainConfig = field(default_factory=_reference_train)
    n_eval: Annotated[int, Bounds(2)] = 10_000
    gif_frames: Annotated[int, Bounds(1)] = 30
    # generator seeds of the 3-D toy for the PCA sign spread
    pca_seeds: Annotated[int, Bounds(1)] = 10
    # more training seeds (initialisation and data order) of both grids, for the L1
    # trends' intervals; the figures draw the grids of ``seed``
    extra_seeds: tuple[int, ...] = (1, 2)
    seed: Seed = 0

    def __post_init__(self):
        validate_fields(self)
        check_seeds((self.seed, *self.extra_seeds), "seed and extra_seeds")
        if self.toy.d != 3:
            raise ValueError(f"toy must be 3-dimensional (the GIF draws 3-D arrows), "
                             f"got d={self.toy.d}")
        if list(self.toy_widths) != sorted(set(self.toy_widths)):
            raise ValueError(f"toy_widths must be strictly increasing, got {self.toy_widths}")
        widths = self.reference_widths
        if min(widths) < 1 or list(widths) != sorted(set(widths)):
            raise ValueError(f"reference_width_ratios must give strictly increasing widths "
                             f">= 1, got {widths} from {self.reference_width_ratios}")

    @property
    def reference_widths(self) -> tuple[int, ...]:
        return tuple(int(round(r * self.reference.n_features))
                     for r in self.reference_width_ratios)

    @classmethod
    def quick(cls) -> Config:
        return cls(toy_train=TrainConfig(n_samples=256 * 300, batch_size=256, lr=1e-2,
                                         log_every=50, resample_every=50),
                   reference_sparsity_coefs=(0.02, 0.08),
                   reference_width_ratios=(0.5, 1.0),
                   reference_train=TrainConfig(n_samples=256 * 40, batch_size=256, lr=1e-2,
                                               log_every=10, resample_every=0),
                   n_eval=2048, gif_frames=6, extra_seeds=(2,))


@dataclass(frozen=True)
class GridScores(JsonMixin):
    """Scores of one grid; every array is (n_l1, n_widths), measured on held-out samples.

    reconstruction : mean over samples of ``||x - x_hat||^2``.
    mmcs : MMCS from the true features to the dictionary.
    mmcs_larger : mean MMCS of the dictionary with the larger ones of the same
        penalty (None in the largest column, which has none).
    dead : latents that never fire on the held-out samples.
    l0 : mean active latents; fvu : fraction of variance unexplained.
    pca_mmcs : MMCS from the true features to the PCA dictionary (top
        ``min(d, n_features)`` principal directions, signs pointed along the data).
    pca_mmcs_abs : the same with absolute cosines (independent of the signs).
    """

    sparsity_coefs: tuple
    widths: tuple
    reconstruction: np.ndarray
    mmcs: np.ndarray
    mmcs_larger: tuple
    dead: np.ndarray
    l0: np.ndarray
    fvu: np.ndarray
    pca_mmcs: float
    pca_atoms: int
    layout: str
    wall_time: float
    pca_mmcs_abs: float


# The seed write-up's PCA baseline on its 3-D toy.
SEED_PCA_MMCS = 0.42


@dataclass(frozen=True)
class PCASignSpread(JsonMixin):
    """PCA's MMCS on the 3-D toy under every sign convention, over generator seeds.

    For each generator seed (``config.toy`` with ``seed`` replaced), PCA of
    ``n_eval`` samples gives ``k = min(d, n_features)`` directions. ``aligned``:
    MMCS with signs pointed along the data (toysae's baseline); ``absolute``: with
    |cosines| (sign-free, an upper bound of every signed score); ``signed_*``:
    min / median / max of the signed MMCS over the ``2^k`` sign choices; the
    ``pooled_*`` statistics pool all seeds x sign choices. ``quote_quantile`` is
    the share of pooled signed scores <= the seed's 0.42; ``quote_within``:
    pooled_min <= 0.42 <= pooled_max.
    """

    seeds: tuple
    n_atoms: int
    aligned: tuple
    absolute: tuple
    signed_min: tuple
    signed_median: tuple
    signed_max: tuple
    pooled_min: float
    pooled_median: float
    pooled_max: float
    seed_quote: float
    quote_within: bool
    quote_quantile: float


@dataclass(frozen=True)
class Result(JsonMixin):
    config: Config
    toy: GridScores
    reference: GridScores
    toy_features: np.ndarray  # (n_features, 3)
    toy_frame_steps: tuple  # training step of each GIF frame
    toy_frames: tuple  # per SAE (row-major), (n_frames, width, 3) unit atoms
    pca_signs: PCASignSpread
    # per grid ("toy", "reference"), per training seed (``seed`` first, then
    # ``extra_seeds``): its reconstruction, dead and mmcs arrays (:func:`_per_seed`)
    seeds: dict = field(default_factory=dict)


def _pca_directions(X: np.ndarray, n_atoms: int) -> np.ndarray:
    """Top ``n_atoms`` principal directions of X as unit rows, signs as eigh returns them.

    numpy's eigh of the (d, d) covariance: the same directions as scikit-learn's PCA,
    without importing it (seconds of the quick run) for one baseline number.
    """
    X = np.asarray(X, dtype=np.float64)
    centered = X - X.mean(axis=0)
    _, vectors = np.linalg.eigh(centered.T @ centered)
    return vectors[:, ::-1][:, :n_atoms].T


def _pca_dictionary(X: np.ndarray, n_atoms: int) -> np.ndarray:
    """:func:`_pca_directions`, each signed so the data project positively on it on
    average (what nonnegative codes could use)."""
    D = _pca_directions(X, n_atoms)
    signs = np.where((np.asarray(X, dtype=np.float64) @ D.T).sum(axis=0) < 0, -1.0, 1.0)
    return D * signs[:, None]


def signed_mmcs_all_signs(F: np.ndarray, D: np.ndarray) -> np.ndarray:
    """Signed MMCS(F -> s * D) for every sign vector ``s`` in {-1, +1}^k (k = rows of D),
    as a (2^k,) array; row ``b`` of the sign table is the binary expansion of ``b``."""
    k = len(D)
    if k > 16:
        raise ValueError(f"D must have at most 16 rows for 2^k sign choices, got {k}")
    C = metrics.cosine_matrix(F, D)  # (n_features, k)
    signs = 1.0 - 2.0 * ((np.arange(2 ** k)[:, None] >> np.arange(k)) & 1)  # (2^k, k)
    return (C[None, :, :] * signs[:, None, :]).max(axis=2).mean(axis=1)


def _pca_sign_spread(config: Config) -> PCASignSpread:
    seeds = tuple(shifted_seed(config.toy.seed, k) for k in range(config.pca_seeds))
    n_atoms = min(config.toy.d, config.toy.n_features)
    aligned, absolute, lo, med, hi, pooled = [], [], [], [], [], []
    for g in seeds:
        data = SyntheticData(SyntheticConfig.from_dict({**config.toy.to_dict(), "seed": g}))
        X, F = data.sample(config.n_eval, seed=config.seed).x, data.features
        D = _pca_directions(X, n_atoms)
        aligned.append(metrics.mmcs(F, _pca_dictionary(X, n_atoms)))
        absolute.append(metrics.mmcs(F, D, absolute=True))
        signed = signed_mmcs_all_signs(F, D)
        lo.append(float(signed.min()))
        med.append(float(np.median(signed)))
        hi.append(float(signed.max()))
        pooled.append(signed)
    pooled = np.concatenate(pooled)
    q = SEED_PCA_MMCS
    return PCASignSpread(seeds, n_atoms, tuple(aligned), tuple(absolute), tuple(lo), tuple(med),
                         tuple(hi), float(pooled.min()), float(np.median(pooled)),
                         float(pooled.max()), q, bool(pooled.min() <= q <= pooled.max()),
                         float((pooled <= q).mean()))


def _score(grid: GridResult, data: SyntheticData, n_eval: int, seed: int) -> GridScores:
    batch = data.sample(n_eval, seed=seed)
    X, F = batch.x, data.features
    shape = grid.shape
    recon, mm, dead, l0, fvu = (np.zeros(shape) for _ in range(5))
    for k, m in enumerate(grid.members):
        with torch.no_grad():
            out = m.sae(X)
        x_hat, codes = out.x_hat.numpy(), out.codes.numpy()
        recon[grid.index(k)] = float(((X - x_hat) ** 2).sum(axis=1).mean())
        mm[grid.index(k)] = metrics.mmcs(F, m.sae.dictionary)
        dead[grid.index(k)] = int(metrics.dead_latents(codes).sum())
        l0[grid.index(k)] = metrics.l0(codes)
        fvu[grid.index(k)] = metrics.fvu(X, x_hat)
    larger = tuple(tuple(metrics.mmcs_with_larger(row)) for row in grid.dictionaries())
    n_pca = min(data.config.d, data.config.n_features)
    pca = metrics.mmcs(F, _pca_dictionary(X, n_pca))
    pca_abs = metrics.mmcs(F, _pca_directions(X, n_pca), absolute=True)
    return GridScores(grid.sparsity_coefs, grid.widths, recon, mm, larger, dead, l0, fvu, pca,
                      n_pca, grid.layout, grid.wall_time, pca_abs)


def run(config: Config) -> Result:
    toy = SyntheticData(config.toy)
    grid = train_grid(toy, config.toy_sparsity_coefs, config.toy_widths, config.toy_train,
                      progress=False, seed=config.seed, record_dictionaries=True)
    steps = grid.members[0].history["step"]
    keep = np.unique(np.linspace(0, len(steps) - 1, min(config.gif_frames, len(steps)))
                     .round().astype(int))
    frames = tuple(np.stack([m.dictionary_history[k] for k in keep]) for m in grid.members)
    toy_scores = _score(grid, toy, config.n_eval, config.seed)
    ref = SyntheticData(config.reference)
    ref_grid = train_grid(ref, config.reference_sparsity_coefs, config.reference_widths,
                          config.reference_train, progress=False, seed=config.seed)
    ref_scores = _score(ref_grid, ref, config.n_eval, config.seed)
    seeds = {"toy": [_per_seed(config.seed, toy_scores)],
             "reference": [_per_seed(config.seed, ref_scores)]}
    for s in config.extra_seeds:
        for name, data, coefs, widths, train in (
                ("toy", toy, config.toy_sparsity_coefs, config.toy_widths, config.toy_train),
                ("reference", ref, config.reference_sparsity_coefs, config.reference_widths,
                 config.reference_train)):
            again = train_grid(data, coefs, widths, train.replace(seed=s), progress=False,
                               seed=s)
            seeds[name].append(_per_seed(s, _score(again, data, config.n_eval, config.seed)))
    return Result(config, toy_scores, ref_scores, toy.features,
                  tuple(int(steps[k]) for k in keep), frames, _pca_sign_spread(config), seeds)


def _per_seed(seed: int, scores: GridScores) -> dict:
    """What the L1 trends read of one training seed's grid (arrays (n_l1, n_widths))."""
    return {"seed": seed, "reconstruction": scores.reconstruction, "dead": scores.dead,
            "mmcs": scores.mmcs}


# -- figures ----------------------------------------------------------------------
def _pca_caption(scores: GridScores, spread: PCASignSpread) -> str:
    where = "inside" if spread.quote_within else "outside"
    return "\n".join([
        f"PCA baseline ({scores.pca_atoms} directions): MMCS {scores.pca_mmcs:.2f} with signs "
        f"pointed along the data, {scores.pca_mmcs_abs:.2f} with |cosines| (sign-free).",
        f"Signed cosines (how the seed's code scores PCA) depend on the eigenvectors' arbitrary "
        f"signs: over all {2 ** spread.n_atoms} sign choices x {len(spread.seeds)} generator "
        f"seeds the signed MMCS",
        f"spans {spread.pooled_min:.2f} (min) / {spread.pooled_median:.2f} (median) / "
        f"{spread.pooled_max:.2f} (max); the seed's {spread.seed_quote:.2f} is {where} that "
        f"range, with {spread.quote_quantile:.0%} of the signed scores at or below it."])


def _heatmaps(scores: GridScores, title: str, col_title: str, col_labels, caption=None):
    import matplotlib.pyplot as plt

    from toysae.plotting import heatmap, wrap

    fig, axes = plt.subplots(2, 2, figsize=(9.0, 7.6))
    rows = [f"{v:g}" for v in scores.sparsity_coefs]
    common = {"row_labels": rows, "col_labels": col_labels, "row_title": "L1 penalty (l1)",
              "col_title": col_title}
    panels = [
        (scores.reconstruction, "Reconstruction loss\n(held out)", "{:.3g}", "mean ||x - x̂||²"),
        (scores.mmcs, f"MMCS with the true features\n(PCA: {scores.pca_mmcs:.2f}, data-aligned)",
         "{:.3f}",
         "mean max cosine"),
        (np.array(scores.mmcs_larger, dtype=float),
         "Mean MMCS with larger dictionaries\n(same penalty; the largest has none)",
         "{:.3f}", "mean max cosine"),
        (scores.dead, "Dead latents\n(never fire, held out)", "{:.0f}", "latents"),
    ]
    # the two MMCS panels compare one quantity: one colour scale
    both = np.concatenate([np.ravel(scores.mmcs), np.ravel(panels[2][0])]).astype(float)
    both = both[np.isfinite(both)]
    shared = (float(both.min()), float(both.max())) if both.size else (None, None)
    for k, (ax, (values, panel_title, fmt, label)) in enumerate(zip(axes.flat, panels,
                                                                     strict=True)):
        vmin, vmax = shared if k in (1, 2) else (None, None)
        heatmap(ax, values, title=panel_title, fmt=fmt, colorbar_label=label, vmin=vmin,
                vmax=vmax, **common)
    fig.suptitle(title)
    if caption:
        caption = wrap(" ".join(caption.split("\n")), 110)
        lines = caption.count("\n") + 1
        fig.tight_layout(rect=(0, 0.03 + 0.024 * lines, 1, 1))
        fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=9)
    else:
        fig.tight_layout()
    return fig


def _gif(result: Result, path: Path) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter
    from mpl_toolkits.mplot3d.art3d import Line3DCollection

    scores, F = result.toy, np.asarray(result.toy_features)
    n_rows, n_cols = len(scores.sparsity_coefs), len(scores.widths)
    fig = plt.figure(figsize=(2.4 * n_cols, 2.4 * n_rows + 0.4))
    atom_lines = []

    def segments(D):
        return [np.array([[0.0, 0.0, 0.0], a]) for a in np.asarray(D)]

    for k, frames in enumerate(result.toy_frames):
        i, j = divmod(k, n_cols)
        ax = fig.add_subplot(n_rows, n_cols, k + 1, projection="3d")
        # Axis panes and ticks dominate the render time of 3-D frames; draw the
        # coordinate axes as labelled lines instead.
        ax.set_axis_off()
        for e, name in zip(np.eye(3), ("x1", "x2", "x3"), strict=True):
            ax.plot(*np.stack([-e, e]).T, color="0.75", lw=0.6)
            ax.text(*(1.08 * e), name, fontsize=6, color="0.4")
        ax.add_collection3d(Line3DCollection(segments(F), colors="tab:green", linewidths=2.2))
        lines = Line3DCollection(segments(frames[0]), colors="tab:orange", linewidths=1.2)
        ax.add_collection3d(lines)
        atom_lines.append(lines)
        ax.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1))
        ax.set_box_aspect(None, zoom=1.45)
        ax.set_title(f"L1 coef {scores.sparsity_coefs[i]:g}, {scores.widths[j]} atoms", fontsize=9,
                     y=0.92)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.94, wspace=0, hspace=0.02)
    title = fig.suptitle("", fontsize=10)

    def draw(t):
        for lines, frames in zip(atom_lines, result.toy_frames, strict=True):
            lines.set_segments(segments(frames[t]))
        title.set_text(f"3-D toy: learned atoms (orange) vs the {len(F)} true features "
                       f"(green)\ntraining step {result.toy_frame_steps[t]}")
        return atom_lines

    anim = FuncAnimation(fig, draw, frames=len(result.toy_frame_steps), blit=False)
    with atomic_path(path) as tmp:
        anim.save(tmp, writer=PillowWriter(fps=3), dpi=64)
    plt.close(fig)
    return path


def save(result: Result, out_dir: Path) -> list[Path]:
    from toysae.plotting import save_figure, style

    style()
    out_dir = Path(out_dir)
    toy, ref, cfg = result.toy, result.reference, result.config
    paths = [
        save_figure(_heatmaps(toy, f"3-D toy: {len(toy.sparsity_coefs) * len(toy.widths)} SAEs, "
                                   f"{cfg.toy.n_features} true features in 3-D "
                                   f"({cfg.toy_train.n_samples:,} samples each)",
                              "dictionary size (atoms)", list(toy.widths),
                              caption=_pca_caption(toy, result.pca_signs)),
                    out_dir / f"{NAME}-toy3d.png"),
        save_figure(_heatmaps(ref, f"Reference toy: d={cfg.reference.d}, "
                                   f"{cfg.reference.n_features} features, "
                                   f"{cfg.reference.mean_active:g} active "
                                   f"({cfg.reference_train.n_samples:,} samples each)",
                              "width / n_features (atoms)",
                              [f"{r:g} ({w})" for r, w in zip(cfg.reference_width_ratios,
                                                               ref.widths, strict=True)]),
                    out_dir / f"{NAME}-reference.png"),
        _gif(result, out_dir / f"{NAME}-toy3d-atoms.gif"),
    ]
    return paths


def _over_seeds(runs: list, key: str) -> list:
    """Per (L1, width) cell the :func:`toysae.stats.mean_interval` of ``key`` over the
    training seeds' grids ``runs`` (each :func:`_per_seed`'s dict)."""
    values = np.asarray([r[key] for r in runs], dtype=np.float64)  # (seeds, n_l1, n_widths)
    return [[mean_interval(values[:, i, j]) for j in range(values.shape[2])]
            for i in range(values.shape[1])]


def trend_table(scores: dict, runs: list) -> str:
    """One grid's reconstruction loss and dead latents over its training seeds ``runs``:
    a row per L1 coefficient, a column per dictionary size, each cell the mean [95% t
    interval]."""
    widths, n = scores["widths"], len(runs)
    loss, dead = _over_seeds(runs, "reconstruction"), _over_seeds(runs, "dead")
    lines = [f"| L1 \\ atoms ({n} seeds) | " + " | ".join(str(w) for w in widths) + " |",
             "|---|" + "---|" * len(widths)]
    for i, coef in enumerate(scores["sparsity_coefs"]):
        cells = [f"loss {loss[i][j].format(4)}; dead {dead[i][j].format(1)}"
                 for j in range(len(widths))]
        lines.append(f"| {coef:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def trend_findings(name: str, scores: dict, runs: list) -> list[str]:
    """Per dictionary size: does the held-out reconstruction loss rise from each L1 to the
    next, and do the dead latents dip at an inner L1 below both of its neighbours (a "sweet
    spot"), each called only where the seeds' intervals separate."""
    loss, dead = _over_seeds(runs, "reconstruction"), _over_seeds(runs, "dead")
    coefs, out = scores["sparsity_coefs"], []
    for j, width in enumerate(scores["widths"]):
        steps = [compare(loss[i + 1][j], loss[i][j]) for i in range(len(coefs) - 1)]
        rises = ("rises at every step" if all(v > 0 for v in steps) else
                 "falls at every step" if all(v < 0 for v in steps) else
                 f"{sum(v > 0 for v in steps)} of {len(steps)} steps rise, "
                 f"{sum(v < 0 for v in steps)} fall, the rest {not_resolved(len(runs))}")
        dips = [coefs[i] for i in range(1, len(coefs) - 1)
                if compare(dead[i][j], dead[i - 1][j]) < 0
                and compare(dead[i][j], dead[i + 1][j]) < 0]
        out.append(f"{name}, {width} atoms ({len(runs)} seeds, 95% t intervals): as L1 grows "
                   f"({', '.join(f'{c:g}' for c in coefs)}) the reconstruction loss {rises} "
                   f"({loss[0][j].format(4)} -> {loss[-1][j].format(4)}); dead latents "
                   + (f"dip at L1 {', '.join(f'{c:g}' for c in dips)} below both neighbours"
                      if dips else "show no sweet spot (no inner L1 below both neighbours, "
                      "intervals separating)")
                   + f" ({' -> '.join(dead[i][j].format(1) for i in range(len(coefs)))}).")
    return out


def grid_table(scores: dict, column: str) -> str:
    """One grid of a stored result (``NAME.json``'s ``toy`` or ``reference``, parsed) as a
    markdown table: a row per L1 coefficient, a column per dictionary size, each cell the
    held-out reconstruction loss, dead latents and MMCS with the true features."""
    widths = scores["widths"]
    lines = [f"| L1 \\ {column} | " + " | ".join(str(w) for w in widths) + " |",
             "|---|" + "---|" * len(widths)]
    for i, coef in enumerate(scores["sparsity_coefs"]):
        cells = [f"loss {scores['reconstruction'][i][j]:.3g}, dead {scores['dead'][i][j]:g}, "
                 f"MMCS {scores['mmcs'][i][j]:.3f}" for j in range(len(widths))]
        lines.append(f"| {coef:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_tables(data: dict) -> dict[str, str]:
    """The tables ``toysae report`` renders from a stored result (``NAME.json``, parsed):
    ``toy`` and ``reference`` (the 3-D and the reference toy's grid of ``seed``,
    :func:`grid_table`), ``toy_seeds`` and ``reference_seeds`` (each grid over every
    training seed, :func:`trend_table`, and its :func:`trend_findings`)."""
    tables = {"toy": grid_table(data["toy"], "atoms"),
              "reference": grid_table(data["reference"], "atoms")}
    for name, label in (("toy", "3-D toy"), ("reference", "reference toy")):
        runs = data["seeds"][name]
        tables[f"{name}_seeds"] = (trend_table(data[name], runs) + "\n\n"
                                   + "\n".join(f"- {f}" for f in
                                                trend_findings(label, data[name], runs)))
    return tables


def caption(data: dict) -> str:
    """One line for the figure: the reference toy's L1 trends over the training seeds."""
    return " ".join(trend_findings("Reference toy", data["reference"],
                                   data["seeds"]["reference"]))
