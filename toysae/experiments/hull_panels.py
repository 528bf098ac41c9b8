"""Convex-hull panels: which two-feature response patterns can sit at an optimum.

Three 2-D datasets are built from prescribed scaled responses ``s_nk``: for a
dictionary of two unit atoms with ``c = d_1 . d_2``, a sample where atom 1
fires alone with response ``s_n2`` to atom 2 has residual ``r_n`` solving
``D r_n = lam (1, s_n2)`` and data ``x_n = z_n1 d_1 + r_n``; co-active samples
have ``D r_n = lam (1, 1)``. Every such ``(D, Z)`` satisfies the code KKT
conditions exactly, and in 2-D the pair identity of each atom is its whole
stationarity condition.

- A: both features vary freely while the other is off (responses spread
  around ``c``), co-active samples present, ``c > 0``;
- B: as A but with a missing chunk: where atom 1 fires alone, ``s_n2`` never
  goes below ``c + gap``, so ``c`` lies outside ``[min s_n2, 1]``;
- C: mutually exclusive features (no co-activity), obtuse atoms ``c < 0``.

In A and C the responses are shifted so the ``z``-weighted means equal ``c``
exactly: every check passes. B fails the hull and the pair identity, and
``run`` asserts this outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np

from toysae._config import POSITIVE, Bounds, JsonMixin, Seed, validate_fields
from toysae.theory import check_optimality

NAME = "hull-panels"
DESCRIPTION = ("Three 2-feature datasets: responses of each feature while the other is off, "
               "the convex-hull intervals and the cosine each must contain (A, C pass; B fails).")


@dataclass(frozen=True)
class Config(JsonMixin):
    n_alone: Annotated[int, Bounds(4)] = 400  # samples where each atom fires alone, per atom
    n_coactive: Annotated[int, Bounds(1)] = 150  # samples where both fire (panels A and B)
    lam: Annotated[float, POSITIVE] = 0.1
    cos_ab: Annotated[float, Bounds(-0.9, 0.9)] = 0.3  # c of panels A and B
    cos_c: Annotated[float, Bounds(-0.9, 0.9)] = -0.4  # c of panel C
    # panel B: s_n2 >= c + gap where atom 1 fires alone
    missing_gap: Annotated[float, Bounds(0.05, 0.5)] = 0.25
    seed: Seed = 0

    def __post_init__(self):
        validate_fields(self)

    @classmethod
    def quick(cls) -> Config:
        return cls(n_alone=120, n_coactive=40)


@dataclass(frozen=True)
class Panel(JsonMixin):
    name: str
    cos: float
    passed: bool  # check_optimality passed
    in_hull_12: bool  # c in [min s_n2 over supp z_1, 1]
    in_hull_21: bool
    hull_low_12: float
    hull_low_21: float
    identity_violation_12: float
    identity_violation_21: float
    atom_violation: tuple  # per atom
    summary: str


@dataclass(frozen=True)
class Result(JsonMixin):
    config: Config
    panels: tuple  # of Panel: A, B, C
    expected_outcome_holds: bool  # A and C pass, B fails
    data: tuple = ()  # per panel: (X, Z, responses) as lists, for the figure

    def to_dict(self) -> dict:
        out = super().to_dict()
        out.pop("data")
        return out


def _atoms(c: float) -> np.ndarray:
    return np.array([[1.0, 0.0], [c, np.sqrt(1 - c * c)]])


def _balanced(values: np.ndarray, weights: np.ndarray, target: float,
              coactive: float) -> np.ndarray:
    """Shift ``values`` so the weighted mean of (values, 1 x coactive weight) is ``target``."""
    total = weights.sum() + coactive
    shift = (target * total - coactive - weights @ values) / weights.sum()
    return values + shift


def _panel(name: str, c: float, cfg: Config, rng: np.random.Generator):
    D = _atoms(c)
    n1 = n2 = cfg.n_alone
    nc = cfg.n_coactive if name != "C" else 0
    z1 = rng.uniform(0.2, 2.0, n1)
    z2 = rng.uniform(0.2, 2.0, n2)
    zc = rng.uniform(0.2, 2.0, (nc, 2))
    if name == "B":  # the chunk of s_n2 below c + gap is missing
        s12 = rng.uniform(c + cfg.missing_gap, 0.95, n1)
    else:
        s12 = _balanced(rng.uniform(-0.9, 0.9, n1), z1, c, zc[:, 0].sum())
    s21 = _balanced(rng.uniform(-0.9, 0.9, n2), z2, c, zc[:, 1].sum())
    if max(s12.max(), s21.max()) >= 1:
        raise RuntimeError(f"panel {name}: balanced responses exceed 1; change cos or seed")
    S = np.concatenate([np.stack([np.ones(n1), s12], 1), np.stack([s21, np.ones(n2)], 1),
                        np.ones((nc, 2))])
    Z = np.zeros((n1 + n2 + nc, 2))
    Z[:n1, 0] = z1
    Z[n1:n1 + n2, 1] = z2
    Z[n1 + n2:] = zc
    R = np.linalg.solve(D, cfg.lam * S.T).T  # D r = lam s
    X = Z @ D + R
    return X, D, Z, S


def run(config: Config) -> Result:
    rng = np.random.default_rng(config.seed)
    panels, data = [], []
    for name, c in (("A", config.cos_ab), ("B", config.cos_ab), ("C", config.cos_c)):
        X, D, Z, S = _panel(name, c, config, rng)
        rep = check_optimality(X, D, Z, config.lam)
        p = rep.pairs
        panels.append(Panel(
            name=name, cos=c, passed=rep.passed, in_hull_12=bool(p.in_hull[0, 1]),
            in_hull_21=bool(p.in_hull[1, 0]), hull_low_12=float(p.hull_low[0, 1]),
            hull_low_21=float(p.hull_low[1, 0]),
            identity_violation_12=float(p.identity_violation[0, 1]),
            identity_violation_21=float(p.identity_violation[1, 0]),
            atom_violation=tuple(float(v) for v in rep.atoms.violation), summary=rep.message))
        data.append((X, Z, S))
    a, b, c = panels
    expected = (a.passed and c.passed and a.in_hull_12 and a.in_hull_21 and c.in_hull_12
                and c.in_hull_21 and not b.passed and not b.in_hull_12)
    if not expected:
        raise RuntimeError("hull-panels: expected A and C to pass and B to fail, got "
                           + "; ".join(f"{p.name}: passed={p.passed}" for p in panels))
    return Result(config=config, panels=tuple(panels), expected_outcome_holds=expected,
                  data=tuple(data))


def save(result: Result, out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from toysae.plotting import save_figure, style

    style()
    out_dir = Path(out_dir)
    lam = result.config.lam
    n = len(result.panels)
    fig, axes = plt.subplots(2, n, figsize=(3.0 * n, 7.0), squeeze=False)
    rng = np.random.default_rng(0)
    legend: dict = {}
    for col, (panel, (X, Z, S)) in enumerate(zip(result.panels, result.data, strict=True)):
        D = _atoms(panel.cos)
        on1, on2 = Z[:, 0] > 0, Z[:, 1] > 0
        ax = axes[0, col]
        for mask, label, color in ((on1 & ~on2, "atom 1 alone", "tab:blue"),
                                   (on2 & ~on1, "atom 2 alone", "tab:orange"),
                                   (on1 & on2, "both", "tab:gray")):
            if mask.any():
                ax.scatter(X[mask, 0], X[mask, 1], s=6, alpha=0.5, color=color, label=label)
        scale = np.abs(X).max()
        for k, name in enumerate(("d1", "d2")):
            ax.annotate("", xy=D[k] * scale, xytext=(0, 0),
                        arrowprops={"arrowstyle": "->", "lw": 2, "color": "black"})
            ax.text(*(D[k] * scale * 1.05), name, fontsize=10)
            ax.plot(*(D[k] * scale * 1.12), alpha=0)  # keep the arrow inside the axes
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("x[0]")
        ax.set_ylabel("x[1]")
        verdict = "passes" if panel.passed else "FAILS"
        ax.set_title(f"{panel.name}: c = {panel.cos:+.2f}\n({verdict})")
        ax = axes[1, col]
        for row, (vals, low) in enumerate(((S[on1, 1], panel.hull_low_12),
                                           (S[on2, 0], panel.hull_low_21))):
            jitter = row + 0.25 * (rng.uniform(size=vals.size) - 0.5)
            ax.scatter(vals, jitter, s=6, alpha=0.4, color="tab:blue",
                       label="responses" if row == 0 else None)
            ax.fill_betweenx([row - 0.2, row + 0.2], low, 1.0, color="tab:red", alpha=0.2,
                             label="hull [min s, 1]" if row == 0 else None)
            ax.plot([panel.cos] * 2, [row - 0.3, row + 0.3], color="black", lw=2,
                    label="c = d1 . d2" if row == 0 else None)
        ax.set_yticks([0, 1], ["1 -> 2\n(s_n2, z_1 > 0)", "2 -> 1\n(s_n1, z_2 > 0)"])
        ax.set_xlabel("scaled response s = d . r / lam")
        ok12 = "in" if panel.in_hull_12 else "OUT"
        ok21 = "in" if panel.in_hull_21 else "OUT"
        ax.set_title(f"c {ok12} hull 1->2,\n{ok21} hull 2->1")
        ax.set_xlim(min(S.min(), panel.cos) - 0.05, 1.05)
        for a in (axes[0, col], ax):
            legend.update(zip(*reversed(a.get_legend_handles_labels()), strict=True))
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=len(legend),
               bbox_to_anchor=(0.5, 0.0), markerscale=2)
    fig.suptitle(f"Convex-hull condition (lam = {lam:g}): c must lie in how each feature's "
                 "response\nvaries while the other is off")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return [save_figure(fig, out_dir / f"{NAME}.png")]


def caption(data: dict) -> str:
    """One line of finding for the figure, from a stored result (``toysae report``)."""
    panels = ", ".join(f"panel {p['name']} (cos {p['cos']:+.2f}) "
                       f"{'passes' if p['passed'] else 'fails'}" for p in data["panels"])
    verdict = "as the theory predicts" if data["expected_outcome_holds"] else \
        "NOT as the theory predicts"
    return f"The convex-hull pair condition on three 2-feature datasets: {panels}, {verdict}."
