"""Statistics of a ground-truth generator: firing rates, co-firing, and the 3-D toy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np

from toysae._config import Bounds, JsonMixin, validate_fields
from toysae.data import SyntheticConfig, SyntheticData

NAME = "synthetic-data"
DESCRIPTION = ("Generator statistics: firing rate per feature (expected vs measured), "
               "co-firing vs copula correlation, and the 3-D toy's features and samples.")


@dataclass(frozen=True)
class Config(JsonMixin):
    data: SyntheticConfig = field(default_factory=SyntheticConfig)
    toy: SyntheticConfig = field(default_factory=SyntheticConfig.toy_3d)
    n_samples: Annotated[int, Bounds(1)] = 200_000
    n_shown: Annotated[int, Bounds(2)] = 48  # features in the co-firing panel
    n_toy_samples: Annotated[int, Bounds(1)] = 12

    def __post_init__(self):
        validate_fields(self)
        if self.toy.d != 3:
            raise ValueError(f"toy must be a SyntheticConfig with d=3, got {self.toy!r}")

    @classmethod
    def quick(cls) -> Config:
        return cls(n_samples=20_000)


@dataclass(frozen=True)
class Result(JsonMixin):
    config: Config
    expected_rate: np.ndarray  # (n_features,)
    measured_rate: np.ndarray  # (n_features,)
    mean_active: float
    copula_correlation: np.ndarray | None  # (n_shown, n_shown)
    cofiring_correlation: np.ndarray  # (n_shown, n_shown) correlation of firing indicators
    toy_features: np.ndarray  # (6, 3)
    toy_x: np.ndarray  # (n_toy_samples, 3)
    toy_codes: np.ndarray  # (n_toy_samples, 6)


def run(config: Config) -> Result:
    data = SyntheticData(config.data)
    batch = data.sample(config.n_samples)
    active = batch.codes != 0
    k = min(config.n_shown, config.data.n_features)
    shown = active[:, :k].astype(np.float64)
    std = shown.std(axis=0)
    cofire = np.full((k, k), np.nan)
    ok = std > 0
    cofire[np.ix_(ok, ok)] = np.corrcoef(shown[:, ok].T)
    toy = SyntheticData(config.toy)
    toy_batch = toy.sample(config.n_toy_samples)
    C = data.correlation
    return Result(config=config, expected_rate=data.probabilities,
                  measured_rate=active.mean(axis=0), mean_active=float(active.sum(1).mean()),
                  copula_correlation=None if C is None else C[:k, :k],
                  cofiring_correlation=cofire, toy_features=toy.features,
                  toy_x=toy_batch.x, toy_codes=toy_batch.codes)


def save(result: Result, out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from toysae.plotting import log_ticks, save_figure, style

    style()
    out_dir = Path(out_dir)
    cfg = result.config
    fig = plt.figure(figsize=(9.0, 7.8))
    ax = fig.add_subplot(2, 2, 1)
    idx = np.arange(len(result.expected_rate))
    ax.semilogy(idx, result.measured_rate, ".", ms=3, label=f"measured ({cfg.n_samples:,} samples)")
    ax.semilogy(idx, result.expected_rate, "-", lw=1.5, color="C3", label="expected $p_i$")
    ax.set(xlabel="feature index i", ylabel="firing rate (share of samples)",
           title=f"Firing rates (mean active {result.mean_active:.2f})")
    ax.legend(loc="lower left")
    log_ticks(ax.yaxis)
    mats = [(result.copula_correlation, "Copula correlation C"),
            (result.cofiring_correlation, "Co-firing correlation")]
    # the two correlation maps are compared: one colour scale
    shown = [np.array(m, dtype=float) for m, _ in mats if m is not None]
    for m in shown:
        np.fill_diagonal(m, np.nan)
    lim = max([float(np.nanmax(np.abs(m))) for m in shown if np.isfinite(m).any()] + [0.0])
    lim = lim or 1.0
    for j, (mat, title) in enumerate(mats):
        ax = fig.add_subplot(2, 2, 2 + j)
        if mat is None:
            ax.text(0.5, 0.5, "uncorrelated\n(correlation='none')", ha="center", va="center")
            ax.set_axis_off()
            ax.set_title(title)
            continue
        mat = np.array(mat, dtype=float)
        np.fill_diagonal(mat, np.nan)
        im = ax.imshow(mat, cmap="RdBu_r", vmin=-lim, vmax=lim)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="correlation")
        ax.set(xlabel="feature j", ylabel="feature i",
               title=f"{title}, first {mat.shape[0]} features")
    ax = fig.add_subplot(2, 2, 4, projection="3d")
    F = result.toy_features
    fired = (result.toy_codes != 0).any(axis=0)
    for i, f in enumerate(F):
        ax.quiver(0, 0, 0, *f, color="C2" if fired[i] else "C3", lw=2)
    X = result.toy_x
    zeros = np.zeros(len(X))
    ax.quiver(zeros, zeros, zeros, X[:, 0], X[:, 1], X[:, 2], color="C0", lw=1, alpha=0.7)
    ax.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1), xticks=(-1, 0, 1), yticks=(-1, 0, 1),
           zticks=(-1, 0, 1), xlabel="x1", ylabel="x2", zlabel="x3",
           title=f"3-D toy: {len(F)} features (green fired,\nred not), {len(X)} samples (blue)")
    fig.suptitle(f"Synthetic data: d={cfg.data.d}, {cfg.data.n_features} features, "
                 f"correlation={cfg.data.correlation}")
    fig.tight_layout()
    return [save_figure(fig, out_dir / f"{NAME}.png")]


def caption(data: dict) -> str:
    """One line of finding for the figure, from a stored result (``toysae report``)."""
    expected, measured = np.asarray(data["expected_rate"]), np.asarray(data["measured_rate"])
    n = data["config"]["n_samples"]
    z = np.abs(measured - expected) / np.sqrt(expected * (1 - expected) / n)
    text = (f"Measured firing rates of the {len(expected)} features lie within {z.max():.1f} "
            f"binomial standard errors of the expected ones ({n:,} samples; mean active "
            f"{data['mean_active']:.2f} against {expected.sum():.2f} expected)")
    if data["copula_correlation"] is not None:
        copula, cofiring = (np.asarray(data[k]) for k in ("copula_correlation",
                                                            "cofiring_correlation"))
        off = ~np.eye(len(copula), dtype=bool)
        r = np.corrcoef(copula[off], cofiring[off])[0, 1]
        text += (f"; co-firing follows the copula's correlation (Pearson r {r:.2f} over the "
                 f"pairs of the first {len(copula)} features)")
    return text + "."
