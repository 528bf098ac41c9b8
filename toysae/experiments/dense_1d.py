"""1-D data straddling zero: the optimal dictionary is a dense antipodal pair.

In one dimension the unit atoms are ``+1`` and ``-1`` and the wide limit is
attained by them: codes ``(x - lam)_+`` and ``(-x - lam)_+``. When the data
straddle zero both atoms fire on a large share of the samples: a dense,
antipodal pair, the toy model of dense SAE features. With a decoder bias the
optimal bias is a clipped (Huber) location of the data, ``sum_n
clip(x_n - b, -lam, lam) = 0``, and the data still straddle it, so the pair
survives, centred at ``b``. Dictionary learning started from data reaches the
pair or a duplicated atom ``(+1, +1)``: on the 0-sphere no rotation links
the two, so first-order checks cannot see it, but the wide-limit gap does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from toysae._config import POSITIVE, Bounds, JsonMixin, Seed, validate_fields
from toysae._threads import torch_threads
from toysae.dictlearn import sparse_code
from toysae.dictlearn.learner import DictionaryLearner
from toysae.theory import check_optimality, wide_limit, wide_limit_gap

NAME = "dense-1d"
DESCRIPTION = ("1-D data straddling zero: the dense antipodal pair (+1, -1) is optimal, with "
               "and without a decoder bias; learned 2-atom dictionaries and their gaps.")


@dataclass(frozen=True)
class Config(JsonMixin):
    n_samples: Annotated[int, Bounds(10)] = 4000
    low: float = -1.0  # data ~ U[low, high)
    high: float = 2.0
    lam: Annotated[float, POSITIVE] = 0.1
    learn_seeds: Annotated[int, Bounds(1)] = 6
    learn_epochs: Annotated[int, Bounds(1)] = 3
    seed: Seed = 0

    def __post_init__(self):
        validate_fields(self)
        if not self.low < 0 < self.high:
            raise ValueError(f"the data must straddle zero: need low < 0 < high, got "
                             f"low={self.low}, high={self.high}")

    @classmethod
    def quick(cls) -> Config:
        return cls(n_samples=1000, learn_seeds=2, learn_epochs=2)


@dataclass(frozen=True)
class Result(JsonMixin):
    config: Config
    x: np.ndarray  # (n,) the data
    bias: float  # optimal decoder bias of the wide limit
    pair_passed: bool  # (+1, -1) without bias passes check_optimality
    pair_bias_passed: bool  # (+1, -1) with the optimal bias, decoder_bias=True
    pair_cos_in_hull: bool  # c = -1 lies in [min s_nj, 1] (on its boundary)
    firing_rate: tuple  # of (+1, -1) without bias
    firing_rate_bias: tuple  # of (+1, -1) with bias
    gaps: dict  # name -> gap to the wide-limit bound (the matching bias/no-bias bound)
    learned: tuple  # per seed: (atoms as tuple, gap, first-order checks passed)

    def to_dict(self) -> dict:
        out = super().to_dict()
        out.pop("x")  # the data are regenerated from the config's seed
        return out


def _codes(x: np.ndarray, lam: float) -> np.ndarray:
    return np.stack([np.maximum(x - lam, 0), np.maximum(-x - lam, 0)], axis=1)


def _single_atom_with_bias(x: np.ndarray, lam: float, lo: float, hi: float) -> float:
    """Objective of the single atom +1 with its best decoder bias (codes optimal)."""
    def loss(b):
        v = x - b
        return float(np.where(v > lam, lam * v - 0.5 * lam**2, 0.5 * v**2).sum())

    return minimize_scalar(loss, bounds=(lo, hi), method="bounded",
                           options={"xatol": 1e-10}).fun


def run(config: Config) -> Result:
    with torch_threads(1):
        return _run(config)


def _run(config: Config) -> Result:
    lam = config.lam
    rng = np.random.default_rng(config.seed)
    x = rng.uniform(config.low, config.high, config.n_samples)
    X = x[:, None]
    pair = np.array([[1.0], [-1.0]])
    Z = _codes(x, lam)
    rep = check_optimality(X, pair, Z, lam)
    limit_b = wide_limit(X, lam, bias=True)
    if not limit_b.success:
        raise RuntimeError(f"optimal bias did not converge: {limit_b.message}")
    b = float(limit_b.bias[0])
    Zb = _codes(x - b, lam)
    rep_b = check_optimality(X, pair, Zb, lam, decoder_bias=True, bias=limit_b.bias)
    single = np.maximum(x - lam, 0)[:, None]
    gaps = {
        "pair": wide_limit_gap(X, pair, Z, lam).gap,
        "single +1": wide_limit_gap(X, pair[:1], single, lam).gap,
        "pair + bias": wide_limit_gap(X, pair, Zb, lam, bias=limit_b.bias).gap,
        "single +1 + bias": _single_atom_with_bias(x, lam, x.min() - 1, x.max() + 1)
        - limit_b.bound,
    }
    learned = []
    for seed in range(config.learn_seeds):
        dl = DictionaryLearner(2, lam, max_epochs=config.learn_epochs, seed=seed,
                               progress=False).fit(X)
        D = np.sign(dl.dictionary.astype(np.float64))
        sol = sparse_code(X, D, lam, dtype=torch.float64, tol=1e-9, max_iter=5000)
        gap = wide_limit_gap(X, D, sol.codes, lam).gap
        ok = check_optimality(X, D, sol.codes, lam, pairs=None).atoms.passed
        learned.append((tuple(float(v) for v in D.ravel()), float(gap), bool(ok)))
    return Result(
        config=config, x=x, bias=b, pair_passed=rep.passed, pair_bias_passed=rep_b.passed,
        pair_cos_in_hull=bool(rep.pairs.in_hull[0, 1] and rep.pairs.in_hull[1, 0]),
        firing_rate=tuple(float(v) for v in (Z > 0).mean(axis=0)),
        firing_rate_bias=tuple(float(v) for v in (Zb > 0).mean(axis=0)),
        gaps={k: float(v) for k, v in gaps.items()}, learned=tuple(learned))


def save(result: Result, out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from toysae.plotting import save_figure, style, wrap

    style()
    out_dir = Path(out_dir)
    lam, x, b = result.config.lam, result.x, result.bias
    fig, axes = plt.subplots(1, 3, figsize=(9.0, 4.2))
    ax = axes[0]
    ax.hist(x, bins=40, color="tab:gray", alpha=0.7)
    ax.axvline(0, color="black", lw=1.5, label="0 (no bias)")
    ax.axvline(b, color="tab:red", lw=1.5, ls="--", label=f"optimal bias b = {b:.3f}")
    for c, style_ in ((0, "-"), (b, "--")):
        ax.axvspan(c - lam, c + lam, color="tab:red" if style_ == "--" else "black",
                   alpha=0.1, label="|x - c| <= lam: no atom fires" if c == 0 else None)
    ax.set_xlabel("x")
    ax.set_ylabel("samples")
    ax.set_title("1-D data straddling zero")
    ax = axes[1]
    grid = np.linspace(x.min(), x.max(), 400)
    for shift, ls, tag in ((0.0, "-", "no bias"), (b, "--", "with bias")):
        codes = _codes(grid - shift, lam)
        ax.plot(grid, codes[:, 0], ls=ls, color="tab:blue", label=f"atom +1, {tag}")
        ax.plot(grid, codes[:, 1], ls=ls, color="tab:orange", label=f"atom -1, {tag}")
    r, rb = result.firing_rate, result.firing_rate_bias
    ax.set_xlabel("x")
    ax.set_ylabel("optimal code z")
    ax.set_title(f"the pair fires on {r[0] + r[1]:.0%}\n(no bias), {rb[0] + rb[1]:.0%} "
                 "(bias)")
    ax = axes[2]
    names = list(result.gaps)
    values = [result.gaps[k] for k in names]
    notes = [f"{v:.2g}" for v in values]
    for i, (atoms, gap, _) in enumerate(result.learned):
        names.append(f"learned, seed {i}")
        values.append(gap)
        notes.append(f"{gap:.2g}; atoms " + ", ".join(f"{a:+.1f}" for a in atoms))
    ax.barh(range(len(names)), np.maximum(values, 0.0), color="tab:purple")
    top = max(max(values), 1e-12)
    for k, (v, note) in enumerate(zip(values, notes, strict=True)):
        # every gap written: one <= 0 has no bar to show it
        ax.text(max(v, 0.0) + 0.02 * top, k, note, va="center", fontsize=9)
    ax.set_xlim(0, 2.3 * top)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("objective - bound")
    ax.set_title("gap to the wide-limit bound\n(0 = globally optimal)")
    handles, labels = [], []
    for a in axes[:2]:
        h, lab = a.get_legend_handles_labels()
        handles += h
        labels += lab
    fig.legend(handles, labels, loc="lower center", ncol=3, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(wrap(f"Dense antipodal pair in 1-D (lam = {lam:g}); the pair passes all "
                      f"checks: {result.pair_passed} (no bias), {result.pair_bias_passed} "
                      "(bias)", 95))
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    return [save_figure(fig, out_dir / f"{NAME}.png")]


def caption(data: dict) -> str:
    """One line of finding for the figure, from a stored result (``toysae report``)."""
    gaps = data["gaps"]
    return (f"On 1-D data straddling zero the dense antipodal pair is stationary without a "
            f"decoder bias ({data['pair_passed']}) and with one ({data['pair_bias_passed']}); "
            f"a single atom's objective exceeds the pair's by {gaps['single +1']:.3g} (with a "
            f"bias {gaps['single +1 + bias']:.3g}).")
