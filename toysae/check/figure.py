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

    from toysae.plotting import save_figure, style

    style()
    out_dir = Path(out_dir)
    panels = report.hull_samples
    fig = plt.figure(figsize=(5.5 + 3.6 * max(1, len(panels)), 4.4))
    grid = fig.add_gridspec(1, 1 + max(1, len(panels)), width_ratios=[1.5] + [1] * max(
        1, len(panels)))
    _violations(fig.add_subplot(grid[0, 0]), report)
    rng = np.random.default_rng(0)
    for col, sample in enumerate(panels):
        _hull_panel(fig.add_subplot(grid[0, 1 + col]), sample, rng)
    if not panels:
        ax = fig.add_subplot(grid[0, 1])
        ax.axis("off")
        ax.text(0.5, 0.5, "no pair violates the identity:\nno hull panel to show",
                ha="center", va="center")
    verdict = "passes every check" if report.passed else "fails"
    fig.suptitle(f"toysae check: {report.architecture} SAE, {report.width} latents, "
                 f"{report.n_samples} activations, lam = {report.lam:g}: the decoder "
                 f"with optimal codes {verdict}")
    fig.tight_layout()
    return [save_figure(fig, out_dir / f"{name}.png"),
            write_text(out_dir / f"{name}.json", report.to_json())]


def _violations(ax, report) -> None:
    atoms = report.optimality.atoms
    values = np.sort(atoms.violation[atoms.alive])[::-1]
    floor = 1e-12
    ax.plot(np.arange(1, values.size + 1), np.maximum(values, floor), color="tab:blue", lw=1.5,
            label="atom (sorted)")
    ax.axhline(atoms.tol, color="tab:red", ls="--", lw=1, label=f"tol {atoms.tol:g}")
    ax.set_yscale("log")
    ax.set_xlabel(f"live atoms, sorted by violation ({values.size} of {atoms.violation.size})")
    ax.set_ylabel("||R_k - (R_k . d_k) d_k|| / (lam sum_n |z_nk|)")
    ax.set_title(f"atom stationarity: {atoms.n_violations} of {atoms.violation.size} "
                 f"above tol")
    ax.legend(loc="upper right", fontsize=8)


def _hull_panel(ax, sample, rng) -> None:
    t = sample.t
    jitter = 0.7 * (rng.uniform(size=t.size) - 0.5)
    alone = ~sample.coactive
    ax.scatter(t[alone], jitter[alone], s=5, alpha=0.4, color="tab:blue",
               label=f"atom {sample.i} alone")
    if sample.coactive.any():
        ax.scatter(t[~alone], jitter[~alone], s=5, alpha=0.4, color="tab:gray",
                   label=f"with atom {sample.j}")
    ax.axvspan(sample.hull_low, sample.hull_high, color="tab:red", alpha=0.12,
               label="hull [min, max]")
    ax.axvline(sample.cos, color="black", lw=2, label=f"c_ij = {sample.cos:.3f}")
    ax.plot([sample.weighted_mean], [0.0], marker="D", color="tab:orange", ms=6, ls="none",
            label=f"weighted mean {sample.weighted_mean:.3f}")
    ax.set_ylim(-0.6, 0.6)
    ax.set_yticks([])
    shown = f"first {t.size} of {sample.n_support}" if t.size < sample.n_support else t.size
    ax.set_xlabel(f"s_n{sample.j} where atom {sample.i} fires ({shown} samples)")
    ax.set_title(f"pair ({sample.i}, {sample.j}): identity violation "
                 f"{sample.identity_violation:.3g}\nc_ij {'in' if sample.passed else 'outside'}"
                 f" the hull")
    ax.legend(loc="best", fontsize=7, framealpha=0.8)
