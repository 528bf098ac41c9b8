"""Sites and recipes: Cunningham et al. vs Anthropic, one difference at a time, on a host toy.

The seed (``anthropic-vs-cunningham-comparison``) sets the two first SAE papers
side by side: Cunningham et al. trained on the residual stream (linear,
signed) with tied weights, no pre-encoder bias and no resampling; Anthropic
trained on MLP activations ("just activated, so positive-skewed") with untied
weights, a pre-encoder bias and neuron resampling. Its comment thread asks
whether untied encoders are better because they are more expressive or worse
because they exploit nonlinearity, and suggests that an untied encoder can
*denoise* mutually exclusive, non-orthogonal features.

1. **Sites x recipes.** The residual toy host (:class:`toysae.models.ResidualToy`,
   trained once, then frozen) has the two sites: ``resid_pre`` (the generator's
   ``x``: exact ground truth, split into functional and nuisance features) and
   ``mlp_post`` (``ReLU(x W_in + b_in)``: scored against
   :func:`toysae.host_metrics.mlp_feature_proxy`, a PROXY, never a truth). At
   each site the full 2 x 2 x 2 grid {tied, untied} x {pre-encoder bias, none}
   x {resampling, none} is trained with the local reconstruction objective,
   ``n_seeds`` initialisations each (the untied, pre-biased members as one
   batched ensemble, the others beside it in the same engine run, so every
   SAE of a run sees the same batches). Scores: MMCS/MCC (truth or proxy),
   dead latents, L0, FVU, CE increase and KL with the SAE spliced in, and the
   site statistics that make MLP activations positive-skewed.
2. **Panel (a), exclusive pairs.** No host: features in pairs that never fire
   together, each pair at a set cosine ``c`` in its own plane; tied vs untied
   SAEs (no decoder bias in either, so tying is the only difference). A tied
   latent reads along its own atom, so its exclusive partner leaks ``c x`` into
   it; an untied encoder can subtract the partner. Measured: how often a latent
   fires while only its partner is on, the error of the matched codes, MMCS,
   and the amortisation gap to optimal codes for the SAE's own dictionary.
3. **Panel (b), a parent/child hierarchy** (``hierarchy-absorption``'s data):
   tied vs untied, and what the checkers say: ``check_sae`` (the dictionary with
   optimal codes) and ``hierarchy_certificate`` on the SAE's own codes count the
   nested pairs and the certified descent steps.

Every finding that compares recipes, factors or tied vs untied does it over the
seeds (``n_seeds``, ``panel_seeds``, ``hierarchy_seeds``): means with 95% t
intervals, a difference called only where the intervals separate, "not resolved
at n seeds" otherwise (docs/design.md, "Seeds and intervals").

Each study is a module of this package: ``sites.py`` (1), ``exclusive.py`` (2),
``hierarchy.py`` (3), ``common.py`` what the panels share; this module holds the
experiment's outside (``Config``, ``Result``, ``run``, ``save``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from toysae._config import POSITIVE, Bounds, JsonMixin, Seed, validate_fields
from toysae._threads import torch_threads
from toysae.data import SyntheticConfig
from toysae.experiments.sites_and_recipes import exclusive, hierarchy, sites
from toysae.experiments.sites_and_recipes.common import TIED_COLOR, UNTIED_COLOR
from toysae.experiments.sites_and_recipes.hierarchy import CHILD, PARENT
from toysae.experiments.sites_and_recipes.sites import SITES
from toysae.models import ResidualToyConfig
from toysae.sae import TrainConfig
from toysae.stats import mean_interval

NAME = "sites-and-recipes"
DESCRIPTION = ("Tied/untied x pre-encoder bias x resampling SAEs at resid_pre (exact truth) and "
               "mlp_post (proxy) of the residual toy; can an untied encoder denoise exclusive "
               "features; does tying change absorption.")


def _train(n_samples: int = 1_000_000) -> TrainConfig:
    return TrainConfig(n_samples=n_samples, batch_size=256, lr=3e-3, resample_every=250,
                       log_every=200)


def _exclusive_data() -> SyntheticConfig:
    return SyntheticConfig(d=8, n_features=8, mean_active=2.0, decay=1.0, correlation="none",
                           exclusive_groups=((0, 1), (2, 3), (4, 5), (6, 7)), orthogonal=True,
                           seed=0)


def _hierarchy_data() -> SyntheticConfig:
    return SyntheticConfig(d=8, n_features=4, mean_active=2.0, decay=1.0, correlation="none",
                           hierarchy=((PARENT, CHILD),), orthogonal=True, seed=0)


@dataclass(frozen=True)
class Config(JsonMixin):
    """Defaults: the full experiment. ``Config.quick()`` is the small version.

    host : the residual toy (trained once by ``run``).
    width : latents of every site SAE (both sites; the toy has 48 features).
    sparsity_coefs : the L1 coefficient at each site of ``SITES``; mlp_post's
        activations are ~1.6x larger in norm, so its coefficient is larger.
    site_train : the training run at the sites; its ``resample_every`` is the
        resampling arm (the other arm sets it to 0).
    n_seeds : SAE initialisations per recipe (seeds ``seed, seed + 1, ...``; the
        data stream is the same for all, ``site_train.seed``). Counts rather than
        lists of seeds, so no seed can repeat; the findings' intervals are over them
        (docs/design.md, "Seeds and intervals"): 3 in the full run, 1-2 in the quick.
    n_eval : held-out host samples for every site score.
    exclusive_data : firing of panel (a): orthonormal features in exclusive pairs;
        feature ``j`` of each pair ``(i, j)`` is then turned toward ``i`` to cosine ``c``.
    exclusive_cosines : the cosines ``c`` of panel (a).
    exclusive_lam, exclusive_train : its L1 coefficient and training run.
    hierarchy_data, hierarchy_lam, hierarchy_train : panel (b); active
        magnitudes are moved to [0.5, 1.5) as in ``hierarchy-absorption``.
    panel_seeds, hierarchy_seeds : SAE initialisations (and data streams) per
        setting of panel (a) and for panel (b).
    n_check : held-out samples for the panel scores and the checkers.
    """

    host: ResidualToyConfig = field(default_factory=ResidualToyConfig)
    width: Annotated[int, Bounds(1)] = 96
    sparsity_coefs: Annotated[tuple[float, ...], Bounds(0.0)] = (0.1, 0.15)
    site_train: TrainConfig = field(default_factory=_train)
    n_seeds: Annotated[int, Bounds(1)] = 3
    n_eval: Annotated[int, Bounds(100)] = 20_000
    exclusive_data: SyntheticConfig = field(default_factory=_exclusive_data)
    exclusive_cosines: Annotated[tuple[float, ...],
                                 Bounds(0.0, 1.0, max_inclusive=False)] = (0.0, 0.3, 0.6, 0.8)
    exclusive_lam: Annotated[float, POSITIVE] = 0.05
    exclusive_train: TrainConfig = field(default_factory=_train)
    hierarchy_data: SyntheticConfig = field(default_factory=_hierarchy_data)
    hierarchy_lam: Annotated[float, POSITIVE] = 0.1
    hierarchy_train: TrainConfig = field(default_factory=lambda: _train(400_000))
    panel_seeds: Annotated[int, Bounds(1)] = 3
    hierarchy_seeds: Annotated[int, Bounds(1)] = 5
    n_check: Annotated[int, Bounds(100)] = 4000
    seed: Seed = 0

    def __post_init__(self):
        validate_fields(self)
        for name in ("site_train", "exclusive_train", "hierarchy_train"):
            if getattr(self, name).dead_latent_coef:
                raise ValueError(f"{name}.dead_latent_coef must be unset or 0: the batched "
                                 "ensemble has no dead-latent loss")
        if self.site_train.resample_every == 0:
            raise ValueError("site_train.resample_every must be > 0: it is the resampling arm "
                             "of the grid")
        if len(self.sparsity_coefs) != len(SITES):
            raise ValueError(f"sparsity_coefs must have one entry per site {SITES}, got "
                             f"{self.sparsity_coefs}")
        ex = self.exclusive_data
        if not ex.orthogonal or not ex.exclusive_groups or ex.hierarchy:
            raise ValueError("exclusive_data must have orthogonal=True, exclusive_groups and no "
                             "hierarchy (the pairs are built from orthonormal features)")
        members = [i for g in ex.exclusive_groups for i in g]
        if any(len(g) != 2 for g in ex.exclusive_groups) or len(set(members)) != len(members):
            raise ValueError(f"exclusive_data.exclusive_groups must be disjoint pairs, got "
                             f"{ex.exclusive_groups}")
        hi = self.hierarchy_data
        if (PARENT, CHILD) not in hi.hierarchy or not hi.orthogonal:
            raise ValueError(f"hierarchy_data must be orthogonal and contain ({PARENT}, {CHILD}) "
                             f"in its hierarchy, got orthogonal={hi.orthogonal}, hierarchy="
                             f"{hi.hierarchy}")

    @classmethod
    def quick(cls) -> Config:
        site = TrainConfig(n_samples=256 * 600, batch_size=256, lr=3e-3, resample_every=100,
                           dead_window=100, log_every=100)
        panel = TrainConfig(n_samples=256 * 1000, batch_size=256, lr=1e-2, log_every=200)
        return cls(site_train=site, n_seeds=1, n_eval=8000, exclusive_cosines=(0.0, 0.3, 0.6),
                   exclusive_train=panel,
                   hierarchy_train=panel.replace(n_samples=256 * 600), panel_seeds=1,
                   hierarchy_seeds=2, n_check=2000)


@dataclass(frozen=True)
class Result(JsonMixin):
    config: Config
    host_fit: str
    sparsity_coefs: dict  # site -> L1 coefficient
    site_stats: tuple  # SiteStats per site
    site_scores: tuple  # SiteScore per site x recipe x seed
    effects: dict  # site -> factor -> metric -> {effect, with, without} (sites.effects)
    exclusive: tuple  # ExclusiveScore per cos x {tied, untied} x seed
    hierarchy: tuple  # HierarchyScore per {tied, untied} x seed
    findings: tuple  # what the toy shows, in words with the numbers
    wall_time: float


def run(config: Config) -> Result:
    with torch_threads(1):
        return _run(config)


def _run(config: Config) -> Result:
    start = time.perf_counter()
    host_fit, stats, scores = sites.run_sites(config)
    exclusive_scores = exclusive.run_exclusive(config)
    hierarchy_scores = hierarchy.run_hierarchy(config)
    result = Result(config=config, host_fit=host_fit,
                    sparsity_coefs=dict(zip(SITES, config.sparsity_coefs, strict=True)),
                    site_stats=stats, site_scores=scores, effects=sites.effects(scores),
                    exclusive=tuple(exclusive_scores), hierarchy=tuple(hierarchy_scores),
                    findings=(), wall_time=0.0)
    findings = sites.findings(result) + exclusive.findings(result) + hierarchy.findings(result)
    return dataclasses.replace(result, findings=tuple(findings),
                               wall_time=time.perf_counter() - start)


def _panel_figure(result: Result):
    """Panels (a) and (b), two rows of two panels each."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from toysae.plotting import wrap

    cfg = result.config
    fig, axes = plt.subplots(4, 2, figsize=(9.0, 11.6))
    exclusive.draw(axes.flat[:4], result)
    hierarchy.draw(axes.flat[4:], result)
    fig.legend(handles=[Patch(color=TIED_COLOR, label="tied"),
                        Patch(color=UNTIED_COLOR, label="untied")],
               loc="lower center", ncol=2, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(wrap(
        f"Tied vs untied SAEs without a host (no decoder bias): (a) "
        f"{cfg.exclusive_data.n_features} features in exclusive pairs at a set cosine, L1 "
        f"{cfg.exclusive_lam:g}, lines: means over {cfg.panel_seeds} seed(s), whiskers: 95% t "
        f"intervals, dots: seeds; (b) a parent/child hierarchy, L1 {cfg.hierarchy_lam:g}, "
        f"checked on {cfg.n_check:,} held-out samples with optimal codes (check_sae) and "
        f"the SAE's own codes (hierarchy_certificate)", 105))
    fig.tight_layout(rect=(0, 0.025, 1, 1))
    return fig


def save(result: Result, out_dir: Path) -> list[Path]:
    from toysae.plotting import save_figure, style

    style()
    out_dir = Path(out_dir)
    return [save_figure(sites.figure(result), out_dir / f"{NAME}.png"),
            save_figure(_panel_figure(result), out_dir / f"{NAME}-panels.png")]


def recipe_table(scores) -> str:
    """The recipe grid per site (``site_scores`` of a stored result, parsed) as a markdown
    table: each cell the mean over the seeds [95% t interval]."""
    metrics = (("mmcs", "MMCS", 3), ("dead", "dead latents", 1), ("l0", "L0", 2),
               ("fvu", "FVU", 3), ("n_resampled", "latents resampled", 1))
    lines = ["| site | recipe | " + " | ".join(m[1] for m in metrics) + " | seeds |",
             "|---|---|" + "---|" * (len(metrics) + 1)]
    for site in dict.fromkeys(s["site"] for s in scores):
        for recipe in dict.fromkeys(s["recipe"] for s in scores if s["site"] == site):
            rows = [s for s in scores if s["site"] == site and s["recipe"] == recipe]
            cells = [mean_interval([r[key] for r in rows]).format(digits)
                     for key, _, digits in metrics]
            lines.append(f"| {site} | {recipe} | " + " | ".join(cells) + f" | {len(rows)} |")
    return "\n".join(lines)


def hierarchy_table(scores) -> str:
    """The parent/child panel (``hierarchy`` of a stored result, parsed) per SAE: its
    outcome, the child atom's cosines and the checker's nested pairs / certified steps."""
    lines = ["| encoder | seed | outcome | child atom cos parent | child atom cos child | "
             "nested / certified (optimal codes) | nested / certified (own codes) |",
             "|---|---|---|---|---|---|---|"]
    for h in scores:
        lines.append(f"| {'tied' if h['tied'] else 'untied'} | {h['seed']} | {h['outcome']} | "
                     f"{h['child_atom_cos_parent']:.2f} | {h['child_atom_cos_child']:.2f} | "
                     f"{h['optimal_nested']} / {h['optimal_certified']} | "
                     f"{h['own_nested']} / {h['own_certified']} |")
    return "\n".join(lines)


def report_tables(data: dict) -> dict[str, str]:
    """The tables ``toysae report`` renders from a stored result (``NAME.json``, parsed):
    ``recipes`` (:func:`recipe_table`), ``hierarchy`` (:func:`hierarchy_table`) and
    ``findings``, the findings as a list (each with its seed count and intervals)."""
    return {"recipes": recipe_table(data["site_scores"]),
            "hierarchy": hierarchy_table(data["hierarchy"]),
            "findings": "\n".join(f"- {f}" for f in data["findings"])}


def caption(data: dict) -> str:
    """One line for the figure: the two recipes at the residual stream."""
    head = next((f for f in data["findings"] if f.startswith("resid_pre")), data["findings"][0])
    return head.split(". highest mean")[0] + "."
