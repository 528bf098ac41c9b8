"""Hierarchy -> absorption: the true parent/child dictionary is not a local optimum.

Data: orthonormal features, feature 0 is a parent ("dog") and feature 1 its
child ("labrador", fires only when the dog fires), features 2.. independent.
Magnitudes are moved to [0.5, 1.5) so the optimal codes of the true
dictionary keep the child's support inside the parent's.

1. True dictionary with optimal codes: :func:`toysae.theory.check_optimality`
   finds the nested pair (child inside parent), fails its hull condition
   ([min s, 1] = [1, 1] does not contain c = 0) and certifies an explicit
   descent step whose drop is verified by recomputing the objective.
2. A dictionary learned by :class:`toysae.dictlearn.learner.DictionaryLearner`
   and a ReLU SAE trained on the same data: the checker explains the outcome
   from their (re-solved) codes: no nested pair is left, and the atom that
   fires on child samples has absorbed part of the parent direction while the
   parent atom stays off there (absorption), or the parent direction is shared
   by several atoms with disjoint supports (splitting).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from toysae._config import Bounds, JsonMixin, Seed, validate_fields
from toysae._threads import torch_threads
from toysae.data import SyntheticConfig, SyntheticData
from toysae.dictlearn import sparse_code
from toysae.dictlearn.learner import DictionaryLearner
from toysae.sae import TrainConfig, train_sae
from toysae.theory import check_optimality, check_sae

NAME = "hierarchy-absorption"
DESCRIPTION = ("Parent/child features: the true dictionary gets a certified descent step; "
               "dictionary learning and an SAE end in absorption or splitting, explained by "
               "the optimality checker.")

PARENT, CHILD = 0, 1


def _default_data() -> SyntheticConfig:
    return SyntheticConfig(d=8, n_features=4, mean_active=2.0, decay=1.0, correlation="none",
                           hierarchy=((PARENT, CHILD),), orthogonal=True, seed=0)


@dataclass(frozen=True)
class Config(JsonMixin):
    data: SyntheticConfig = field(default_factory=_default_data)
    n_samples: Annotated[int, Bounds(10)] = 4000
    lam: Annotated[float, Bounds(0.0, 0.5, min_inclusive=False)] = 0.1
    # learned dictionaries get n_features + extra_atoms atoms
    extra_atoms: Annotated[int, Bounds(0)] = 0
    learn_epochs: Annotated[int, Bounds(1)] = 40
    sae_samples: Annotated[int, Bounds(256)] = 400_000
    seed: Seed = 0

    def __post_init__(self):
        validate_fields(self)
        if (PARENT, CHILD) not in self.data.hierarchy:
            raise ValueError(f"data.hierarchy must contain ({PARENT}, {CHILD}), got "
                             f"{self.data.hierarchy}")

    @classmethod
    def quick(cls) -> Config:
        return cls(n_samples=2000, learn_epochs=20, sae_samples=200_000)


@dataclass(frozen=True)
class Verdict(JsonMixin):
    """What the checker says about one dictionary (codes re-solved optimally)."""

    name: str
    outcome: str  # "hierarchy kept", "absorption", "splitting" or "other"
    explanation: str
    passed: bool  # check_optimality passed
    n_nested: int
    n_certified: int
    certified_drop: float  # largest verified drop of a hierarchy step (0 if none)
    child_pair_in_hull: bool  # hull of the (child-like atom, parent-like atom) pair
    max_atom_violation: float
    objective: float
    cos_to_truth: np.ndarray  # (n_atoms, n_features + 1): last column is normalise(f_p + f_c)
    rate_on_child: np.ndarray  # (n_atoms,) fraction of child samples where the atom fires
    amortisation_gap: float | None = None  # SAE only


@dataclass(frozen=True)
class Result(JsonMixin):
    config: Config
    verdicts: tuple  # Verdict for "truth", "dictionary learning", "SAE"


def _data(config: Config):
    batch = SyntheticData(config.data).sample(config.n_samples, seed=config.seed)
    on = batch.codes > 0
    codes = np.where(on, 0.5 + batch.codes, 0.0).astype(np.float64)
    F = SyntheticData(config.data).features.astype(np.float64)
    return codes @ F, F, on


def _verdict(name, X, D, Z, lam, F, child_on, *, amort=None, report=None) -> Verdict:
    rep = report if report is not None else check_optimality(X, D, Z, lam)
    truth = np.vstack([F, (F[PARENT] + F[CHILD]) / np.sqrt(2)])
    cos = D @ truth.T
    active = Z > 0
    rate = active[child_on].mean(axis=0) if child_on.any() else np.zeros(len(D))
    p = int(np.argmax(cos[:, PARENT]))
    c = int(np.argmax(cos[:, CHILD]))  # the atom carrying the child direction
    hull_ok = bool(rep.pairs.in_hull[c, p]) if c != p else True
    splits = [k for k in np.flatnonzero(cos[:, PARENT] > 0.5) if k != c]
    steps = rep.hierarchy.steps
    if any({s.child, s.parent} <= {p, c} for s in steps):
        outcome = "hierarchy kept"
        text = (f"atom {c} fires only where atom {p} fires: nested supports, hull "
                f"[1, 1] misses c = {D[c] @ D[p]:.2f}; certified step lowers the loss by "
                f"{max(s.verified_drop for s in steps):.4g}")
    elif c == p:
        outcome = "other"
        text = f"one atom {p} carries parent and child (cos {cos[p, PARENT]:.2f}, " \
               f"{cos[p, CHILD]:.2f})"
    else:
        absorbed = cos[c, PARENT] > 0.2
        partial = f" (partial: the parent atom {p} still fires on {rate[p]:.0%} of them)" \
            if rate[p] >= 0.5 else f"; the parent atom {p} fires on only {rate[p]:.0%} of them"
        text = (f"no nested pair left; child atom {c} fires on {rate[c]:.0%} of child samples "
                f"with cos {cos[c, PARENT]:.2f} to the parent, {cos[c, CHILD]:.2f} to the "
                f"child" + (partial if absorbed else ""))
        if len(splits) >= 2:
            outcome = "splitting"
            text += (f"; the parent direction is split over atoms {[int(k) for k in splits]} "
                     f"(cos {np.round(cos[splits, PARENT], 2).tolist()})")
        elif absorbed:
            outcome = "absorption"
            text += ": the child atom absorbed part of the parent direction"
        else:
            outcome = "other"
    return Verdict(
        name=name, outcome=outcome, explanation=text, passed=rep.passed,
        n_nested=rep.hierarchy.n_nested, n_certified=rep.hierarchy.n_certified,
        certified_drop=rep.hierarchy.max_drop, child_pair_in_hull=hull_ok,
        max_atom_violation=rep.atoms.max_violation, objective=rep.objective, cos_to_truth=cos,
        rate_on_child=rate, amortisation_gap=amort)


def _codes(X, D, lam):
    return sparse_code(X, D, lam, dtype=torch.float64, tol=1e-9, max_iter=20000).codes


def run(config: Config) -> Result:
    with torch_threads(1):
        return _run(config)


def _run(config: Config) -> Result:
    lam = config.lam
    X, F, on = _data(config)
    child_on = on[:, CHILD]
    verdicts = [_verdict("truth", X, F, _codes(X, F, lam), lam, F, child_on)]
    n_atoms = config.data.n_features + config.extra_atoms
    learner = DictionaryLearner(n_atoms, lam, max_epochs=config.learn_epochs, seed=config.seed,
                                progress=False)
    D = learner.fit(X).dictionary.astype(np.float64)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    verdicts.append(_verdict("dictionary learning", X, D, _codes(X, D, lam), lam, F, child_on))
    sae_cfg = TrainConfig(n_samples=config.sae_samples, batch_size=256, sparsity_coef=lam,
                          seed=config.seed)
    sae = train_sae("relu", X.astype(np.float32), sae_cfg, width=n_atoms,
                    progress=False).sae
    sae_rep = check_sae(sae, X, lam, normalize=True, tol=1e-9)
    Ds = sae.dictionary.detach().numpy().astype(np.float64)
    Ds /= np.linalg.norm(Ds, axis=1, keepdims=True)
    verdicts.append(_verdict("SAE (ReLU)", X, Ds, sae_rep.amortisation.optimal_codes, lam, F,
                             child_on, amort=sae_rep.amortisation.relative_gap,
                             report=sae_rep.optimality))
    truth = verdicts[0]
    if truth.outcome != "hierarchy kept" or truth.certified_drop <= 0 or truth.passed:
        raise RuntimeError("hierarchy-absorption: the true dictionary should be flagged with a "
                           f"certified step, got {truth.explanation}")
    return Result(config=config, verdicts=tuple(verdicts))


def save(result: Result, out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from toysae.plotting import heatmap, save_figure, style, wrap

    style()
    out_dir = Path(out_dir)
    n_features = result.config.data.n_features
    cols = ["parent", "child"] + [f"f{i}" for i in range(2, n_features)] + ["parent\n+child"]
    n = len(result.verdicts)
    fig, axes = plt.subplots(n, 2, figsize=(9.0, 2.6 * n + 0.6), layout="constrained",
                             width_ratios=(1.55, 1), squeeze=False)
    for (ax, note), v, letter in zip(axes, result.verdicts, "abcdefgh", strict=False):
        cos = np.asarray(v.cos_to_truth)
        rows = [f"atom {k} ({r:.0%})" for k, r in enumerate(v.rate_on_child)]
        im = heatmap(ax, cos, rows, cols, row_title="atom (share of\nchild samples)",
                     col_title="true direction", title=f"({letter}) {v.name}: {v.outcome}",
                     cmap="RdBu_r", vmin=-1, vmax=1, colorbar=False)
        note.set_axis_off()
        note.text(0.0, 1.0, wrap(v.explanation, 48), transform=note.transAxes, va="top",
                  fontsize=9)
    fig.colorbar(im, ax=axes[:, 0], label="cosine", fraction=0.05, pad=0.02, shrink=0.5)
    fig.suptitle(wrap("Parent/child hierarchy: the checker flags the true dictionary (certified "
                      "step) and explains what learning does instead", 90))
    return [save_figure(fig, out_dir / f"{NAME}.png")]


def caption(data: dict) -> str:
    """One line of finding for the figure, from a stored result (``toysae report``)."""
    parts = []
    for v in data["verdicts"]:
        step = (f" ({v['n_certified']} certified descent step(s), objective drop "
                f"{v['certified_drop']:.3g})" if v["n_certified"] else "")
        parts.append(f"{v['name']}: {v['outcome']}{step}")
    return "; ".join(parts) + "."
