"""The files ``toysae check`` writes: the report's JSON and one figure.

The figure of a :class:`toysae.check.SAEFileReport`:

- left: every live atom's stationarity violation (relative tangential force),
  sorted, on a log scale, with the tolerance;
- right: hull panels of the worst pairs: the responses ``s_nj`` of atom ``j`` over
  the samples where atom ``i`` fires (alone or with ``j``), the attained hull, the
  weighted mean and the cosine ``c_ij`` the pair identity says the mean must equal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toysae._io import write_text


def save_check(report, out_dir: str | Path, *, name: str = "check") -> list[Path]:
    """Write ``<name>.json`` and ``<name>.png`` for ``report`` into ``out_dir``."""
    import matplotlib.pyplot as plt

    from toysae.plotting import save_figure, style, wrap

    style()
    out_dir = Path(out_dir)
    panels = report.hull_samples
    cols = 2 if len(panels) in (2, 4) else max(1, min(3, len(panels)))
    rows = -(-len(panels) // cols) if panels else 0
    height = 3.8 + (3.1 * rows + 0.4 if panels else 1.0)
    fig = plt.figure(figsize=(9.0, height))
    grid = fig.add_gridspec(1 + rows if panels else 2, cols,
                            height_ratios=[1.0] * (1 + rows) if panels else [1.0, 0.25])
    _violations(fig.add_subplot(grid[0, :]), report)
    rng = np.random.default_rng(0)
    for k, sample in enumerate(panels):
        _hull_panel(fig.add_subplot(grid[1 + k // cols, k % cols]), sample, rng)
    if panels:
        handles, labels = fig.axes[1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels),
                   bbox_to_anchor=(0.5, 0.0), markerscale=1.5)
    else:
        ax = fig.add_subplot(grid[1, :])
        ax.axis("off")
        ax.text(0.5, 0.5, "no pair violates the identity:\nno hull panel to show",
                ha="center", va="center")
    verdict = "passes every check" if report.passed else "fails"
    fig.suptitle(wrap(f"toysae check: {report.architecture} SAE, {report.width} latents, "
                      f"{report.n_samples} activations, lam = {report.lam:g}: the decoder "
                      f"with optimal codes {verdict}", 90))
    fig.tight_layout(rect=(0, 0.35 / height if panels else 0, 1, 1))
    return [save_figure(fig, out_dir / f"{name}.png"),
            write_text(out_dir / f"{name}.json", report.to_json())]


def _violations(ax, report) -> None:
    atoms = report.optimality.atoms
    values = np.sort(atoms.violation[atoms.alive])[::-1]
    floor = 1e-12
    ax.plot(np.arange(1, values.size + 1), np.maximum(values, floor), color="tab:blue", lw=1.5,
            label=f"atom (sorted; <= {floor:g} drawn at {floor:g})")
    ax.axhline(atoms.tol, color="tab:red", ls="--", lw=1, label=f"tol {atoms.tol:g}")
    ax.set_yscale("log")
    ax.set_xlabel(f"live atoms, sorted by violation ({values.size} of {atoms.violation.size})")
    ax.set_ylabel("violation: ||R_k - (R_k.d_k) d_k||\n/ (lam sum_n |z_nk|)", labelpad=8)
    ax.set_title(f"atom stationarity: {atoms.n_violations} of {atoms.violation.size} "
                 f"above tol")
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.25), ncol=2)


def _hull_panel(ax, sample, rng) -> None:
    """The responses of atom j where atom i fires; the legend's words are the same in every
    panel (the figure shows one legend for all)."""
    t = sample.t
    jitter = 0.7 * (rng.uniform(size=t.size) - 0.5)
    alone = ~sample.coactive
    ax.scatter(t[alone], jitter[alone], s=5, alpha=0.4, color="tab:blue",
               label="atom i alone")
    if sample.coactive.any():
        ax.scatter(t[~alone], jitter[~alone], s=5, alpha=0.4, color="tab:gray",
                   label="with atom j")
    ax.axvspan(sample.hull_low, sample.hull_high, color="tab:red", alpha=0.12,
               label="hull [min, max]")
    ax.axvline(sample.cos, color="black", lw=2, label="c_ij")
    ax.plot([sample.weighted_mean], [0.0], marker="D", color="tab:orange", ms=6, ls="none",
            label="weighted mean")
    ax.set_ylim(-0.6, 0.6)
    ax.set_yticks([])
    shown = f"first {t.size} of {sample.n_support}" if t.size < sample.n_support else t.size
    ax.set_xlabel(f"s_n{sample.j} where atom {sample.i} fires ({shown} samples)")
    ax.set_title(f"pair ({sample.i}, {sample.j}): identity violation "
                 f"{sample.identity_violation:.3g}\nc_ij {sample.cos:.3f} "
                 f"{'in' if sample.passed else 'outside'} the hull (mean "
                 f"{sample.weighted_mean:.3f})")
