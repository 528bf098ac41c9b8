"""Shared matplotlib helpers: one look for every figure of the package, and the figure lint
(:func:`figure_problems`) the test suite holds every saved figure to."""

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
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 11.5,
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
            cmap: str = "viridis", colorbar_label: str | None = None,
            vmin: float | None = None, vmax: float | None = None, fontsize: float = 9,
            colorbar: bool = True):
    """Annotated heat-map of ``values`` (rows x cols) with labelled axes. Each cell's value
    is written in black or white, whichever reads better on the colour the cell shows (NaN:
    "-" on the blank cell); ``vmin``/``vmax`` fix the colour scale (panels that compare one
    quantity share theirs); ``colorbar=False`` leaves the colour bar to the caller (one for
    several panels on one scale)."""
    values = np.asarray(values, dtype=float)
    im = ax.imshow(values, cmap=cmap, aspect="auto", origin="lower", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels])
    ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels])
    ax.set_xlabel(col_title)
    ax.set_ylabel(row_title)
    ax.set_title(title)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            ax.text(j, i, fmt.format(v) if np.isfinite(v) else "-", ha="center", va="center",
                    fontsize=fontsize, color=text_color_on(_cell_color(im, ax, i, j)))
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        if colorbar_label:
            cb.set_label(colorbar_label)
    return im


# -- the figure lint --------------------------------------------------------------------------
# What figure_problems holds every saved figure to. Sizes are of the saved (tight) image.
MIN_DPI, MAX_DPI = 100, 300
MIN_FIGURE_IN = (3.0, 2.0)  # width, height
MAX_FIGURE_IN = (12.0, 12.0)
MIN_PANEL_IN = (1.6, 1.2)  # every axes with a frame, colour bars aside
MIN_TEXT_PT = 7.0  # every piece of text, at the saved size
HALF_PAGE_IN = 4.25  # half of a US-letter page's width
MIN_TEXT_PT_HALF_PAGE = 4.0  # ... once the whole figure is printed HALF_PAGE_IN wide
MIN_CONTRAST = 4.5  # WCAG 2 ratio of a heat-map cell's text to its cell (AA, normal text)
_OVERLAP_PX = 1.0  # texts may touch by this much (glyph boxes carry blank ascent/descent)


def figure_problems(fig, *, dpi=None) -> list[str]:
    """What a reader of ``fig``, saved at ``dpi``, would trip on: one sentence per problem
    found, naming the panel (empty: none found). Checks what can be checked mechanically:

    - the saved image: ``MIN_DPI <= dpi <= MAX_DPI``; its size within ``MIN_FIGURE_IN`` and
      ``MAX_FIGURE_IN``; every framed panel at least ``MIN_PANEL_IN``;
    - text: at least ``MIN_TEXT_PT`` at the saved size and ``MIN_TEXT_PT_HALF_PAGE`` when the
      figure is printed ``HALF_PAGE_IN`` wide; no two pieces of text collide (tick labels,
      titles, labels, legends, annotations; rotated text by its rotated box);
    - a title: a suptitle or a title on every panel;
    - labels: every axis that shows tick labels has a label (named tick labels, as on a
      heat-map or a bar chart, are their own label);
    - content: no panel without anything drawn; no panel whose line and scatter series are all
      constant (write "all alive" instead of a flat line); on a log axis no value <= 0 (which
      matplotlib silently drops);
    - legends: every entry that names a plotted artist has a point inside its panel's view;
      no legend on top of plotted points, lines or bars;
    - colour: heat-map cell text at least ``MIN_CONTRAST`` against its cell; images whose
      colour bars carry the same label (the same quantity, compared) on one colour scale.

    ``dpi`` is the resolution the figure is saved at (None: ``savefig.dpi``, or the figure's
    own where that is "figure"). The figure is drawn once (Agg) to measure its text."""
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    if dpi is None:
        dpi = plt.rcParams["savefig.dpi"]
    if isinstance(dpi, str) and dpi == "figure":
        dpi = fig.dpi
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float, np.integer, np.floating)) \
            or not np.isfinite(dpi) or dpi <= 0:
        raise ValueError(f"dpi must be a positive number or 'figure', got {dpi!r}")
    renderer = _renderer(fig)
    problems: list[str] = []
    box = fig.get_tightbbox(renderer)
    pad = plt.rcParams["savefig.pad_inches"]
    pad = 2 * (pad if isinstance(pad, (int, float)) else 0.1)  # save_figure's tight bbox
    width, height = box.width + pad, box.height + pad
    if not MIN_DPI <= dpi <= MAX_DPI:
        problems.append(f"saved at {dpi:g} dpi, outside [{MIN_DPI}, {MAX_DPI}]")
    if not (MIN_FIGURE_IN[0] <= width <= MAX_FIGURE_IN[0]
            and MIN_FIGURE_IN[1] <= height <= MAX_FIGURE_IN[1]):
        problems.append(f"the saved figure is {width:.1f} x {height:.1f} in, outside "
                        f"{MIN_FIGURE_IN[0]:g}-{MAX_FIGURE_IN[0]:g} x "
                        f"{MIN_FIGURE_IN[1]:g}-{MAX_FIGURE_IN[1]:g} in")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    names = {ax: _panel_name(fig, ax) for ax in axes}
    panels = [ax for ax in axes if not _is_colorbar(ax) and _twin_host(ax, axes) is None]
    problems += _title_problems(fig, panels)
    for ax in axes:
        if _is_colorbar(ax):
            continue
        problems += _panel_size_problems(fig, ax, names[ax])
        problems += _label_problems(ax, names[ax])
        problems += _content_problems(ax, names[ax], axes)
    problems += _text_problems(fig, axes, renderer, width)
    problems += _legend_problems(fig, axes, names, renderer)
    problems += _colour_problems(fig, axes, names)
    return problems


def _renderer(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)  # a figure of another backend is measured as Agg draws it
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _is_colorbar(ax) -> bool:
    return getattr(ax, "_colorbar", None) is not None or ax.get_label() == "<colorbar>"


def _is_3d(ax) -> bool:
    return getattr(ax, "name", "") == "3d"


def _twin_host(ax, axes):
    """The axes ``ax`` is a twin of (same place, drawn first), or None."""
    here = ax.get_position().bounds
    for other in axes:
        if other is ax:
            return None
        if not _is_colorbar(other) and np.allclose(other.get_position().bounds, here):
            return other
    return None


def _panel_name(fig, ax) -> str:
    title = next((t for t in (ax.get_title(loc) for loc in ("center", "left", "right")) if t),
                 "")
    title = " ".join(title.split())
    if len(title) > 50:
        title = title[:47] + "..."
    return f"panel {fig.axes.index(ax) + 1}" + (f" ({title!r})" if title else "")


def _title_problems(fig, panels) -> list[str]:
    if fig.get_suptitle().strip() or not panels:
        return []
    untitled = [p for p in panels if not any(p.get_title(loc).strip()
                                             for loc in ("center", "left", "right"))]
    if untitled:
        return [f"no suptitle and {len(untitled)} of {len(panels)} panels untitled"]
    return []


def _panel_size_problems(fig, ax, name: str) -> list[str]:
    if not ax.axison:
        return []
    w, h = fig.get_size_inches()
    pos = ax.get_position()
    pw, ph = pos.width * w, pos.height * h
    if pw < MIN_PANEL_IN[0] - 1e-9 or ph < MIN_PANEL_IN[1] - 1e-9:
        return [f"{name} is {pw:.2f} x {ph:.2f} in, smaller than {MIN_PANEL_IN[0]:g} x "
                f"{MIN_PANEL_IN[1]:g} in"]
    return []


def _drawn_ticks(axis) -> list:
    try:
        return axis._update_ticks()  # the ticks a draw shows (inside the view)
    except AttributeError:  # pragma: no cover - older or newer matplotlib
        return axis.get_major_ticks()


def _tick_labels(axis) -> list:
    out = []
    for tick in _drawn_ticks(axis):
        for label in (tick.label1, tick.label2):
            if label.get_visible() and label.get_text().strip():
                out.append(label)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text.replace("\N{MINUS SIGN}", "-").strip("$ "))
    except ValueError:
        return False
    return True


def _named_ticks(axis) -> bool:
    """Whether ``axis`` shows names at fixed ticks (set_xticks(x, names), categories, a
    FixedFormatter) rather than numbers."""
    from matplotlib.category import StrCategoryFormatter
    from matplotlib.ticker import FixedFormatter, FixedLocator

    if isinstance(axis.get_major_formatter(), (FixedFormatter, StrCategoryFormatter)):
        return True
    return isinstance(axis.get_major_locator(), FixedLocator) and not all(
        _is_number(t.get_text()) for t in _tick_labels(axis))


def _label_problems(ax, name: str) -> list[str]:
    if not ax.axison:
        return []
    problems = []
    axes_ = [("x", ax.xaxis), ("y", ax.yaxis)]
    if _is_3d(ax):
        axes_.append(("z", ax.zaxis))
    for which, axis in axes_:
        if not axis.get_visible() or axis.get_label_text().strip():
            continue
        if _is_3d(ax):
            problems.append(f"{name}: the {which} axis has no label")
            continue
        if not _tick_labels(axis):
            continue  # no scale shown: nothing to name
        if _named_ticks(axis):
            continue  # named ticks (a heat-map's rows, a bar chart's groups) are the label
        problems.append(f"{name}: the {which} axis has no label")
    return problems


def _data_transform(artist, ax) -> bool:
    try:
        return artist.get_transform().contains_branch(ax.transData)
    except (AttributeError, ValueError):
        return False


def _cap_lines(ax) -> set:
    from matplotlib.container import ErrorbarContainer

    caps = set()
    for c in ax.containers:
        if isinstance(c, ErrorbarContainer):
            caps.update(id(line) for line in c.lines[1])
    return caps


def _series(ax) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, x, y) of every visible line (drawn in data coordinates, errorbar caps aside)
    and scatter series of ``ax``, finite points only."""
    from matplotlib.collections import PathCollection

    caps, out = _cap_lines(ax), []
    for line in ax.lines:
        if not line.get_visible() or id(line) in caps or not _data_transform(line, ax):
            continue
        xy = np.asarray(line.get_xydata(), dtype=float).reshape(-1, 2)
        out.append((line.get_label(), xy[:, 0], xy[:, 1]))
    for coll in ax.collections:
        if not isinstance(coll, PathCollection) or not coll.get_visible():
            continue
        try:
            if not coll.get_offset_transform().contains_branch(ax.transData):
                continue
        except (AttributeError, ValueError):
            continue
        xy = np.ma.filled(np.ma.asarray(coll.get_offsets(), dtype=float), np.nan)
        xy = xy.reshape(-1, 2)
        out.append((coll.get_label(), xy[:, 0], xy[:, 1]))
    return out


def _content_problems(ax, name: str, axes) -> list[str]:
    from matplotlib.container import BarContainer

    drawn = ax.lines or ax.collections or ax.images or ax.patches or ax.tables
    if not drawn and not any(t.get_text().strip() for t in ax.texts):
        twins = [o for o in axes if o is not ax and _twin_host(o, axes) is ax]
        if not any(o.lines or o.collections or o.images or o.patches for o in twins):
            return [f"{name} is empty: drop it or write what it would show"]
    if _is_3d(ax):
        return []
    problems = []
    series = [(label, x, y) for label, x, y in _series(ax)
              if np.isfinite(x).sum() >= 2 and np.isfinite(y).sum() >= 2]
    if series and all(np.ptp(y[np.isfinite(y)]) <= 1e-12 * max(1.0, np.nanmax(np.abs(y)))
                      for _, _, y in series):
        values = sorted({float(y[np.isfinite(y)][0]) for _, _, y in series})
        shown = ", ".join(f"{v:g}" for v in values[:4])
        problems.append(f"{name}: every plotted series is constant (y = {shown}): say it in "
                        "words instead of a flat line")
    for which, scale, col in (("x", ax.get_xscale(), 1), ("y", ax.get_yscale(), 2)):
        if scale != "log":
            continue
        hidden = {}
        for label, *xy in _series(ax):
            v = xy[col - 1]
            n = int((np.isfinite(v) & (v <= 0)).sum())
            if n:
                hidden[label] = hidden.get(label, 0) + n
        for c in ax.containers:
            if isinstance(c, BarContainer):
                sizes = np.array([p.get_height() if c.orientation == "vertical"
                                  else p.get_width() for p in c.patches], dtype=float)
                hit = (c.orientation == "vertical") == (which == "y")
                n = int((sizes <= 0).sum()) if hit else 0
                if n:
                    hidden[c.get_label()] = hidden.get(c.get_label(), 0) + n
        for label, n in hidden.items():
            shown = "" if label.startswith("_") else f" of {label!r}"
            problems.append(f"{name}: {n} value(s) <= 0{shown} are not drawn on the log "
                            f"{which} axis: write them")
    return problems


def _text_polygon(text, renderer) -> np.ndarray:
    """The corners (4, 2) of ``text``'s box in display pixels, rotated with the text."""
    from matplotlib.text import Text

    box = text.get_window_extent(renderer)
    angle = text.get_rotation() % 180
    if np.isclose(angle % 90, 0):
        return np.array([[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1]])
    flat = Text(0, 0, text.get_text(), fontproperties=text.get_fontproperties(),
                linespacing=text.get_linespacing())
    flat.set_figure(text.get_figure(root=True))
    size = flat.get_window_extent(renderer)
    w, h, t = size.width / 2, size.height / 2, np.deg2rad(text.get_rotation())
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) @ rot.T
    return corners + [(box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2]


def _collide(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two convex polygons overlap by more than ``_OVERLAP_PX`` along every axis
    (the separating axis test)."""
    for poly in (a, b):
        for k in range(len(poly)):
            edge = poly[(k + 1) % len(poly)] - poly[k]
            length = np.hypot(*edge)
            if length == 0:
                continue
            normal = np.array([-edge[1], edge[0]]) / length
            pa, pb = a @ normal, b @ normal
            if min(pa.max(), pb.max()) - max(pa.min(), pb.min()) <= _OVERLAP_PX:
                return False
    return True


def _all_texts(fig, axes) -> tuple[list, list]:
    """(every visible, non-empty piece of text; those of them placed in the figure's plane,
    which can collide: 3-D panels' projected ticks, labels and texts aside)."""
    flat, projected, legends = list(fig.texts), [], list(fig.legends)
    for ax in axes:
        three_d = _is_3d(ax)
        flat += [t for t in (ax.title, getattr(ax, "_left_title", None),
                             getattr(ax, "_right_title", None)) if t is not None]
        own = list(ax.texts)
        if ax.axison:
            for axis in (ax.xaxis, ax.yaxis, *([ax.zaxis] if three_d else [])):
                if axis.get_visible():
                    own.append(axis.label)
                    if not three_d:
                        own += [axis.get_offset_text(), *_tick_labels(axis)]
        (projected if three_d else flat).extend(own)
        if ax.get_legend() is not None:
            legends.append(ax.get_legend())
    for leg in legends:
        if leg.get_visible():
            flat += [*leg.get_texts(), leg.get_title()]

    def shown(texts):
        return [t for t in dict.fromkeys(texts) if t.get_visible() and t.get_text().strip()]

    flat = shown(flat)
    return shown(flat + projected), flat


def _short(text) -> str:
    s = " ".join(text.get_text().split())
    return repr(s if len(s) <= 40 else s[:37] + "...")


def _text_problems(fig, axes, renderer, width: float) -> list[str]:
    texts, flat = _all_texts(fig, axes)
    problems = []
    if texts:
        smallest = min(texts, key=lambda t: t.get_fontsize())
        size = float(smallest.get_fontsize())
        small = [t for t in texts if t.get_fontsize() < MIN_TEXT_PT]
        if small:
            problems.append(f"{len(small)} piece(s) of text under {MIN_TEXT_PT:g} pt (smallest "
                            f"{size:g} pt: {_short(smallest)})")
        scaled = size * min(1.0, HALF_PAGE_IN / width)
        if scaled < MIN_TEXT_PT_HALF_PAGE:
            problems.append(f"printed {HALF_PAGE_IN:g} in wide (half a page) the smallest text "
                            f"is {scaled:.1f} pt ({size:g} pt in a {width:.1f} in figure: "
                            f"{_short(smallest)}), under {MIN_TEXT_PT_HALF_PAGE:g} pt: make the "
                            "figure narrower or its text larger")
    polys = [_text_polygon(t, renderer) for t in flat]
    if len(polys) > 1:
        lo = np.array([p.min(axis=0) for p in polys])
        hi = np.array([p.max(axis=0) for p in polys])
        pairs = []
        for a in range(len(polys)):
            near = np.flatnonzero((np.minimum(hi[a], hi[a + 1:]) - np.maximum(lo[a], lo[a + 1:])
                                   > _OVERLAP_PX).all(axis=1)) + a + 1
            pairs += [(a, b) for b in near if _collide(polys[a], polys[b])]
        if pairs:
            shown = "; ".join(f"{_short(flat[a])} and {_short(flat[b])}" for a, b in pairs[:4])
            more = f" (and {len(pairs) - 4} more)" if len(pairs) > 4 else ""
            problems.append(f"{len(pairs)} pair(s) of text collide: {shown}{more}")
    return problems


def _in_view(ax, x, y) -> np.ndarray:
    ok = np.isfinite(x) & np.isfinite(y)
    for v, (lo, hi), scale in ((x, ax.get_xlim(), ax.get_xscale()),
                               (y, ax.get_ylim(), ax.get_yscale())):
        lo, hi = min(lo, hi), max(lo, hi)
        with np.errstate(invalid="ignore"):
            ok &= (v >= lo) & (v <= hi)
            if scale == "log":
                ok &= v > 0
    return ok


def _shows_a_point(artist, ax) -> bool:
    """Whether a legend's ``artist`` leaves a mark inside the view of its panel."""
    from matplotlib.collections import PathCollection
    from matplotlib.container import BarContainer, ErrorbarContainer
    from matplotlib.lines import Line2D

    if isinstance(artist, BarContainer):
        return any(p.get_visible() and (p.get_height() if artist.orientation == "vertical"
                                        else p.get_width()) != 0 for p in artist.patches)
    if isinstance(artist, ErrorbarContainer):
        line = artist.lines[0]
        return line is not None and _shows_a_point(line, ax) or any(
            _shows_a_point(c, ax) for c in artist.lines[2])
    if not artist.get_visible() or artist.get_alpha() == 0:
        return False
    if isinstance(artist, Line2D):
        if artist.get_marker() in (None, "None", "none", "", " ") and \
                artist.get_linestyle() in ("None", "none", "", " "):
            return False
        if not _data_transform(artist, ax):
            return True  # a reference line (axhline, axvline) spans its panel
        xy = np.asarray(artist.get_xydata(), dtype=float).reshape(-1, 2)
        return bool(_in_view(ax, xy[:, 0], xy[:, 1]).any())
    if isinstance(artist, PathCollection):
        xy = np.ma.filled(np.ma.asarray(artist.get_offsets(), dtype=float), np.nan)
        xy = xy.reshape(-1, 2)
        sizes = np.asarray(artist.get_sizes())
        return bool(_in_view(ax, xy[:, 0], xy[:, 1]).any()) and (sizes.size == 0
                                                                 or bool((sizes > 0).any()))
    return True


def _display_points(ax) -> list[tuple[str, np.ndarray]]:
    """(label, points in display pixels) of every line (sampled every few pixels along its
    segments) and scatter series of ``ax``, inside the panel."""
    from matplotlib.collections import PathCollection

    out, frame = [], ax.get_window_extent()
    for line in ax.lines:
        if not line.get_visible():
            continue
        xy = np.asarray(line.get_xydata(), dtype=float).reshape(-1, 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            pts = line.get_transform().transform(xy)
        pts = pts[np.isfinite(pts).all(axis=1)]
        if line.get_linestyle() not in ("None", "none", "", " ") and len(pts) > 1:
            steps = [pts[:1]]
            for p, q in zip(pts[:-1], pts[1:], strict=True):
                n = int(min(200, max(1, np.ceil(np.hypot(*(q - p)) / 3))))
                steps.append(p + np.linspace(0, 1, n + 1)[1:, None] * (q - p))
            pts = np.concatenate(steps)
        out.append((line.get_label(), pts))
    for coll in ax.collections:
        if isinstance(coll, PathCollection) and coll.get_visible():
            xy = np.ma.filled(np.ma.asarray(coll.get_offsets(), dtype=float), np.nan)
            pts = coll.get_offset_transform().transform(xy.reshape(-1, 2))
            out.append((coll.get_label(), pts[np.isfinite(pts).all(axis=1)]))
    inside = []
    for label, pts in out:
        keep = ((pts[:, 0] >= frame.x0) & (pts[:, 0] <= frame.x1) & (pts[:, 1] >= frame.y0)
                & (pts[:, 1] <= frame.y1))
        inside.append((label, pts[keep]))
    return inside


def _legend_problems(fig, axes, names, renderer) -> list[str]:
    from matplotlib.container import BarContainer
    from matplotlib.transforms import Bbox

    plotted: dict[str, list] = {}
    for ax in axes:
        for artist in (*ax.lines, *ax.collections, *ax.patches, *ax.containers):
            label = artist.get_label()
            if label and not label.startswith("_"):
                plotted.setdefault(label, []).append((artist, ax))
    legends = [(ax.get_legend(), names[ax]) for ax in axes if ax.get_legend() is not None]
    legends += [(leg, "the figure's legend") for leg in fig.legends]
    problems = []
    for leg, where in legends:
        if not leg.get_visible():
            continue
        for text in leg.get_texts():
            found = plotted.get(text.get_text())
            if found and not any(_shows_a_point(a, ax) for a, ax in found):
                problems.append(f"{where}: the legend entry {_short(text)} has no visible point")
        box = leg.get_window_extent(renderer)
        x0, x1, y0, y1 = box.x0 + 1, box.x1 - 1, box.y0 + 1, box.y1 - 1
        covered = []
        for ax in axes:
            if _is_colorbar(ax) or _is_3d(ax):
                continue
            for label, pts in _display_points(ax):
                if ((pts[:, 0] > x0) & (pts[:, 0] < x1) & (pts[:, 1] > y0)
                        & (pts[:, 1] < y1)).any():
                    covered.append(label)
            frame = ax.get_window_extent(renderer)
            for c in ax.containers:  # each bar as drawn: clipped to its panel
                if isinstance(c, BarContainer) and any(
                        _boxes_overlap(Bbox.intersection(p.get_window_extent(renderer), frame),
                                       (x0, x1, y0, y1))
                        for p in c.patches if p.get_visible()):
                    covered.append(c.get_label())
        if covered:
            named = [c for c in dict.fromkeys(covered) if not c.startswith("_")]
            what = f" ({', '.join(repr(c) for c in named[:3])})" if named else ""
            problems.append(f"{where}: the legend covers plotted data{what}: move it off the "
                            "data")
    return problems


def _boxes_overlap(box, limits) -> bool:
    if box is None:  # an empty intersection
        return False
    x0, x1, y0, y1 = limits
    return min(box.x1, x1) - max(box.x0, x0) > 0 and min(box.y1, y1) - max(box.y0, y0) > 0


def _linear(rgb) -> np.ndarray:
    c = np.asarray(rgb, dtype=float)[:3]
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def contrast_ratio(a, b) -> float:
    """WCAG 2 contrast ratio of two colours (anything matplotlib reads as a colour), from 1
    (the same luminance) to 21 (black on white)."""
    from matplotlib.colors import to_rgb

    la, lb = (float(_linear(to_rgb(c)) @ [0.2126, 0.7152, 0.0722]) for c in (a, b))
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def text_color_on(background) -> str:
    """"black" or "white", whichever reads better on ``background``."""
    return "black" if contrast_ratio("black", background) >= contrast_ratio(
        "white", background) else "white"


def _cell_color(im, ax, i: int, j: int) -> tuple:
    """The colour cell (i, j) of image ``im`` shows, over the panel's background."""
    from matplotlib.colors import to_rgba

    arr = np.ma.asarray(im.get_array())
    if arr.ndim == 3:
        rgba = np.asarray(np.ma.filled(arr[i, j], 0), dtype=float)
        if np.issubdtype(arr.dtype, np.integer):
            rgba = rgba / 255
        if rgba.size == 3:
            rgba = np.append(rgba, 1.0)
    else:
        v = arr[i, j]
        if np.ma.is_masked(v) or not np.isfinite(float(v)):
            rgba = np.asarray(im.get_cmap().get_bad(), dtype=float)
        else:
            rgba = np.asarray(im.get_cmap()(im.norm(float(v))), dtype=float)
    alpha = rgba[3] * (1.0 if im.get_alpha() is None else float(im.get_alpha()))
    bg = np.asarray(to_rgba(ax.get_facecolor()), dtype=float)
    return tuple(alpha * rgba[:3] + (1 - alpha) * bg[:3])


def _contrast_problems(ax, name: str) -> list[str]:
    low = []
    for im in ax.images:
        arr = im.get_array()
        if arr is None or np.ndim(arr) < 2:
            continue
        rows, cols = np.shape(arr)[:2]
        x0, x1, y0, y1 = im.get_extent()
        start, end = (y0, y1) if im.origin == "lower" else (y1, y0)
        for t in ax.texts:
            if not t.get_visible() or not t.get_text().strip() or t.get_transform() \
                    is not ax.transData:
                continue
            x, y = t.get_position()
            j = int(np.floor((x - x0) / (x1 - x0) * cols))
            i = int(np.floor((y - start) / (end - start) * rows))
            if 0 <= i < rows and 0 <= j < cols:
                ratio = contrast_ratio(t.get_color(), _cell_color(im, ax, i, j))
                if ratio < MIN_CONTRAST:
                    low.append((ratio, t))
    if not low:
        return []
    ratio, worst = min(low, key=lambda r: r[0])
    return [f"{name}: {len(low)} cell label(s) under {MIN_CONTRAST:g}:1 contrast with their "
            f"cell (worst {ratio:.1f}:1, {_short(worst)})"]


def _colour_problems(fig, axes, names) -> list[str]:
    problems, scales = [], {}
    for ax in axes:
        problems += _contrast_problems(ax, names[ax])
        for im in ax.images:
            bar = getattr(im, "colorbar", None)
            label = (bar.ax.get_ylabel() or bar.ax.get_xlabel()).strip() if bar else ""
            if label:
                scales.setdefault((label, im.get_cmap().name), []).append((ax, im))
    for (label, _), members in scales.items():
        clims = {tuple(np.round(np.asarray(im.get_clim(), dtype=float), 12))
                 for _, im in members}
        if len(clims) > 1:
            shown = ", ".join(names[ax] for ax, _ in members)
            problems.append(f"{shown} show {label!r} on {len(clims)} different colour scales: "
                            "share one")
    return problems


# -- helpers the experiments' figures share ---------------------------------------------------

def wrap(text: str, width: int) -> str:
    """``text`` broken into lines of at most ``width`` characters (at spaces; existing line
    breaks kept)."""
    import textwrap

    return "\n".join(textwrap.fill(part, width) for part in text.split("\n"))


def say(ax, text: str, *, title: str | None = None, fontsize: float = 10) -> None:
    """Turn ``ax`` into a panel that says ``text`` in words (instead of an empty or flat
    plot), under ``title``."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes,
            fontsize=fontsize)
    if title:
        ax.set_title(title)


def _decade_label(value: float, _pos=None) -> str:
    """``10^k`` in mathtext for a power of ten outside [0.01, 100], else the plain number."""
    if value > 0:
        power = np.log10(value)
        if abs(power - round(power)) < 1e-9 and abs(power) > 2:
            return f"$10^{{{int(round(power))}}}$"
    return f"{value:g}"


def log_ticks(axis) -> None:
    """Major ticks of a log ``axis`` written plainly (0.02, not 2x10^-2), at 1, 2 and 5
    times each power of ten where the view spans under ~1.5 decades (so that some tick
    is labelled; at a few evenly spaced values where even those leave under two); over
    three decades at most five decades, written ``10^k``; no minor tick labels (they
    crowd a narrow panel). Call after the data are drawn."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    low, high = sorted(axis.get_view_interval())
    if low > 0 and high / low > 1e3:
        # Over three decades the plain labels (1e-05, 0.0001, ...) run into each other:
        # at most five decades are labelled, as powers of ten.
        axis.set_major_locator(LogLocator(base=10, numticks=5))
        axis.set_major_formatter(FuncFormatter(_decade_label))
        axis.set_minor_formatter(NullFormatter())
        return
    if low > 0 and high / low < 30:
        e = np.arange(np.floor(np.log10(low)), np.ceil(np.log10(high)) + 1)
        ticks = (np.array([1.0, 2.0, 5.0])[:, None] * 10.0 ** e).ravel()
        if ((ticks >= low) & (ticks <= high)).sum() >= 2:
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        else:  # under half a decade: a few evenly spaced values
            axis.set_major_locator(MaxNLocator(nbins=3))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())
