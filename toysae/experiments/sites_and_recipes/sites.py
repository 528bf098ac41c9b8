"""Study 1 of sites-and-recipes: the 2 x 2 x 2 grid of SAE recipes at the two sites of the
residual toy host.

The host (:class:`toysae.models.ResidualToy`) is trained once, then frozen. At
``resid_pre`` (the generator's ``x``) the SAEs are scored against the exact
features; at ``mlp_post`` against :func:`toysae.host_metrics.mlp_feature_proxy`,
a PROXY. Every recipe of {tied, untied} x {pre-encoder bias, none} x
{resampling, none} is trained ``n_seeds`` times with the local reconstruction
objective; the untied, pre-biased members as one batched ensemble and the others
beside it in the same engine run, so every SAE of a run sees the same batches.

The findings compare recipes and the main effects of the three factors over the
seeds: every compared number is a mean over seeds with its 95% t interval, and a
difference is called only where the two intervals separate (docs/design.md,
"Seeds and intervals"). A main effect compares, per seed, the mean over the four
recipes with the factor on against the four with it off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from toysae import host_metrics, metrics
from toysae._config import JsonMixin
from toysae._validation import shifted_seed
from toysae.experiments.sites_and_recipes.common import (
    TIED_COLOR,
    UNTIED_COLOR,
    interval,
    versus,
)
from toysae.models import ResidualToy, SiteObjective
from toysae.sae import ReLUSAE, ReLUSAEEnsemble, RunOptions, SingleSAE, TiedSAE, train_members
from toysae.stats import Interval, mean_interval, not_resolved, over_seeds, separated

if TYPE_CHECKING:
    from toysae.experiments.sites_and_recipes import Config, Result

SITES = ("resid_pre", "mlp_post")
# (key, tied, decoder_bias, resample); the x-axis order of every figure
RECIPES = tuple((("tied" if t else "untied") + ("+bias" if b else "") + ("+resample" if r else ""),
                 t, b, r) for t in (True, False) for b in (False, True) for r in (False, True))
CUNNINGHAM, ANTHROPIC = "tied", "untied+bias+resample"
EFFECT_METRICS = ("mmcs", "mcc", "dead", "l0", "fvu", "ce_increase")
# (factor, the SiteScore attribute, the attribute's value with the factor on)
FACTORS = (("untied", "tied", False), ("pre-encoder bias", "decoder_bias", True),
           ("resampling", "resample", True))
# What the Anthropic and Cunningham recipes are compared on: (attribute, label, decimals,
# the word for "more" of it)
RECIPE_METRICS = (("mmcs", "MMCS", 3, "higher"), ("dead", "dead latents", 1, "more"),
                  ("l0", "L0", 2, "higher"), ("fvu", "FVU", 3, "higher"),
                  ("ce_increase", "CE increase (nats)", 4, "higher"))


@dataclass(frozen=True)
class SiteStats(JsonMixin):
    """What the activations at a site look like (held-out samples, every entry).

    skew_median : median over coordinates of the per-coordinate skewness.
    frac_positive / frac_negative / frac_zero : shares of entries > 0, < 0, == 0.
    rms_norm : sqrt(mean ||a||^2). hist_edges, hist_counts : histogram of the entries.
    """

    site: str
    width: int
    skew_median: float
    frac_positive: float
    frac_negative: float
    frac_zero: float
    rms_norm: float
    hist_edges: np.ndarray
    hist_counts: np.ndarray


@dataclass(frozen=True)
class SiteScore(JsonMixin):
    """One SAE at one site. ``ground_truth`` is "exact" (resid_pre) or "PROXY" (mlp_post,
    :func:`toysae.host_metrics.mlp_feature_proxy`): mmcs, mcc, functional_* and
    nuisance_* are then against the proxy directions. dead: latents that never fire on
    the ``n_eval`` held-out samples; ce_increase, kl in nats."""

    site: str
    recipe: str
    tied: bool
    decoder_bias: bool
    resample: bool
    seed: int
    ground_truth: str
    mmcs: float
    mcc: float
    functional_mmcs: float
    nuisance_mmcs: float
    functional_recovered: float
    nuisance_recovered: float
    dead: int
    l0: float
    fvu: float
    ce_increase: float
    kl: float
    n_resampled: int


def run_sites(config: Config) -> tuple[str, tuple[SiteStats, ...], tuple[SiteScore, ...]]:
    """Train the host, then the whole grid at every site: (the host's fit message, the site
    statistics per site, the scores per site x recipe x seed)."""
    host = ResidualToy(config.host)
    fit = host.fit()
    held = host.sample(config.n_eval, seed=shifted_seed(config.seed, 20_000_003))
    cache = host.forward_cache(held.inputs)
    stats = tuple(site_stats(site, cache[site].numpy()) for site in SITES)
    proxy = host_metrics.mlp_feature_proxy(host)
    scores = []
    for site, coef in zip(SITES, config.sparsity_coefs, strict=True):
        trained = _train_site(host, site, coef, config)
        scores += _score_site(host, site, trained, held, proxy)
    return fit.message, stats, tuple(scores)


def site_stats(site: str, act: np.ndarray) -> SiteStats:
    """The statistics of activations ``act`` (n, width) at ``site``."""
    a = np.asarray(act, dtype=np.float64)
    c = a - a.mean(axis=0)
    var = (c ** 2).mean(axis=0)
    live = var > 1e-12
    skew = (c[:, live] ** 3).mean(axis=0) / var[live] ** 1.5
    lo, hi = np.quantile(a, [0.0005, 0.9995])
    counts, edges = np.histogram(a, bins=60, range=(min(lo, 0.0), hi))
    return SiteStats(site, a.shape[1], float(np.median(skew)), float((a > 0).mean()),
                     float((a < 0).mean()), float((a == 0).mean()),
                     float(np.sqrt((a ** 2).sum(axis=1).mean())), edges, counts)


def _make(recipe_tied: bool, bias: bool, d: int, width: int, seed: int):
    if recipe_tied:
        return TiedSAE(d, width, decoder_bias=bias, seed=seed)
    return ReLUSAE(d, width, decoder_bias=bias, seed=seed)


def _train_site(host: ResidualToy, site: str, coef: float, config: Config):
    """Train the 8 recipes x n_seeds at ``site``: one engine run per resampling arm."""
    d, width = host.site_width(site), config.width
    seeds = [shifted_seed(config.seed, k) for k in range(config.n_seeds)]
    trained = {}
    for resample in (False, True):
        cfg = config.site_train if resample else config.site_train.replace(resample_every=0)
        # the untied, pre-biased recipe stacks into one batched ensemble; the others
        # (tied, or a fixed zero b_dec) are single stacks in the same run, same batches
        keys = [(True, False), (True, True), (False, False)]
        ens = ReLUSAEEnsemble.from_saes([ReLUSAE(d, width, seed=s) for s in seeds])
        singles = [(t, b, s, _make(t, b, d, width, s)) for t, b in keys for s in seeds]
        stacks = [ens] + [SingleSAE(sae) for *_, sae in singles]
        results = train_members(stacks, [coef] * (len(seeds) + len(singles)), host.data, cfg,
                                RunOptions(objective=SiteObjective(host, site, "local"),
                                           progress=False))
        for s, res in zip(seeds, results[:len(seeds)], strict=True):
            trained[(False, True, resample, s)] = res
        for (t, b, s, _), res in zip(singles, results[len(seeds):], strict=True):
            trained[(t, b, resample, s)] = res
    return trained


def _score_site(host, site, trained, held, proxy) -> list[SiteScore]:
    cfg = host.config
    truth = host.data.features if site == "resid_pre" else proxy
    kind = "exact" if site == "resid_pre" else "PROXY"
    out = []
    for key, tied, bias, resample in RECIPES:
        for (t, b, r, s), res in sorted(trained.items(), key=lambda kv: kv[0][3]):
            if (t, b, r) != (tied, bias, resample):
                continue
            sae = res.sae
            D = sae.dictionary.detach().numpy()
            split = host_metrics.ground_truth_split(truth, D, cfg.functional_features,
                                                    cfg.nuisance_features)
            m = host_metrics.splice_metrics(host, sae, site, held)
            out.append(SiteScore(
                site=site, recipe=key, tied=tied, decoder_bias=bias, resample=resample, seed=s,
                ground_truth=kind, mmcs=metrics.mmcs(truth, D), mcc=metrics.mcc(truth, D),
                functional_mmcs=split["functional_mmcs"], nuisance_mmcs=split["nuisance_mmcs"],
                functional_recovered=split["functional_recovered"],
                nuisance_recovered=split["nuisance_recovered"], dead=sae.width - m["alive"],
                l0=m["l0"], fvu=m["fvu"], ce_increase=m["ce_increase"], kl=m["kl"],
                n_resampled=res.n_resampled))
    return out


def effects(scores) -> dict:
    """Per site, factor and metric of ``EFFECT_METRICS``: ``with`` and ``without``, the
    mean over the four recipes with the factor on (off) at each seed, as its mean over
    seeds and 95% t interval (an :class:`toysae.stats.Interval` as a dict), and
    ``effect``, the difference of their means (the mean over the rest of the grid of
    factor on minus factor off)."""
    out = {}
    for site in SITES:
        rows = [s for s in scores if s.site == site]
        out[site] = {}
        for factor, attr, on_value in FACTORS:
            on = [r for r in rows if getattr(r, attr) == on_value]
            off = [r for r in rows if getattr(r, attr) != on_value]
            out[site][factor] = {}
            for metric in EFFECT_METRICS:
                with_, without = interval(on, metric), interval(off, metric)
                out[site][factor][metric] = {"effect": with_.mean - without.mean,
                                             "with": with_.to_dict(),
                                             "without": without.to_dict()}
    return out


def _effect_words(effect: dict, label: str, digits: int) -> str:
    """One main effect: its size, both intervals, and whether they separate."""
    with_, without = Interval(**effect["with"]), Interval(**effect["without"])
    verdict = "intervals separate" if separated(with_, without) else \
        not_resolved(min(with_.n, without.n))
    return (f"{label} {effect['effect']:+.{digits}f} (with {with_.format(digits)} vs without "
            f"{without.format(digits)}: {verdict})")


def _best(rows, n: int) -> str:
    """The recipe with the highest mean MMCS and whether its lead over the next is
    resolved."""
    ranked = sorted(RECIPES, key=lambda t: -interval(
        [x for x in rows if x.recipe == t[0]], "mmcs").mean)
    (first, *_), (second, *_) = ranked[:2]
    a, b = (interval([x for x in rows if x.recipe == k], "mmcs") for k in (first, second))
    lead = "the intervals separate" if separated(a, b) else not_resolved(n)
    return (f"highest mean MMCS: {first} {a}, its lead over {second} {b} {lead}")


def findings(r: Result) -> list[str]:
    """What the site statistics and the grid show, in words with the numbers; recipes and
    factors compared over the seeds (module docstring)."""
    out = []
    s = {st.site: st for st in r.site_stats}
    a, m = s["resid_pre"], s["mlp_post"]
    out.append(
        f"site statistics: per-coordinate skewness (median) {a.skew_median:.2f} at resid_pre vs "
        f"{m.skew_median:.2f} at mlp_post; entries > 0: {a.frac_positive:.0%} vs "
        f"{m.frac_positive:.0%}, < 0: {a.frac_negative:.0%} vs {m.frac_negative:.0%}, exactly 0: "
        f"{a.frac_zero:.0%} vs {m.frac_zero:.0%}. mlp_post is positive-skewed because most "
        f"entries are exactly zero with a long positive tail, not because most are positive")
    for site in SITES:
        rows = [x for x in r.site_scores if x.site == site]
        n = len({x.seed for x in rows})
        truth = "true features" if site == "resid_pre" else "the PROXY features"
        anthropic = [x for x in rows if x.recipe == ANTHROPIC]
        cunningham = [x for x in rows if x.recipe == CUNNINGHAM]
        recipes = "; ".join(
            versus(label, "Anthropic", interval(anthropic, attr), "Cunningham",
                   interval(cunningham, attr), digits, more)
            for attr, label, digits, more in RECIPE_METRICS)
        eff = r.effects[site]
        main = "; ".join((
            "untying: " + ", ".join(_effect_words(eff["untied"][k], label, d) for k, label, d
                                    in (("mmcs", "MMCS", 3), ("dead", "dead", 1),
                                        ("fvu", "FVU", 3))),
            "pre-encoder bias: " + ", ".join(_effect_words(eff["pre-encoder bias"][k], label, d)
                                             for k, label, d in (("mmcs", "MMCS", 3),
                                                                 ("fvu", "FVU", 3))),
            "resampling: " + ", ".join(_effect_words(eff["resampling"][k], label, d)
                                       for k, label, d in (("mmcs", "MMCS", 3),
                                                           ("dead", "dead", 1)))))
        resampled = versus("latents resampled per run", "tied",
                           interval([x for x in rows if x.tied and x.resample], "n_resampled"),
                           "untied",
                           interval([x for x in rows if not x.tied and x.resample],
                                    "n_resampled"), 1, "more")
        out.append(
            f"{site} (MMCS vs {truth}; {over_seeds(n)}): Anthropic recipe ({ANTHROPIC}) vs "
            f"Cunningham recipe ({CUNNINGHAM}): "
            f"{recipes}. {_best(rows, n)}. Main effects (the mean over the rest of the grid "
            f"with the factor vs without, per seed): {main}. {resampled}")
    return out


# -- figure ---------------------------------------------------------------------------------
def _recipe_code(key: str) -> str:
    """The short tick label of a recipe: T / U (tied, untied), +b (pre-encoder bias), +r
    (resampling), and (C) / (A) for the Cunningham and Anthropic recipes."""
    parts = key.split("+")
    code = ("T" if parts[0] == "tied" else "U") + "".join(
        "+b" if p == "bias" else "+r" for p in parts[1:])
    return code + (" (C)" if key == CUNNINGHAM else " (A)" if key == ANTHROPIC else "")


RECIPE_KEY = ("T tied, U untied, +b pre-encoder (decoder) bias, +r resampling; (C) Cunningham's "
              "recipe, (A) Anthropic's")


def _bars(ax, rows, attr, title, ylabel, zoom: bool = False):
    from toysae.plotting import say

    if not any(getattr(r, attr) for r in rows):  # a row of empty bars shows nothing
        say(ax, f"0 in every run\n(all {len(RECIPES)} recipes, every seed)", title=title)
        return
    x = np.arange(len(RECIPES))
    everything = []
    for k, (key, tied, bias, resample) in enumerate(RECIPES):
        vals = [getattr(r, attr) for r in rows if r.recipe == key]
        everything += vals
        iv = mean_interval(vals)
        ax.bar(k, iv.mean, color=TIED_COLOR if tied else UNTIED_COLOR,
               alpha=1.0 if resample else 0.55, hatch="//" if bias else None,
               edgecolor="0.2", linewidth=0.6)
        if iv.resolved:
            ax.errorbar(k, iv.mean, yerr=[[iv.mean - iv.low], [iv.high - iv.mean]],
                        color="0.1", capsize=3, linewidth=1)
            everything += [iv.low, iv.high]
        ax.plot([k] * len(vals), vals, "k.", ms=4)
    ax.set_xticks(x, [_recipe_code(k) for k, *_ in RECIPES], rotation=90)
    if zoom:  # scores near 1: start the axis just below the lowest value
        ax.set_ylim(max(0.0, min(everything) - 0.05), max(1.0, max(everything)))
    ax.set_title(title)
    ax.set_ylabel(ylabel)


def _histogram(ax, st, site: str) -> None:
    edges, counts = np.asarray(st.hist_edges), np.asarray(st.hist_counts, dtype=float)
    filled = counts > 0  # a log axis cannot show an empty bin: those are not drawn, and said
    ax.bar(edges[:-1][filled], counts[filled] / counts.sum(), width=np.diff(edges)[filled],
           align="edge", color="0.45")
    ax.set_yscale("log")
    ax.set_xlabel(f"activation entry (median skew {st.skew_median:.2f};\n> 0: "
                  f"{st.frac_positive:.0%}, < 0: {st.frac_negative:.0%}, = 0: "
                  f"{st.frac_zero:.0%})")
    ax.set_ylabel("share of entries" + ("\n(empty bins not drawn)" if not filled.all()
                                        else ""))
    ax.set_title(f"{site}: activation entries")


def figure(result: Result):
    """Site statistics and every score of the grid: two rows of three panels per site."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from toysae.plotting import wrap

    cfg = result.config
    fig, axes = plt.subplots(4, 3, figsize=(9.0, 11.8))
    stats = {s.site: s for s in result.site_stats}
    for block, site in enumerate(SITES):
        top, bottom = axes[2 * block], axes[2 * block + 1]
        _histogram(top[0], stats[site], site)
        rows = [s for s in result.site_scores if s.site == site]
        truth = "true features" if site == "resid_pre" else "PROXY features"
        _bars(top[1], rows, "mmcs", f"{site}: MMCS vs\n{truth}", "mean max cosine", zoom=True)
        _bars(top[2], rows, "dead", f"{site}: dead latents\n(of {cfg.width})", "latents")
        _bars(bottom[0], rows, "l0", f"{site}: L0", "active latents per sample")
        _bars(bottom[1], rows, "fvu", f"{site}: FVU at the site", "FVU")
        _bars(bottom[2], rows, "ce_increase", f"{site}: CE increase,\nSAE spliced in",
              "nats per sample")
    handles = [Patch(color=TIED_COLOR, label="tied"), Patch(color=UNTIED_COLOR, label="untied"),
               Patch(facecolor="white", edgecolor="0.2", hatch="//",
                     label="pre-encoder bias"),
               Patch(color="0.4", alpha=0.55, label="no resampling (pale)"),
               Patch(color="0.4", label="resampling (solid)")]
    fig.legend(handles=handles, loc="lower center", ncol=5, bbox_to_anchor=(0.5, 0.018),
               handlelength=1.5, columnspacing=1.0)
    fig.text(0.5, 0.0, RECIPE_KEY, ha="center", va="bottom", fontsize=9)
    fig.suptitle(wrap(
        f"Residual toy: 8 SAE recipes, width {cfg.width}, {cfg.site_train.n_samples:,} "
        f"samples each, at resid_pre (exact truth) and mlp_post (a PROXY); bars: mean of "
        f"{cfg.n_seeds} seed(s), whiskers: 95% t interval, dots: seeds; dead: silent on "
        f"{cfg.n_eval:,} held-out samples; L1 " + ", ".join(
            f"{k} {v:g}" for k, v in result.sparsity_coefs.items()), 110))
    fig.tight_layout(rect=(0, 0.045, 1, 1))
    return fig
