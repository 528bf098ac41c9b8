"""The wide limit: objective gap to the certified lower bound as the dictionary grows.

No dictionary of any size beats ``sum_n h(||x_n||)`` (docs/theory.md), and
the dictionary of data directions attains it, one atom per data ray. Two
features that fire together fill a 2-D cone of rays; dictionaries learned with
more and more atoms split the two features into atoms fanning out over the
cone, and their gap to the bound shrinks toward zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from toysae._config import POSITIVE, Bounds, JsonMixin, Seed, validate_fields
from toysae._threads import torch_threads
from toysae.data import SyntheticConfig, SyntheticData
from toysae.dictlearn import sparse_code
from toysae.dictlearn.learner import DictionaryLearner
from toysae.theory import wide_limit, wide_limit_gap

NAME = "wide-limit"
DESCRIPTION = ("Gap of learned dictionaries to the wide-limit lower bound as the number of "
               "atoms grows; atoms split toward one per data ray.")


# The codes of every learned dictionary are solved to this KKT gap (scaled by lam). Many
# atoms in 2-D are nearly parallel: the problem is badly conditioned and FISTA needs many
# iterations (measured on this data: 3,185 at 8 atoms and 16,845 at 16 in the quick run,
# 66,890 at 32 in the full one; the 3,000 allowed before left 1 and 86 samples, and up to
# 334, unconverged), so the cap is far above sparse_code's default 2,000. Samples that
# still miss the tolerance are counted in the result and named on the figure.
SOLVE_TOL = 1e-6
SOLVE_MAX_ITER = 200_000


def _default_data() -> SyntheticConfig:
    return SyntheticConfig(d=2, n_features=2, mean_active=1.5, decay=1.0, correlation="none",
                           magnitude="uniform", orthogonal=True, seed=0)


@dataclass(frozen=True)
class Config(JsonMixin):
    data: SyntheticConfig = field(default_factory=_default_data)
    n_samples: Annotated[int, Bounds(2)] = 600
    sizes: Annotated[tuple[int, ...], Bounds(1)] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
    lam: Annotated[float, POSITIVE] = 0.05
    epochs: Annotated[int, Bounds(1)] = 4
    seed: Seed = 0

    def __post_init__(self):
        validate_fields(self)
        if list(self.sizes) != sorted(set(self.sizes)):
            raise ValueError(f"sizes must be increasing and distinct, got {self.sizes}")

    @classmethod
    def quick(cls) -> Config:
        return cls(n_samples=300, sizes=(1, 2, 4, 8, 16), epochs=2)


@dataclass(frozen=True)
class Result(JsonMixin):
    config: Config
    bound: float
    n_rays: int  # samples with ||x|| > lam: atoms the bound needs
    objective: tuple  # per size
    gap: tuple  # per size, objective - bound (>= 0)
    relative_gap: tuple
    solver_success: tuple  # if False the codes are not optimal: the gap is an upper bound
    unconverged: tuple  # per size, samples whose codes missed the solver's tolerance
    data_ray_gap: float  # gap of the dictionary of data directions (0 up to rounding)
    reference_angle: float  # angle of the mean data ray; atom angles are relative to it
    atom_angles: tuple  # per size, sorted angles (radians) of used atoms from the mean ray
    x: np.ndarray = field(default=None, compare=False)

    def to_dict(self) -> dict:
        out = super().to_dict()
        out.pop("x")
        return out


def _relative_angle(V: np.ndarray, ref: float) -> np.ndarray:
    """Angle of each row of V from the direction ``ref``, in (-pi, pi]."""
    return np.angle(np.exp(1j * (np.arctan2(V[:, 1], V[:, 0]) - ref)))


def _unconverged(X: np.ndarray, D: np.ndarray, Z: np.ndarray, lam: float, tol: float) -> int:
    """Samples whose codes miss the code KKT conditions by more than ``tol`` (scaled by
    lam, as ``sparse_code`` measures them): where the gap is only an upper bound."""
    g = (X - Z @ D) @ D.T
    viol = np.where(Z != 0, np.abs(g - lam), np.maximum(g - lam, 0.0))
    return int((viol.max(axis=1, initial=0.0) / lam > tol).sum())


def run(config: Config) -> Result:
    with torch_threads(1):
        return _run(config)


def _run(config: Config) -> Result:
    lam = config.lam
    X = SyntheticData(config.data).sample(config.n_samples, seed=config.seed).x
    X = X.astype(np.float64)
    limit = wide_limit(X, lam)
    mean_ray = (X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-300)).sum(axis=0)
    ref = float(np.arctan2(mean_ray[1], mean_ray[0]))
    objective, gaps, rel, conv, late, angles = [], [], [], [], [], []
    for k in config.sizes:
        learner = DictionaryLearner(k, lam, max_epochs=config.epochs, seed=config.seed,
                                    batch_size=min(256, config.n_samples), progress=False)
        D = learner.fit(X).dictionary.astype(np.float64)
        D /= np.linalg.norm(D, axis=1, keepdims=True)
        sol = sparse_code(X, D, lam, dtype=torch.float64, tol=SOLVE_TOL, max_iter=SOLVE_MAX_ITER)
        g = wide_limit_gap(X, D, sol.codes, lam)
        objective.append(g.objective)
        gaps.append(g.gap)
        rel.append(g.relative_gap)
        conv.append(bool(sol.success))
        late.append(_unconverged(X, D, sol.codes, lam, SOLVE_TOL))
        used = (sol.codes != 0).any(axis=0)
        angles.append(tuple(sorted(float(a) for a in _relative_angle(D[used], ref))))
    on = limit.active
    rays = X[on] / np.linalg.norm(X[on], axis=1, keepdims=True)
    Z = np.zeros((len(X), len(rays)))
    Z[np.flatnonzero(on), np.arange(len(rays))] = limit.code[on]
    data_ray_gap = wide_limit_gap(X, rays, Z, lam).gap
    return Result(config=config, bound=limit.bound, n_rays=int(on.sum()),
                  objective=tuple(objective), gap=tuple(gaps), relative_gap=tuple(rel),
                  solver_success=tuple(conv), unconverged=tuple(late),
                  data_ray_gap=float(data_ray_gap),
                  reference_angle=ref, atom_angles=tuple(angles), x=X)


def save(result: Result, out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from toysae.plotting import log_ticks, save_figure, style, wrap

    style()
    out_dir = Path(out_dir)
    sizes = np.array(result.config.sizes)
    gap = np.array(result.gap, dtype=float)
    done = np.array(result.solver_success, dtype=bool)
    fig, axes = plt.subplots(1, 3, figsize=(9.0, 4.1), width_ratios=(1, 1.2, 1))
    ax = axes[0]
    shown = gap > 0  # a log axis cannot show a gap <= 0: those are written below the points
    ax.plot(sizes[shown], gap[shown], "-", color="tab:purple", zorder=1)
    ax.plot(sizes[shown & done], gap[shown & done], "o", color="tab:purple")
    if (shown & ~done).any():
        ax.plot(sizes[shown & ~done], gap[shown & ~done], "o", mfc="white", color="tab:red")
    for k, g in zip(sizes[~shown], gap[~shown], strict=True):
        ax.annotate(f"{k} atoms:\ngap {g:.1e}", (k, 0.06), xycoords=("data", "axes fraction"),
                    ha="center", fontsize=9)
    ax.set_xscale("log")
    if shown.any():
        ax.set_yscale("log")
    log_ticks(ax.xaxis)
    ax.set_xlabel(f"number of atoms\n(one per data ray, {result.n_rays}: gap "
                  f"{result.data_ray_gap:.0e})")
    ax.set_ylabel("objective - bound")
    ax.set_title(f"gap to the bound ({result.bound:.2f})")
    ax = axes[1]
    X = result.x
    ax.scatter(X[:, 0], X[:, 1], s=4, color="tab:gray", alpha=0.4)
    drawn = sorted({int(sizes[0]), int(sizes[len(sizes) // 2]), int(sizes[-1])})
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(drawn)))
    r = np.linalg.norm(X, axis=1).max()
    handles = [Line2D([], [], ls="none", marker="o", color="tab:purple",
                      label="learned dictionary (left)")]
    if (shown & ~done).any():
        handles.append(Line2D([], [], ls="none", marker="o", mfc="white", color="tab:red",
                              label="codes not converged: gap an upper bound"))
    handles.append(Line2D([], [], ls="none", marker="o", ms=3, color="tab:gray", alpha=0.6,
                          label="data"))
    for color, k in zip(colors, drawn, strict=True):
        for a in np.add(result.atom_angles[list(sizes).index(k)], result.reference_angle):
            ax.plot([0, r * np.cos(a)], [0, r * np.sin(a)], color=color, lw=1.2)
        handles.append(Line2D([], [], color=color, lw=1.2, label=f"{k} atoms (used)"))
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x[0]")
    ax.set_ylabel("x[1]")
    ax.set_title("atoms fan out over the rays")
    ax = axes[2]
    data_angles = _relative_angle(X[np.linalg.norm(X, axis=1) > 0], result.reference_angle)
    ax.hist(data_angles, bins=30, color="tab:gray", alpha=0.6, density=True)
    for a in result.atom_angles[-1]:
        ax.axvline(a, color="tab:purple", lw=1)
    handles.append(Line2D([], [], color="tab:purple", lw=1,
                          label=f"{sizes[-1]} atoms' angles (right)"))
    ax.set_xlabel("angle from the mean ray (rad)")
    ax.set_ylabel("density of data rays")
    ax.set_title(f"{sizes[-1]} atoms vs the data rays")
    fig.legend(handles=handles, loc="lower center", ncol=3, bbox_to_anchor=(0.5, 0.0))
    late = [f"{k} ({n} of {len(X)} samples)" for k, n, ok in
            zip(sizes, result.unconverged, done, strict=True) if not ok]
    title = "Wide limit: splitting toward one atom per data ray"
    if late:
        title += (f"; codes not converged at {', '.join(late)} atoms: their gap is an upper "
                  "bound")
    fig.suptitle(wrap(title, 100))
    fig.tight_layout(rect=(0, 0.06 * -(-len(handles) // 3) + 0.02, 1, 1))
    return [save_figure(fig, out_dir / f"{NAME}.png")]


def caption(data: dict) -> str:
    """One line of finding for the figure, from a stored result (``toysae report``)."""
    sizes, gaps = data["config"]["sizes"], data["relative_gap"]
    unconverged = [s for s, n in zip(sizes, data["unconverged"], strict=True) if n]
    solved = ("every size's codes solved to the tolerance" if not unconverged else
              f"codes not solved to the tolerance at {unconverged} atoms (their gaps are upper "
              "bounds)")
    return (f"The objective's gap to the wide-limit lower bound ({data['n_rays']} data rays) "
            f"falls from {gaps[0]:.1%} at {sizes[0]} atom(s) to {gaps[-1]:.2%} at "
            f"{sizes[-1]}; {solved}.")
