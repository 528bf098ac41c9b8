"""Seed e2e-dictionary-learning (Braun et al. 2024): local vs end-to-end SAEs, with ground truth.

A sparsity sweep of SAEs at ``resid_pre`` of the residual toy, trained three
ways (``toysae.models.SiteObjective``): ``local`` (reconstruct the site),
``e2e`` (KL(p_original || p_patched) of the host's output) and ``e2e_ds``
(e2e plus the MSE of every later site). Each mode's sweep is one batched grid.
Every SAE is spliced into the frozen host and scored on held-out samples: CE
increase (against labels drawn from the teacher), KL, L0, alive latents, FVU
at the site, and the ground truth no paper has: MMCS / MCC / recovered
fraction against the *functional* features (the teacher reads them) and the
*nuisance* features (more variance, no effect on the teacher) separately.

Every sweep runs once per training seed of ``seeds`` (the SAEs' initialisation
and data order; the host, its fit and the held-out samples stay fixed by
``seed``). A table at matched CE increase (log-linear interpolation between
sweep points, in each seed's sweep) of L0, alive, functional MMCS and nuisance
MMCS per mode gives each number as its mean over seeds with a 95% Student-t
interval (``toysae.stats``), and the findings call a difference between two
modes only where their intervals separate ("not resolved at n seeds" otherwise;
docs/design.md, "Seeds and intervals").

Figures: L0 and alive latents against CE increase (the seed's Figure 1, three
curves) and functional vs nuisance recovery against CE increase, each seed's
sweep a faint line and the mean over seeds at each coefficient a solid one. The
same sweep on the TMS host (site ``hidden``, whose true features are exact: the
rows of its W) in a second figure, with the importance-weighted reconstruction
increase in place of the CE increase.

The engine does not divide the penalty by the input width as Braun et al.'s
code does: their coefficient ``c`` is toysae's ``c / d`` (d = 32 here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np

from toysae._config import POSITIVE, Bounds, JsonMixin, Seed, validate_fields
from toysae._io import write_text
from toysae._threads import torch_threads
from toysae._validation import shifted_seed
from toysae.host_metrics import ground_truth_split, splice_metrics
from toysae.metrics import mcc, mmcs
from toysae.models import MODES, ResidualToy, ResidualToyConfig, SiteObjective, TMSConfig, TMSHost
from toysae.sae import TrainConfig, train_grid
from toysae.stats import (
    Interval,
    check_seeds,
    compare,
    mean_interval,
    not_resolved,
    over_seeds,
)

NAME = "e2e-pareto"
DESCRIPTION = ("Local vs end-to-end (KL) vs e2e+downstream SAEs inside a toy model: L0 and alive "
               "latents against CE increase, and which true features (functional or nuisance) "
               "each mode recovers.")

SITE = "resid_pre"
# The TMS host's only site is hidden: e2e_ds has no later site to match there and equals e2e.
TMS_MODES = ("local", "e2e")
Coefs = Annotated[tuple[float, ...], POSITIVE]  # one mode's sparsity_coef sweep
# What the matched-CE table reports, with its words in the findings: (attribute, label,
# what "less" of it is called, decimals shown)
MATCHED = (("l0", "L0", "lower", 2), ("alive", "alive latents", "fewer", 1),
           ("functional_mmcs", "functional MMCS", "lower", 3),
           ("nuisance_mmcs", "nuisance MMCS", "lower", 3))


def _train() -> TrainConfig:
    # No resampling: "alive" then counts what each objective keeps alive by itself
    # (resampling would revive every latent the objective lets die). 4M samples: under
    # e2e, unused latents die slowly (their gradient comes through the host); measured,
    # an e2e SAE at coef 0.16 kept 88 of 96 latents alive after 1M samples, 51 after 4M.
    return TrainConfig(n_samples=4_000_000, batch_size=256, lr=3e-3, log_every=500,
                       resample_every=0)


def _tms_train() -> TrainConfig:
    return TrainConfig(n_samples=1_000_000, batch_size=256, lr=3e-3, log_every=500,
                       resample_every=0)


@dataclass(frozen=True)
class Config(JsonMixin):
    """host : the residual toy. width : latents per SAE. local_coefs, e2e_coefs,
    e2e_ds_coefs : each mode's sparsity_coef sweep. train : the SAEs' training run
    (its ``seed`` is replaced by each of ``seeds``). n_eval : held-out samples for every
    score (alive = fired at least once on them). tms_* : the same sweep on the TMS host.
    seeds : the training seeds every sweep runs over (initialisation and data order;
    full run 3, quick 2), distinct. seed : the hosts, their fits and the held-out
    samples."""

    host: ResidualToyConfig = field(default_factory=ResidualToyConfig)
    width: Annotated[int, Bounds(1)] = 96
    local_coefs: Coefs = (0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32)
    e2e_coefs: Coefs = (0.003, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64)
    e2e_ds_coefs: Coefs = (0.003, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64)
    train: TrainConfig = field(default_factory=_train)
    n_eval: Annotated[int, Bounds(100)] = 20_000
    tms: TMSConfig = field(default_factory=TMSConfig)
    tms_width: Annotated[int, Bounds(1)] = 40
    tms_local_coefs: Coefs = (0.003, 0.01, 0.03, 0.1)
    tms_e2e_coefs: Coefs = (0.001, 0.003, 0.01, 0.03)
    tms_train: TrainConfig = field(default_factory=_tms_train)
    seeds: tuple[int, ...] = (0, 1, 2)
    seed: Seed = 0

    def __post_init__(self):
        validate_fields(self)
        check_seeds(self.seeds)

    def coefs(self, mode: str, tms: bool = False) -> tuple:
        return getattr(self, f"{'tms_' if tms else ''}{mode}_coefs")

    @classmethod
    def quick(cls) -> Config:
        short = TrainConfig(n_samples=60_000, batch_size=256, lr=3e-3, log_every=100,
                            resample_every=0)
        return cls(width=64,
                   # e2e's CE ranges reach local's at every seed only with 0.64
                   local_coefs=(0.02, 0.08, 0.32), e2e_coefs=(0.01, 0.04, 0.16, 0.64),
                   e2e_ds_coefs=(0.01, 0.04, 0.16, 0.64), train=short, n_eval=4000,
                   tms=TMSConfig(train_samples=300_000), tms_width=20,
                   tms_local_coefs=(0.003, 0.03), tms_e2e_coefs=(0.003, 0.03),
                   tms_train=short, seeds=(0, 1))


@dataclass(frozen=True)
class Sweep(JsonMixin):
    """One mode's sweep on one host at one training seed: arrays over its coefficients.
    ``divergence`` is ``host.divergence`` of the spliced SAE, and ``divergence_name``
    says which it is: ``kl`` (nats) on the residual toy, ``weighted_sq_distance`` on the
    TMS host."""

    mode: str
    seed: int
    divergence_name: str
    coefs: tuple
    ce_increase: tuple
    divergence: tuple
    l0: tuple
    alive: tuple
    fvu: tuple
    mmcs: tuple
    mcc: tuple
    functional_mmcs: tuple = ()
    nuisance_mmcs: tuple = ()
    functional_recovered: tuple = ()
    nuisance_recovered: tuple = ()


@dataclass(frozen=True)
class Matched(JsonMixin):
    """One mode at one matched CE increase ``target`` over its seeds: ``values[metric]``
    per seed (interpolated in that seed's sweep, in the order of ``seeds``) and
    ``intervals[metric]`` their mean and 95% t interval (a
    :class:`toysae.stats.Interval` as a dict), for every metric of ``MATCHED``."""

    mode: str
    target: float
    seeds: tuple[int, ...]
    values: dict
    intervals: dict

    def interval(self, metric: str) -> Interval:
        return Interval(**self.intervals[metric])


@dataclass(frozen=True)
class Result(JsonMixin):
    config: Config
    host_fit: str
    tms_fit: str
    n_eval: int
    sweeps: tuple  # of Sweep, residual toy, per mode x seed (modes outer)
    tms_sweeps: tuple  # of Sweep, TMS host, the same order
    matched: tuple  # of Matched, per target x mode (targets outer)
    findings: tuple  # sentences: what the toy shows


def _sweep(host: ResidualToy, mode: str, seed: int, config: Config, held) -> Sweep:
    grid = train_grid(host.data, config.coefs(mode), [config.width],
                      config.train.replace(seed=seed),
                      objective=SiteObjective(host, SITE, mode), d=host.site_width(SITE),
                      progress=False, seed=seed)
    split = (config.host.functional_features, config.host.nuisance_features)
    return _score(grid, host, SITE, mode, seed, held, host.data.features, split)


def _score(grid, host, site, mode, seed, held, truth, split) -> Sweep:
    cols: dict[str, list] = {}
    for member in grid.members:
        m = splice_metrics(host, member.sae, site, held)
        D = member.sae.dictionary.numpy()
        row = {"ce_increase": m["ce_increase"], "divergence": m[host.divergence_name],
               "l0": m["l0"], "alive": m["alive"], "fvu": m["fvu"], "mmcs": mmcs(truth, D),
               "mcc": mcc(truth, D)}
        if split is not None:
            parts = ground_truth_split(truth, D, *split)
            row.update({k: parts[k] for k in ("functional_mmcs", "nuisance_mmcs",
                                              "functional_recovered", "nuisance_recovered")})
        for key, value in row.items():
            cols.setdefault(key, []).append(float(value))
    return Sweep(mode=mode, seed=seed, divergence_name=host.divergence_name,
                 coefs=tuple(grid.sparsity_coefs), **{k: tuple(v) for k, v in cols.items()})


def _tms_sweep(host: TMSHost, mode: str, seed: int, config: Config, data, held) -> Sweep:
    grid = train_grid(data, config.coefs(mode, tms=True), [config.tms_width],
                      config.tms_train.replace(seed=seed),
                      objective=SiteObjective(host, "hidden", mode), d=host.site_width("hidden"),
                      progress=False, seed=seed)
    return _score(grid, host, "hidden", mode, seed, held, host.features.numpy(), None)


def interpolate_at(ce: np.ndarray, values: np.ndarray, target: float) -> float:
    """``values`` at CE increase ``target``, linear in log CE between the bracketing sweep
    points (NaN outside the sweep's range)."""
    order = np.argsort(ce)
    x, y = np.log(np.clip(ce[order], 1e-12, None)), values[order]
    t = np.log(max(target, 1e-12))
    if t < x[0] or t > x[-1]:
        return float("nan")
    return float(np.interp(t, x, y))


def at_matched_ce(sweeps, n_targets: int = 3) -> tuple[Matched, ...]:
    """Per target x mode, the ``MATCHED`` metrics interpolated in each seed's sweep.

    The targets are spaced geometrically inside the CE range that every sweep (each
    mode at each seed) covers, so no seed's value is extrapolated; none where those
    ranges do not overlap."""
    low = max(max(min(s.ce_increase) for s in sweeps), 1e-6)
    high = min(max(s.ce_increase) for s in sweeps)
    if not low < high:
        return ()
    modes = list(dict.fromkeys(s.mode for s in sweeps))
    rows = []
    for target in np.geomspace(low, high, n_targets + 2)[1:-1]:
        for mode in modes:
            runs = [s for s in sweeps if s.mode == mode]
            values = {metric: tuple(interpolate_at(np.array(s.ce_increase),
                                                   np.array(getattr(s, metric)), target)
                                    for s in runs)
                      for metric, *_ in MATCHED}
            rows.append(Matched(mode=mode, target=float(target),
                                seeds=tuple(s.seed for s in runs), values=values,
                                intervals={m: mean_interval(v).to_dict()
                                           for m, v in values.items()}))
    return tuple(rows)


def _verdict(label: str, less: str, digits: int, a: str, ia: Interval, b: str,
             ib: Interval) -> str:
    """``label`` of modes ``a`` vs ``b``: which has less of it where the intervals separate
    ("not resolved at n seeds" otherwise), then both intervals."""
    both = f"({a} {ia.format(digits)} vs {b} {ib.format(digits)})"
    order = compare(ia, ib)
    if order == 0:
        return f"{label} {not_resolved(min(ia.n, ib.n))} {both}"
    low, high = (a, b) if order < 0 else (b, a)
    return f"{low} has {less} {label} than {high} {both}"


def compare_modes(matched) -> tuple[str, ...]:
    """At each matched target, one sentence per pair of modes (local/e2e, local/e2e_ds,
    e2e/e2e_ds, where both were run): every ``MATCHED`` metric with its intervals, a
    difference called only where they separate."""
    out = []
    by_target: dict[float, dict[str, Matched]] = {}
    for row in matched:
        by_target.setdefault(row.target, {})[row.mode] = row
    for target, rows in by_target.items():
        present = [m for m in MODES if m in rows]
        for i, a in enumerate(present):
            for b in present[i + 1:]:
                n = min(len(rows[a].seeds), len(rows[b].seeds))
                parts = [_verdict(label, less, digits, a, rows[a].interval(metric), b,
                                  rows[b].interval(metric))
                         for metric, label, less, digits in MATCHED]
                out.append(f"at CE increase {target:.3g} nats, {a} vs {b} ({over_seeds(n)}): "
                           + "; ".join(parts))
    return tuple(out)


def best_functional(sweeps) -> tuple[str, ...]:
    """Per mode, the coefficient whose mean functional MMCS over seeds is highest, with the
    intervals there (a sweep's seeds share its coefficients)."""
    out = []
    for mode in dict.fromkeys(s.mode for s in sweeps):
        runs = [s for s in sweeps if s.mode == mode and s.functional_mmcs]
        if not runs:
            continue
        fm = np.array([s.functional_mmcs for s in runs])  # (seeds, coefs)
        best = int(np.argmax(fm.mean(axis=0)))

        def at(attr, runs=runs, best=best):
            return mean_interval([getattr(s, attr)[best] for s in runs])
        out.append(f"{mode}: best mean functional MMCS {at('functional_mmcs')} at "
                   f"sparsity_coef {runs[0].coefs[best]:g} (nuisance {at('nuisance_mmcs')}, "
                   f"CE increase {at('ce_increase').format(4)}; {len(runs)} "
                   f"seed{'' if len(runs) == 1 else 's'})")
    return tuple(out)


def run(config: Config) -> Result:
    with torch_threads(1):  # toy-sized matmuls: one thread is fastest (toysae._threads)
        host = ResidualToy(config.host)
        host_fit = host.fit().message
        held = host.sample(config.n_eval, seed=shifted_seed(config.seed, 10_007))
        sweeps = tuple(_sweep(host, mode, seed, config, held)
                       for mode in MODES for seed in config.seeds)
        tms = TMSHost(config.tms)
        tms_fit = tms.fit().message
        tms_held = tms.sample(config.n_eval, seed=shifted_seed(config.seed, 10_007))
        tms_data = tms.sample(config.tms_train.n_samples,
                              seed=shifted_seed(config.seed, 1)).inputs.numpy()
        tms_sweeps = tuple(_tms_sweep(tms, mode, seed, config, tms_data, tms_held)
                           for mode in TMS_MODES for seed in config.seeds)
    matched = at_matched_ce(sweeps)
    findings = compare_modes(matched) + best_functional(sweeps) + (
        "TMS: its only site is hidden, so e2e_ds has no later site to match (it would equal "
        "e2e); only local and e2e are swept",)
    return Result(config, host_fit, tms_fit, config.n_eval, sweeps, tms_sweeps, matched,
                  findings)


_COLORS = {"local": "tab:blue", "e2e": "tab:red", "e2e_ds": "tab:green"}


def _curve(runs, attr: str) -> tuple[np.ndarray, np.ndarray]:
    """The mean over seeds at each coefficient: (CE increase clipped to >= 1e-6, ``attr``),
    in the order of the mean CE increase."""
    ce = np.clip(np.array([s.ce_increase for s in runs]), 1e-6, None).mean(axis=0)
    y = np.array([getattr(s, attr) for s in runs]).mean(axis=0)
    order = np.argsort(ce)
    return ce[order], y[order]


def _draw(ax, runs, attr: str, color: str, label: str, marker: str = "o",
          linestyle: str = "-") -> None:
    """Each seed's sweep faint, the mean over seeds solid."""
    for s in runs:
        ce = np.clip(np.array(s.ce_increase), 1e-6, None)
        order = np.argsort(ce)
        ax.plot(ce[order], np.array(getattr(s, attr))[order], color=color, alpha=0.3,
                linewidth=0.8, linestyle=linestyle)
    ax.plot(*_curve(runs, attr), color=color, marker=marker, linestyle=linestyle, label=label)


def _panels(axes, sweeps, x_label: str, width: int, n_eval: int, truth_title: str,
            window: tuple[float, ...] = ()) -> list:
    """L0, alive latents and recovery against the output cost, one row of three panels; the
    alive panel says so in words when every SAE keeps every latent alive (a flat line
    shows nothing). ``window``: the matched-CE targets, shaded with their span. Returns the
    (handle, label) pairs for the figure's legend."""
    from toysae.plotting import log_ticks, say

    every_alive = all(a == width for s in sweeps for a in s.alive)
    drawn = [axes[0], axes[2]] if every_alive else list(axes)
    for mode in dict.fromkeys(s.mode for s in sweeps):
        runs = [s for s in sweeps if s.mode == mode]
        color, label = _COLORS[mode], f"{mode} (mean of {len(runs)} seeds)"
        _draw(axes[0], runs, "l0", color, label)
        if not every_alive:
            _draw(axes[1], runs, "alive", color, label)
        if runs[0].functional_mmcs:
            _draw(axes[2], runs, "functional_mmcs", color, label)
            _draw(axes[2], runs, "nuisance_mmcs", color, f"{mode}, nuisance features",
                  marker="x", linestyle="--")
        else:
            _draw(axes[2], runs, "mmcs", color, label)
    axes[0].set_ylabel("L0 (active latents)")
    axes[0].set_title("sparsity vs output cost")
    axes[2].set_ylabel("MMCS with the true features")
    axes[2].set_title(truth_title)
    if every_alive:
        say(axes[1], f"all {width} latents alive\nin every SAE\n(each fires on some of\n"
                     f"{n_eval:,} held-out samples)", title="dictionary elements used")
    else:
        axes[1].set_ylabel(f"alive latents (of {width})")
        axes[1].set_title("dictionary elements used")
    for ax in drawn:
        if window:
            ax.axvspan(min(window), max(window), color="0.88", zorder=0,
                       label="matched-CE targets (table)")
            for t in window:
                ax.axvline(t, color="0.6", lw=0.8, ls=":", zorder=0)
        ax.set_xscale("log")
        log_ticks(ax.xaxis)
        ax.set_xlabel(x_label)
    pairs = dict(zip(*reversed(axes[2].get_legend_handles_labels()), strict=True))
    pairs.update(zip(*reversed(axes[0].get_legend_handles_labels()), strict=True))
    return [(h, label) for label, h in pairs.items()]


def _pareto_figure(sweeps, title: str, x_label: str, width: int, n_eval: int,
                   truth_title: str, window: tuple = ()):
    import matplotlib.pyplot as plt

    from toysae.plotting import wrap

    fig, axes = plt.subplots(1, 3, figsize=(9.0, 4.3))
    pairs = _panels(axes, sweeps, x_label, width, n_eval, truth_title, window)
    fig.legend([h for h, _ in pairs], [label for _, label in pairs], loc="lower center",
               ncol=min(3, len(pairs)), bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(wrap(title, 95))
    rows = -(-len(pairs) // 3)
    fig.tight_layout(rect=(0, 0.045 + 0.055 * rows, 1, 1))
    return fig


def save(result: Result, out_dir: Path) -> list[Path]:
    from toysae.plotting import save_figure, style

    style()
    out_dir = Path(out_dir)
    cfg = result.config
    n = len(cfg.seeds)
    window = tuple(sorted({row.target for row in result.matched}))
    fig = _pareto_figure(
        result.sweeps,
        f"Residual toy, SAEs at {SITE}: local vs e2e vs e2e+downstream "
        f"({len(cfg.host.functional_features)} functional, "
        f"{len(cfg.host.nuisance_features)} nuisance features, width {cfg.width}); faint: "
        f"each of {n} training seeds, solid: their mean at each coefficient",
        "CE increase (nats; <= 1e-6 at 1e-6)", cfg.width, result.n_eval,
        "functional (o) vs nuisance (x) features", window)
    paths = [save_figure(fig, out_dir / f"{NAME}.png")]
    fig = _pareto_figure(
        result.tms_sweeps,
        f"TMS host ({cfg.tms.n_features} features in {cfg.tms.hidden} dimensions), SAEs at "
        f"hidden (width {cfg.tms_width}): local vs e2e (no later site, so no e2e_ds); faint: "
        f"each of {n} training seeds, solid: their mean",
        "weighted loss increase", cfg.tms_width, result.n_eval,
        "true features: the rows of W")
    paths.append(save_figure(fig, out_dir / f"{NAME}-tms.png"))
    paths.append(write_text(out_dir / f"{NAME}.md", table(result)))
    return paths


def matched_table(matched) -> str:
    """The rows of ``matched`` (:class:`Matched`) as a markdown table: each cell the mean
    over seeds and its 95% t interval."""
    lines = ["| CE increase (nats) | mode | " + " | ".join(m[1] for m in MATCHED) + " |",
             "|---|---|" + "---|" * len(MATCHED)]
    for row in matched:
        cells = [row.interval(m).format(digits) for m, _, _, digits in MATCHED]
        lines.append(f"| {row.target:.3g} | {row.mode} | " + " | ".join(cells) + " |")
    if not matched:
        lines.append("| (the sweeps' CE ranges do not overlap) |" + " |" * (len(MATCHED) + 1))
    return "\n".join(lines)


def tms_table(sweeps) -> str:
    """The TMS sweeps (:class:`Sweep`) as a markdown table: per mode and coefficient the
    mean over seeds of the weighted loss increase, L0, alive latents and MMCS (the TMS host
    has no matched-loss interpolation: its modes' loss ranges barely overlap)."""
    lines = ["| mode | sparsity_coef | weighted loss increase | L0 | alive latents | MMCS | "
             "seeds |", "|---|---|---|---|---|---|---|"]
    for mode in dict.fromkeys(s.mode for s in sweeps):
        runs = [s for s in sweeps if s.mode == mode]
        for i, coef in enumerate(runs[0].coefs):
            mean = {k: float(np.mean([getattr(s, k)[i] for s in runs]))
                    for k in ("ce_increase", "l0", "alive", "mmcs")}
            lines.append(f"| {mode} | {coef:g} | {mean['ce_increase']:.4f} | {mean['l0']:.2f} | "
                         f"{mean['alive']:.1f} | {mean['mmcs']:.3f} | {len(runs)} |")
    return "\n".join(lines)


def _stored(data: dict) -> tuple[tuple, tuple]:
    """(matched rows, TMS sweeps) of a stored result (``NAME.json``, parsed)."""
    def plain(d: dict) -> dict:
        return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}

    return (tuple(Matched(**plain(m)) for m in data["matched"]),
            tuple(Sweep(**plain(s)) for s in data["tms_sweeps"]))


def report_tables(data: dict) -> dict[str, str]:
    """The tables ``toysae report`` renders from a stored result (``NAME.json``, parsed):
    ``matched`` (:func:`matched_table`), ``tms`` (:func:`tms_table`) and ``findings``
    (the findings as a list)."""
    matched, tms = _stored(data)
    return {"matched": matched_table(matched), "tms": tms_table(tms),
            "findings": "\n".join(f"- {f}" for f in data["findings"])}


def caption(data: dict) -> str:
    """One line of finding for the figure: local against e2e at each matched CE increase."""
    said = [f for f in data["findings"] if ", local vs e2e (" in f]
    return " ".join(said[:1]) or data["findings"][0]


def table(result: Result) -> str:
    """The matched-CE table in markdown, the TMS sweeps and the findings."""
    seeds = list(result.config.seeds)
    lines = [f"# {NAME}: at matched CE increase (interpolated, log-linear in CE)", "",
             f"Training seeds {seeds}; each cell the mean over seeds [95% Student-t "
             "interval] (one seed: no interval).", "", matched_table(result.matched), "",
             "## TMS host (means over the seeds)", "", tms_table(result.tms_sweeps),
             "", *[f"- {f}" for f in result.findings], ""]
    return "\n".join(lines)
