"""Shared matplotlib helpers: one look for every figure of the package."""

from __future__ import annotations

from collections.abc import Sequence

# No backend is chosen here: matplotlib falls back to Agg where there is no display (the
# CLI, CI), and a notebook keeps its inline backend, so its figures show.
import matplotlib.pyplot as plt
import numpy as np

from toysae._io import save_figure  # noqa: F401  (re-exported for experiments)

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 130,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "legend.frameon": False,
}


def style() -> None:
    """Apply the package style to matplotlib's global settings."""
    plt.rcParams.update(STYLE)


def heatmap(ax, values: np.ndarray, row_labels: Sequence, col_labels: Sequence, *,
            row_title: str, col_title: str, title: str, fmt: str = "{:.2f}",
            cmap: str = "viridis", colorbar_label: str | None = None):
    """Annotated heat-map of ``values`` (rows x cols) with labelled axes."""
    values = np.asarray(values, dtype=float)
    im = ax.imshow(values, cmap=cmap, aspect="auto", origin="lower")
    ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels])
    ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels])
    ax.set_xlabel(col_title)
    ax.set_ylabel(row_title)
    ax.set_title(title)
    finite = values[np.isfinite(values)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            # NaN cells are left blank by imshow: draw their "-" in black to be seen
            ax.text(j, i, fmt.format(v) if np.isfinite(v) else "-", ha="center", va="center",
                    fontsize=8, color="white" if np.isfinite(v) and v <= mid else "black")
    cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if colorbar_label:
        cb.set_label(colorbar_label)
    return im
