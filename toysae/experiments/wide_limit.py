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
    objective, gaps, rel, conv, angles = [], [], [], [], []
    for k in config.sizes:
        learner = DictionaryLearner(k, lam, max_epochs=config.epochs, seed=config.seed,
                                    batch_size=min(256, config.n_samples), progress=False)
        D = learner.fit(X).dictionary.astype(np.float64)
        D /= np.linalg.norm(D, axis=1, keepdims=True)
        sol = sparse_code(X, D, lam, dtype=torch.float64, tol=1e-6, max_iter=3000)
        g = wide_limit_gap(X, D, sol.codes, lam)
        objective.append(g.objective)
        gaps.append(g.gap)
        rel.append(g.relative_gap)
        conv.append(bool(sol.success))
        used = (sol.codes != 0).any(axis=0)
        angles.append(tuple(sorted(float(a) for a in _relative_angle(D[used], ref))))
    on = limit.active
    rays = X[on] / np.linalg.norm(X[on], axis=1, keepdims=True)
    Z = np.zeros((len(X), len(rays)))
    Z[np.flatnonzero(on), np.arange(len(rays))] = limit.code[on]
    data_ray_gap = wide_limit_gap(X, rays, Z, lam).gap
    return Result(config=config, bound=limit.bound, n_rays=int(on.sum()),
                  objective=tuple(objective), gap=tuple(gaps), relative_gap=tuple(rel),
                  solver_success=tuple(conv), data_ray_gap=float(data_ray_gap),
                  reference_angle=ref, atom_angles=tuple(angles), x=X)


def save(result: Result, out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from toysae.plotting import save_figure, style

    style()
    out_dir = Path(out_dir)
    sizes = list(result.config.sizes)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    ax = axes[0]
    ax.plot(sizes, result.gap, "o-", color="tab:purple", label="learned dictionary")
    ax.plot([], [], "s", color="tab:green",
            label=f"one atom per data ray ({result.n_rays} atoms): gap "
                  f"{result.data_ray_gap:.1e}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of atoms")
    ax.set_ylabel("objective - wide-limit bound (log)")
    ax.set_title(f"gap to the certified lower bound (bound = {result.bound:.2f})")
    ax.legend(fontsize=8)
    ax = axes[1]
    X = result.x
    ax.scatter(X[:, 0], X[:, 1], s=4, color="tab:gray", alpha=0.4, label="data")
    shown = sorted({sizes[0], sizes[len(sizes) // 2], sizes[-1]})
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(shown)))
    r = np.linalg.norm(X, axis=1).max()
    for color, k in zip(colors, shown, strict=True):
        for j, a in enumerate(np.add(result.atom_angles[sizes.index(k)],
                                     result.reference_angle)):
            ax.plot([0, r * np.cos(a)], [0, r * np.sin(a)], color=color, lw=1.2,
                    label=f"{k} atoms (used)" if j == 0 else None)
    ax.set_aspect("equal")
    ax.set_xlabel("x[0]")
    ax.set_ylabel("x[1]")
    ax.set_title("atoms fan out over the cone of data rays")
    ax.legend(fontsize=8, loc="upper right")
    ax = axes[2]
    data_angles = _relative_angle(X[np.linalg.norm(X, axis=1) > 0], result.reference_angle)
    ax.hist(data_angles, bins=40, color="tab:gray", alpha=0.6, density=True,
            label="data ray angles")
    for a in result.atom_angles[-1]:
        ax.axvline(a, color="tab:purple", lw=1)
    ax.set_xlabel("angle from the mean data ray (radians)")
    ax.set_ylabel("density of data rays")
    ax.set_title(f"{sizes[-1]} atoms: used atom angles (lines) vs data rays")
    ax.legend(fontsize=8)
    fig.suptitle("Wide limit: splitting toward one atom per data ray")
    fig.tight_layout()
    return [save_figure(fig, out_dir / f"{NAME}.png")]
