"""Study 3 of sites-and-recipes, panel (b): does tying change absorption?

A parent/child hierarchy (``hierarchy-absorption``'s data), tied vs untied SAEs,
and what the checkers say: ``check_sae`` (the dictionary with optimal codes) and
``hierarchy_certificate`` on the SAE's own codes count the nested pairs and the
certified descent steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from toysae import metrics
from toysae._config import JsonMixin
from toysae._validation import shifted_seed
from toysae.data import SyntheticData
from toysae.experiments.sites_and_recipes.common import (
    TIED_COLOR,
    UNTIED_COLOR,
    held,
    interval,
    stream,
    train_pair,
    versus,
)
from toysae.sae import TiedSAE
from toysae.stats import over_seeds
from toysae.theory import check_sae, hierarchy_certificate, sae_codes

if TYPE_CHECKING:
    from toysae.experiments.sites_and_recipes import Config, Result

PARENT, CHILD = 0, 1


@dataclass(frozen=True)
class HierarchyScore(JsonMixin):
    """Panel (b): one SAE on the parent/child data.

    parent_atom / child_atom : the atoms with the largest cosine to the parent /
    child feature. child_atom_cos_parent : how much of the parent direction the
    child atom took in. parent_on_child : share of child samples where the parent
    atom fires (the SAE's own codes); child_on_parent_only : share of parent-only
    samples where the child atom fires. outcome : "absorption" (the child atom has
    cosine > 0.2 to the parent and fires on < 50% of parent-only samples: it
    fires with the child and carries part of the parent), "mixed" (cosine > 0.2
    but it fires on most parent-only samples too), "hierarchy kept" (child atom
    on the child, the parent atom fires on > 90% of child samples), "merged" (one
    atom is the best match of both) or "other". optimal_* : from
    ``check_sae`` (the SAE's dictionary with re-solved optimal codes); own_* : from
    ``hierarchy_certificate`` on the SAE's own codes. *_nested : nested pairs;
    *_certified : verified descent steps; *_drop : the largest verified drop.
    """

    tied: bool
    seed: int
    outcome: str
    mmcs: float
    parent_atom: int
    child_atom: int
    child_atom_cos_parent: float
    child_atom_cos_child: float
    parent_atom_cos_parent: float
    parent_on_child: float
    child_on_parent_only: float
    optimal_nested: int
    optimal_certified: int
    optimal_drop: float
    own_nested: int
    own_certified: int
    own_drop: float
    amortisation_gap: float
    passed: bool  # check_sae: the dictionary passes every optimality check
    explanation: str


def _hierarchy_score(sae, X, codes_true, F, lam, seed) -> HierarchyScore:
    D = sae.dictionary.detach().numpy().astype(np.float64)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    rep = check_sae(sae, X, lam, normalize=True)
    Z = sae_codes(sae, X)
    own = hierarchy_certificate(X, sae.dictionary.detach().numpy().astype(np.float64), Z, lam,
                                normalize=True)
    cos = D @ F.T
    p, c = int(np.argmax(cos[:, PARENT])), int(np.argmax(cos[:, CHILD]))
    on = codes_true > 0
    child, parent_only = on[:, CHILD], on[:, PARENT] & ~on[:, CHILD]
    fires = Z > 0
    p_on_c = float(fires[child, p].mean())
    c_on_p = float(fires[parent_only, c].mean())
    opt = rep.optimality.hierarchy
    if p == c:
        outcome = "merged"
        text = (f"one atom ({p}) carries parent and child (cos {cos[p, PARENT]:.2f}, "
                f"{cos[p, CHILD]:.2f})")
    elif cos[c, PARENT] > 0.2 and c_on_p < 0.5:
        outcome = "absorption"
        text = (f"child atom {c} absorbed the parent direction (cos {cos[c, PARENT]:.2f} to the "
                f"parent) and fires with the child only ({c_on_p:.0%} of parent-only samples); "
                f"the parent atom fires on {p_on_c:.0%} of child samples")
    elif cos[c, PARENT] > 0.2:
        outcome = "mixed"
        text = (f"child atom {c} reads parent + child (cos {cos[c, PARENT]:.2f} to the parent, "
                f"{cos[c, CHILD]:.2f} to the child) and fires on {c_on_p:.0%} of parent-only "
                f"samples, so it cannot absorb; the parent atom fires on {p_on_c:.0%} of child "
                f"samples")
    elif p_on_c > 0.9:
        outcome = "hierarchy kept"
        text = (f"child atom {c} stays on the child (cos {cos[c, CHILD]:.2f}), the parent atom "
                f"fires on {p_on_c:.0%} of child samples: nested supports")
    else:
        outcome = "other"
        text = (f"child atom {c} (cos {cos[c, CHILD]:.2f} to the child), the parent atom fires "
                f"on {p_on_c:.0%} of child samples")
    text += (f"; checker, optimal codes: {opt.n_nested} nested / {opt.n_certified} certified; "
             f"own codes: {own.n_nested} nested / {own.n_certified} certified")
    return HierarchyScore(
        tied=isinstance(sae, TiedSAE), seed=seed, outcome=outcome, mmcs=metrics.mmcs(F, D),
        parent_atom=p, child_atom=c, child_atom_cos_parent=float(cos[c, PARENT]),
        child_atom_cos_child=float(cos[c, CHILD]), parent_atom_cos_parent=float(cos[p, PARENT]),
        parent_on_child=p_on_c, child_on_parent_only=c_on_p, optimal_nested=opt.n_nested,
        optimal_certified=opt.n_certified, optimal_drop=float(opt.max_drop),
        own_nested=own.n_nested, own_certified=own.n_certified, own_drop=float(own.max_drop),
        amortisation_gap=float(rep.amortisation.relative_gap), passed=bool(rep.passed),
        explanation=text)


def run_hierarchy(config: Config) -> list[HierarchyScore]:
    """Every seed x {tied, untied} of panel (b)."""
    data = SyntheticData(config.hierarchy_data)
    F = data.features.astype(np.float64)
    d, n_f = config.hierarchy_data.d, config.hierarchy_data.n_features
    X, C = held(data, F, config.n_check, shifted_seed(config.seed, 10_000_079), 0.5)
    out = []
    for k in range(config.hierarchy_seeds):
        seed = shifted_seed(config.seed, k)
        cfg = config.hierarchy_train.replace(seed=seed)
        batches = stream(data, F, cfg.batch_size, seed, 0.5)
        for sae in train_pair(batches, d, n_f, config.hierarchy_lam, cfg, seed):
            out.append(_hierarchy_score(sae, X, C, F, config.hierarchy_lam, seed))
    return out


# What tied and untied are compared on: (attribute, label, decimals, the word for "more")
COMPARED = (("child_atom_cos_parent", "child atom's cosine to the parent", 2, "higher"),
            ("parent_on_child", "share of child samples the parent atom fires on", 2,
             "higher"),
            ("child_on_parent_only", "share of parent-only samples the child atom fires on", 2,
             "higher"),
            ("optimal_certified", "certified steps with optimal codes", 1, "more"))


def findings(r: Result) -> list[str]:
    """What panel (b) shows: per tying, the outcomes and the checkers' counts per seed;
    then tied vs untied over the seeds, a difference called only where the intervals
    separate."""
    out = []
    groups = {tied: [x for x in r.hierarchy if x.tied == tied] for tied in (True, False)}
    for tied, h in groups.items():
        outcomes = {o: sum(x.outcome == o for x in h) for o in sorted({x.outcome for x in h})}
        out.append(
            f"hierarchy, {'tied' if tied else 'untied'} ({len(h)} seeds): outcomes {outcomes}; "
            f"checker: nested pairs with optimal codes {[x.optimal_nested for x in h]}, "
            f"certified steps {[x.optimal_certified for x in h]}; with the SAE's own codes "
            f"nested {[x.own_nested for x in h]}, certified {[x.own_certified for x in h]}")
    t, u = groups[True], groups[False]
    n = min(len(t), len(u))
    out.append(f"hierarchy, tied vs untied ({over_seeds(n)}): " + "; ".join(
                   versus(label, "tied", interval(t, attr), "untied", interval(u, attr),
                          digits, more)
                   for attr, label, digits, more in COMPARED))
    return out


def draw(axes, result: Result) -> None:
    """Panel (b) on four axes: the child and parent atoms per seed, and the
    checkers' nested pairs and certified steps."""
    seeds = sorted({h.seed for h in result.hierarchy})
    panels_b = [("child_atom_cos_parent", "(b) child atom's cosine to the parent direction",
                 "cosine"),
                ("parent_on_child", "(b) parent atom fires on child samples", "share"),
                ("child_on_parent_only", "(b) child atom fires on parent-only samples", "share")]
    width = 0.38
    x = np.arange(len(seeds))
    by = {tied: sorted((h for h in result.hierarchy if h.tied == tied), key=lambda h: h.seed)
          for tied in (True, False)}
    for ax, (attr, title, ylabel) in zip(axes[:3], panels_b, strict=True):
        for off, tied, color in ((-width / 2, True, TIED_COLOR), (width / 2, False, UNTIED_COLOR)):
            rows = by[tied]
            ax.bar(x + off, [getattr(h, attr) for h in rows], width, color=color,
                   label="tied" if tied else "untied")
            if attr == "child_atom_cos_parent":
                for k, h in enumerate(rows):
                    ax.text(x[k] + off, getattr(h, attr) + 0.02, h.outcome, ha="center",
                            va="bottom", fontsize=9, rotation=90)
        ax.set_xticks(x, [f"seed {s}" for s in seeds])
        ax.set_xlabel("SAE initialisation and data stream")
        ax.set_ylabel(ylabel)
        ax.set_ylim(0.0, 1.45)
        ax.set_title(title)
    ax = axes[3]
    w = 0.2
    from matplotlib.patches import Patch

    keys = []
    for k, (tied, own, color, alpha, hatch) in enumerate((
            (True, False, TIED_COLOR, 1.0, None), (True, True, TIED_COLOR, 0.5, ".."),
            (False, False, UNTIED_COLOR, 1.0, None), (False, True, UNTIED_COLOR, 0.5, ".."))):
        rows = by[tied]
        vals = [h.own_nested if own else h.optimal_nested for h in rows]
        cert = [h.own_certified if own else h.optimal_certified for h in rows]
        pos = x + (k - 1.5) * w
        style = {"facecolor": color, "alpha": alpha, "hatch": hatch, "edgecolor": "0.2",
                 "linewidth": 0.5}
        ax.bar(pos, vals, w, **style)
        # a key, not the bars: a bar of 0 nested pairs has no height, its numbers say it
        keys.append(Patch(**style, label=f"{'tied' if tied else 'untied'}, "
                                         f"{'own' if own else 'optimal'} codes"))
        for p, v, c in zip(pos, vals, cert, strict=True):
            ax.text(p, v + 0.03, f"{v}/{c}", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(x, [f"seed {s}" for s in seeds])
    ax.set_xlabel("SAE initialisation and data stream")
    ax.set_ylabel("nested pairs")
    top = max([h.optimal_nested for h in result.hierarchy]
              + [h.own_nested for h in result.hierarchy] + [1])
    ax.set_ylim(0, top + 1.2)
    ax.set_title("(b) checker: nested pairs / certified\nhierarchy steps (numbers above)")
    ax.legend(handles=keys, loc="upper right", ncol=2)
