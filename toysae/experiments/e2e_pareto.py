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

Figures: L0 and alive latents against CE increase (the seed's Figure 1, three
curves) and functional vs nuisance recovery against CE increase; a table at
matched CE increase (log-linear interpolation between sweep points) of L0,
alive, functional MMCS and nuisance MMCS per mode. The same sweep on the TMS
host (site ``hidden``, whose true features are exact: the rows of its W) in a
second figure, with the importance-weighted reconstruction increase in place
of the CE increase.

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

NAME = "e2e-pareto"
DESCRIPTION = ("Local vs end-to-end (KL) vs e2e+downstream SAEs inside a toy model: L0 and alive "
               "latents against CE increase, and which true features (functional or nuisance) "
               "each mode recovers.")

SITE = "resid_pre"
# The TMS host's only site is hidden: e2e_ds has no later site to match there and equals e2e.
TMS_MODES = ("local", "e2e")
Coefs = Annotated[tuple[float, ...], POSITIVE]  # one mode's sparsity_coef sweep


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
    e2e_ds_coefs : each mode's sparsity_coef sweep. train : the SAEs' training run.
    n_eval : held-out samples for every score (alive = fired at least once on them).
    tms_* : the same sweep on the TMS host."""

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
    seed: Seed = 0

    def __post_init__(self):
        validate_fields(self)

    def coefs(self, mode: str, tms: bool = False) -> tuple:
        return getattr(self, f"{'tms_' if tms else ''}{mode}_coefs")

    @classmethod
    def quick(cls) -> Config:
        short = TrainConfig(n_samples=60_000, batch_size=256, lr=3e-3, log_every=100,
                            resample_every=0)
        return cls(width=64,
                   local_coefs=(0.02, 0.08, 0.32), e2e_coefs=(0.01, 0.04, 0.16),
                   e2e_ds_coefs=(0.01, 0.04, 0.16), train=short, n_eval=4000,
                   tms=TMSConfig(train_samples=300_000), tms_width=20,
                   tms_local_coefs=(0.003, 0.03), tms_e2e_coefs=(0.003, 0.03),
                   tms_train=short)


@dataclass(frozen=True)
class Sweep(JsonMixin):
    """One mode's sweep on one host: arrays over its coefficients. ``divergence`` is
    ``host.divergence`` of the spliced SAE, and ``divergence_name`` says which it is:
    ``kl`` (nats) on the residual toy, ``weighted_sq_distance`` on the TMS host."""

    mode: str
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
class Result(JsonMixin):
    config: Config
    host_fit: str
    tms_fit: str
    n_eval: int
    sweeps: tuple  # of Sweep, residual toy, one per mode
    tms_sweeps: tuple  # of Sweep, TMS host
    matched: tuple  # rows (mode, target CE increase, l0, alive, functional_mmcs, nuisance_mmcs)
    findings: tuple  # sentences: what the toy shows


def _sweep(host: ResidualToy, mode: str, config: Config, held) -> Sweep:
    grid = train_grid(host.data, config.coefs(mode), [config.width], config.train,
                      objective=SiteObjective(host, SITE, mode), d=host.site_width(SITE),
                      progress=False, seed=config.seed)
    split = (config.host.functional_features, config.host.nuisance_features)
    return _score(grid, host, SITE, mode, held, host.data.features, split)


def _score(grid, host, site, mode, held, truth, split) -> Sweep:
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
    return Sweep(mode=mode, divergence_name=host.divergence_name,
                 coefs=tuple(grid.sparsity_coefs), **{k: tuple(v) for k, v in cols.items()})


def _tms_sweep(host: TMSHost, mode: str, config: Config, held) -> Sweep:
    data = host.sample(config.tms_train.n_samples, seed=shifted_seed(config.seed, 1)).inputs.numpy()
    grid = train_grid(data, config.coefs(mode, tms=True), [config.tms_width], config.tms_train,
                      objective=SiteObjective(host, "hidden", mode), d=host.site_width("hidden"),
                      progress=False, seed=config.seed)
    return _score(grid, host, "hidden", mode, held, host.features.numpy(), None)


def interpolate_at(ce: np.ndarray, values: np.ndarray, target: float) -> float:
    """``values`` at CE increase ``target``, linear in log CE between the bracketing sweep
    points (NaN outside the sweep's range)."""
    order = np.argsort(ce)
    x, y = np.log(np.clip(ce[order], 1e-12, None)), values[order]
    t = np.log(max(target, 1e-12))
    if t < x[0] or t > x[-1]:
        return float("nan")
    return float(np.interp(t, x, y))


def _matched(sweeps: tuple[Sweep, ...], n_targets: int = 3) -> tuple:
    """Rows at CE increases inside every mode's range (geometric spacing)."""
    lows = [min(s.ce_increase) for s in sweeps]
    highs = [max(s.ce_increase) for s in sweeps]
    low, high = max(max(lows), 1e-6), min(highs)
    if not low < high:
        return ()
    rows = []
    for target in np.geomspace(low, high, n_targets + 2)[1:-1]:
        for s in sweeps:
            ce = np.array(s.ce_increase)
            rows.append((s.mode, float(target),
                         *(interpolate_at(ce, np.array(getattr(s, k)), target)
                           for k in ("l0", "alive", "functional_mmcs", "nuisance_mmcs"))))
    return tuple(rows)


def _findings(matched: tuple, sweeps: tuple[Sweep, ...], width: int) -> tuple:
    out = []
    by_target: dict[float, dict[str, tuple]] = {}
    for row in matched:
        by_target.setdefault(row[1], {})[row[0]] = row
    for target, rows in by_target.items():
        if {"local", "e2e"} <= set(rows):
            loc, e2e = rows["local"], rows["e2e"]
            out.append(f"at CE increase {target:.3g} nats: L0 local {loc[2]:.1f} vs e2e "
                       f"{e2e[2]:.1f}; alive local {loc[3]:.0f} vs e2e {e2e[3]:.0f} of {width}; "
                       f"functional MMCS local {loc[4]:.3f} vs e2e {e2e[4]:.3f}, nuisance "
                       f"MMCS local {loc[5]:.3f} vs e2e {e2e[5]:.3f}")
    for s in sweeps:
        if not s.functional_mmcs:
            continue
        best = int(np.argmax(s.functional_mmcs))
        out.append(f"{s.mode}: best functional MMCS {s.functional_mmcs[best]:.3f} at "
                   f"sparsity_coef {s.coefs[best]:g} (nuisance {s.nuisance_mmcs[best]:.3f}, "
                   f"CE increase {s.ce_increase[best]:.3g})")
    return tuple(out)


def run(config: Config) -> Result:
    with torch_threads(1):  # toy-sized matmuls: one thread is fastest (toysae._threads)
        host = ResidualToy(config.host)
        host_fit = host.fit().message
        held = host.sample(config.n_eval, seed=shifted_seed(config.seed, 10_007))
        sweeps = tuple(_sweep(host, mode, config, held) for mode in MODES)
        tms = TMSHost(config.tms)
        tms_fit = tms.fit().message
        tms_held = tms.sample(config.n_eval, seed=shifted_seed(config.seed, 10_007))
        tms_sweeps = tuple(_tms_sweep(tms, mode, config, tms_held) for mode in TMS_MODES)
    matched = _matched(sweeps)
    findings = _findings(matched, sweeps, config.width) + (
        "TMS: its only site is hidden, so e2e_ds has no later site to match (it would equal "
        "e2e); only local and e2e are swept",)
    return Result(config, host_fit, tms_fit, config.n_eval, sweeps, tms_sweeps, matched,
                  findings)


_COLORS = {"local": "tab:blue", "e2e": "tab:red", "e2e_ds": "tab:green"}


def _panels(fig, axes, sweeps, x_label: str, width: int, n_eval: int, truth_panel: str) -> None:
    for s in sweeps:
        ce = np.clip(np.array(s.ce_increase), 1e-6, None)
        order = np.argsort(ce)
        kw = {"color": _COLORS[s.mode], "marker": "o", "label": s.mode}
        axes[0].plot(ce[order], np.array(s.l0)[order], **kw)
        axes[1].plot(ce[order], np.array(s.alive)[order], **kw)
        if s.functional_mmcs:
            axes[2].plot(ce[order], np.array(s.functional_mmcs)[order], **kw)
            axes[2].plot(ce[order], np.array(s.nuisance_mmcs)[order], color=_COLORS[s.mode],
                         marker="x", linestyle="--", label=f"{s.mode}, nuisance")
        else:
            axes[2].plot(ce[order], np.array(s.mmcs)[order], **kw)
    axes[0].set_ylabel("L0 (active latents per sample)")
    axes[1].set_ylabel(f"alive latents (of {width}, fired on {n_eval} samples)")
    axes[2].set_ylabel("MMCS with the true features")
    axes[2].set_title(truth_panel, fontsize=10)
    axes[0].set_title("sparsity against output fidelity", fontsize=10)
    axes[1].set_title("dictionary elements used", fontsize=10)
    from matplotlib.ticker import FuncFormatter, NullFormatter

    label = FuncFormatter(lambda v, _: f"{v:g}")
    for ax in axes:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(label)
        low, high = ax.get_xlim()
        # under ~1.5 decades the major ticks alone leave the axis unreadable
        ax.xaxis.set_minor_formatter(label if high / low < 30 else NullFormatter())
        ax.set_xlabel(x_label)
        ax.legend(fontsize=8)


def save(result: Result, out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from toysae.plotting import save_figure, style

    style()
    out_dir = Path(out_dir)
    cfg = result.config
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    _panels(fig, axes, result.sweeps, "CE increase over the original host (nats; <= 1e-6 "
            "drawn at 1e-6)", cfg.width,
            result.n_eval, "functional (o, solid) vs nuisance (x, dashed) features")
    fig.suptitle(f"Residual toy, SAEs at {SITE}: local vs e2e vs e2e+downstream "
                 f"({len(cfg.host.functional_features)} functional, "
                 f"{len(cfg.host.nuisance_features)} nuisance features)")
    fig.tight_layout()
    paths = [save_figure(fig, out_dir / f"{NAME}.png")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    _panels(fig, axes, result.tms_sweeps, "importance-weighted loss increase", cfg.tms_width,
            result.n_eval, "true features at hidden: the rows of W (exact)")
    fig.suptitle(f"TMS host ({cfg.tms.n_features} features in {cfg.tms.hidden} dimensions), "
                 "SAEs at hidden: local vs e2e (no later site, so no e2e_ds)")
    fig.tight_layout()
    paths.append(save_figure(fig, out_dir / f"{NAME}-tms.png"))
    paths.append(write_text(out_dir / f"{NAME}.md", table(result)))
    return paths


def table(result: Result) -> str:
    """The matched-CE table in markdown."""
    lines = [f"# {NAME}: at matched CE increase (interpolated, log-linear in CE)", "",
             "| CE increase (nats) | mode | L0 | alive | functional MMCS | nuisance MMCS |",
             "|---|---|---|---|---|---|"]
    for mode, target, l0, alive, fm, nm in result.matched:
        lines.append(f"| {target:.3g} | {mode} | {l0:.2f} | {alive:.1f} | {fm:.3f} | {nm:.3f} |")
    if not result.matched:
        lines.append("| (the three sweeps' CE ranges do not overlap) | | | | | |")
    lines += ["", *[f"- {f}" for f in result.findings], ""]
    return "\n".join(lines)

