"""``toysae.plotting``: the package style is applied to matplotlib's settings, and the
annotated heat-map writes every cell's value (NaN as "-"), in a colour readable on its cell,
under the labels and titles it is given."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from toysae.plotting import (
    STYLE,
    contrast_ratio,
    figure_problems,
    heatmap,
    save_figure,
    style,
    text_color_on,
)


@pytest.fixture
def ax():
    with plt.rc_context():  # style() writes the global settings: keep them to this test
        fig, axis = plt.subplots()
        yield axis
        plt.close(fig)


def test_style_applies_the_package_settings():
    with plt.rc_context():
        plt.rcParams["font.size"] = 3.0
        style()
        for key, value in STYLE.items():
            assert plt.rcParams[key] == value, key


def test_heatmap_writes_every_cell_with_its_labels(ax):
    values = np.array([[0.0, 1.0, 2.0], [4.0, np.nan, 10.0]])
    im = heatmap(ax, values, ["a", "b"], [10, 20, 30], row_title="rows", col_title="cols",
                 title="grid", fmt="{:.1f}", colorbar_label="score")
    texts = {(t.get_position(), t.get_text()): t.get_color() for t in ax.texts}
    assert len(texts) == 6
    # each value in black or white, whichever contrasts more with its cell: white on viridis'
    # dark blues (0, 1, 2 and 4 of 0-10), black on its yellow (10) and on NaN's blank cell
    expected = {((0, 0), "0.0"): "white", ((1, 0), "1.0"): "white", ((2, 0), "2.0"): "white",
                ((0, 1), "4.0"): "white", ((1, 1), "-"): "black", ((2, 1), "10.0"): "black"}
    assert texts == expected
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10", "20", "30"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    low, high = ax.get_ylim()
    assert low < high  # row 0 at the bottom, beside its tick label
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("cols", "rows", "grid")
    np.testing.assert_array_equal(np.ma.filled(im.get_array(), np.nan), values)
    assert im.colorbar.ax.get_ylabel() == "score"


def test_an_all_nan_heatmap_is_drawn_as_dashes(ax, tmp_path):
    heatmap(ax, np.full((2, 2), np.nan), [0, 1], [0, 1], row_title="r", col_title="c",
            title="t")
    assert [t.get_text() for t in ax.texts] == ["-"] * 4
    path = save_figure(ax.figure, tmp_path / "nan.png")  # re-exported from toysae._io
    assert path.stat().st_size > 1000 and not list(tmp_path.glob(".*"))


# -- figure_problems ---------------------------------------------------------------------------

@pytest.fixture
def figure():
    """A factory of figures in the package style, all closed after the test."""
    made = []

    def make(*args, **kwargs):
        fig, axes = plt.subplots(*args, **kwargs)
        made.append(fig)
        return fig, axes

    with plt.rc_context():
        style()
        yield make
    for fig in made:
        plt.close(fig)


def _good(figure):
    """Two titled, labelled panels with their legends off the data: nothing to report."""
    fig, (a, b) = figure(1, 2, figsize=(8, 3.4))
    x = np.arange(1, 9)
    a.plot(x, x ** 2, "o-", label="square")
    a.plot(x, 3 * x, "s--", label="triple")
    a.set(xlabel="n", ylabel="value", yscale="log", title="growth")
    a.legend(loc="upper left")
    b.bar(range(3), [3, 1, 2], label="count")
    b.set_xticks(range(3), ["relu", "topk", "gated"])  # named ticks: their own label
    b.set(ylabel="count", title="by architecture", ylim=(0, 6))
    b.legend(loc="upper right")
    fig.suptitle("a good figure")
    fig.tight_layout()
    return fig, a, b


def test_a_good_figure_has_no_problems(figure):
    fig, _, _ = _good(figure)
    assert figure_problems(fig, dpi=120) == []


def test_the_saved_size_dpi_and_panel_size_are_bounded(figure):
    fig, _, _ = _good(figure)
    problems = figure_problems(fig, dpi=600)
    assert problems == ["saved at 600 dpi, outside [100, 300]"]
    fig, ax = figure(figsize=(14, 3))
    ax.plot([0, 1], [0, 1])
    ax.set(xlabel="x", ylabel="y", title="t")
    fig.suptitle("too wide")
    fig.tight_layout()
    assert any(p.startswith("the saved figure is ") and p.endswith("outside 3-12 x 2-12 in")
               for p in figure_problems(fig, dpi=120))
    fig, axes = figure(1, 6, figsize=(9, 3))
    for ax in axes:
        ax.plot([0, 1], [0, 1])
        ax.set(xlabel="x", ylabel="y", title="t")
    problems = figure_problems(fig, dpi=120)
    assert sum("smaller than 1.6 x 1.2 in" in p for p in problems) == 6


def test_small_text_and_text_too_small_at_half_page_width(figure):
    fig, (a, b) = figure(1, 2, figsize=(8, 3.4))
    for ax in (a, b):
        ax.plot([0, 1], [0, 2])
        ax.set(xlabel="x", ylabel="y", title="t")
    a.text(0.5, 1.5, "tiny", fontsize=5)
    problems = figure_problems(fig, dpi=120)
    assert any(p.startswith("1 piece(s) of text under 7 pt (smallest 5 pt: 'tiny')")
               for p in problems)
    assert any(p.startswith("printed 4.25 in wide (half a page)") for p in problems)
    fig, ax = figure(figsize=(11.5, 4))
    ax.plot([0, 1], [0, 2])
    ax.set(xlabel="x", ylabel="y", title="wide, with 9 pt tick labels")
    assert any("printed 4.25 in wide" in p and "9 pt in a" in p
               for p in figure_problems(fig, dpi=120))


def test_a_title_is_needed(figure):
    fig, a, b = _good(figure)
    fig.suptitle("")
    assert figure_problems(fig, dpi=120) == []  # both panels have titles
    b.set_title("")
    assert figure_problems(fig, dpi=120) == ["no suptitle and 1 of 2 panels untitled"]


def test_every_axis_with_a_scale_has_a_label(figure):
    fig, a, b = _good(figure)
    a.set_xlabel("")
    b.set_ylabel("")
    assert figure_problems(fig, dpi=120) == [
        "panel 1 ('growth'): the x axis has no label",
        "panel 2 ('by architecture'): the y axis has no label"]
    b.set_yticks([])  # an axis without a scale needs no name
    assert figure_problems(fig, dpi=120) == ["panel 1 ('growth'): the x axis has no label"]


def test_empty_and_constant_panels(figure):
    fig, (a, b, c) = figure(1, 3, figsize=(9, 3))
    for ax in (a, b, c):
        ax.set(xlabel="x", ylabel="y", title=f"p{fig.axes.index(ax)}")
    a.plot([1, 2, 3], [64, 64, 64], label="local")
    a.plot([1, 2, 3], [64, 64, 64], label="e2e")
    b.plot([1, 2, 3], [1, 2, 3])
    twin = b.twinx()
    twin.plot([1, 2, 3], [0, 0, 0], "^--")
    twin.set_ylabel("count")
    c.set_axis_off()
    problems = figure_problems(fig, dpi=120)
    assert problems == [
        "panel 1 ('p0'): every plotted series is constant (y = 64): say it in words instead "
        "of a flat line",
        "panel 3 ('p2') is empty: drop it or write what it would show",
        "panel 4: every plotted series is constant (y = 0): say it in words instead of a "
        "flat line"]
    c.text(0.5, 0.5, "all 64 latents alive", ha="center")  # words instead: fine
    assert len(figure_problems(fig, dpi=120)) == 2


def test_log_axes_must_not_drop_values(figure):
    fig, ax = figure(figsize=(5, 3.5))
    ax.plot([1, 2, 3, 4], [1e-3, 0.0, -1e-4, 1e-1], "o-", label="gap")
    ax.set(xlabel="atoms", ylabel="gap", yscale="log", title="gap")
    assert figure_problems(fig, dpi=120) == [
        "panel 1 ('gap'): 2 value(s) <= 0 of 'gap' are not drawn on the log y axis: write "
        "them"]


def test_legend_entries_need_a_visible_point_and_legends_stay_off_the_data(figure):
    from matplotlib.patches import Patch

    fig, ax = figure(figsize=(5, 3.5))
    x = np.linspace(0, 1, 50)
    ax.plot(x, x, label="diagonal")
    ax.plot([], [], "s", label="one atom per ray")
    ax.set(xlabel="x", ylabel="y", title="t")
    ax.legend(handles=[*ax.get_legend_handles_labels()[0], Patch(color="red", label="key")],
              loc="upper left")
    problems = figure_problems(fig, dpi=120)
    assert problems == ["panel 1 ('t'): the legend entry 'one atom per ray' has no visible "
                        "point"]  # the proxy patch is a key, not a plotted artist
    ax.legend(loc="center")  # on the diagonal
    assert figure_problems(fig, dpi=120)[-1] == (
        "panel 1 ('t'): the legend covers plotted data ('diagonal'): move it off the data")


def test_legends_over_bars_are_found(figure):
    fig, ax = figure(figsize=(5, 3.5))
    ax.bar(range(4), [1, 1, 1, 1], label="score")
    ax.set(xlabel="method", ylabel="score", title="bars")
    ax.legend(loc="lower left")
    assert figure_problems(fig, dpi=120) == [
        "panel 1 ('bars'): the legend covers plotted data ('score'): move it off the data"]


def test_colliding_tick_labels_are_found_rotated_ones_by_their_rotated_box(figure):
    fig, ax = figure(figsize=(4, 3))
    names = [f"architecture_{i}" for i in range(6)]
    ax.bar(range(6), range(1, 7))
    ax.set_xticks(range(6), names)
    ax.set(ylabel="F1", title="t")
    problems = figure_problems(fig, dpi=120)
    assert len(problems) == 1 and problems[0].startswith("5 pair(s) of text collide: "
                                                         "'architecture_0' and 'architecture_1'")
    ax.set_xticks(range(6), names, rotation=35, ha="right")
    fig.tight_layout()
    assert figure_problems(fig, dpi=120) == []  # their axis-aligned boxes overlap; they don't


def test_heatmap_text_contrast_and_shared_colour_scales(figure):
    fig, (a, b) = figure(1, 2, figsize=(8, 3.4))
    values = np.array([[0.0, 0.05], [-0.05, 0.9]])
    heatmap(a, values, [0, 1], [0, 1], row_title="atom", col_title="feature", title="a",
            cmap="RdBu_r", colorbar_label="cosine", vmin=-1, vmax=1)
    heatmap(b, values, [0, 1], [0, 1], row_title="atom", col_title="feature", title="b",
            cmap="RdBu_r", colorbar_label="cosine", vmin=-1, vmax=1)
    fig.tight_layout()
    assert figure_problems(fig, dpi=120) == []
    # near-white cells: heatmap writes on them in black, as the lint wants
    assert [t.get_color() for t in a.texts] == ["black", "black", "black", "white"]
    for t in a.texts:
        t.set_color("white")
    b.images[0].set_clim(-0.5, 0.5)
    assert figure_problems(fig, dpi=120) == [
        "panel 1 ('a'): 3 cell label(s) under 4.5:1 contrast with their cell (worst 1.1:1, "
        "'0.00')",
        "panel 1 ('a'), panel 2 ('b') show 'cosine' on 2 different colour scales: share one"]


def test_contrast_ratio_and_text_colour():
    assert contrast_ratio("black", "white") == pytest.approx(21.0)
    assert contrast_ratio("0.5", "0.5") == pytest.approx(1.0)
    assert text_color_on("white") == "black" and text_color_on("navy") == "white"
    assert text_color_on((1.0, 1.0, 0.6)) == "black"


def test_figure_problems_refuses_bad_input(figure):
    fig, _, _ = _good(figure)
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure"):
        figure_problems("figure.png")
    for dpi in (0, -1, "high", float("nan"), True):
        with pytest.raises(ValueError, match="dpi must be a positive number"):
            figure_problems(fig, dpi=dpi)
    assert figure_problems(fig, dpi="figure") == []  # the figure's own 110 dpi


def test_the_suite_lints_every_saved_figure(tmp_path):
    """tests/conftest.py fails a test whose saved figure has problems, naming the file and
    each problem, and passes one marked figure_problems_allowed (run in a child pytest on a
    copy of the conftest)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    shutil.copy(root / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_figs.py").write_text(
        "import matplotlib.pyplot as plt\nimport pytest\nfrom toysae.plotting import save_figure"
        "\n\ndef bad(path):\n    fig, ax = plt.subplots(figsize=(5, 3.5))\n"
        "    ax.plot([1, 2, 3], [5, 5, 5])\n    ax.set(xlabel='x', ylabel='y', title='flat')\n"
        "    save_figure(fig, path)\n\n"
        "def test_flat(tmp_path):\n    bad(tmp_path / 'flat.png')\n\n"
        "@pytest.mark.figure_problems_allowed\ndef test_allowed(tmp_path):\n"
        "    bad(tmp_path / 'allowed.png')\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTEST_ADDOPTS"}
    env["PYTHONPATH"] = str(root)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path),
                           str(tmp_path / "test_figs.py")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 passed, 1 error" in done.stdout, done.stdout  # test_flat: passed, then failed
    assert "ERROR at teardown of test_flat" in done.stdout
    assert "flat.png:" in done.stdout and "every plotted series is constant (y = 5)" in \
        done.stdout
    assert "allowed.png" not in done.stdout


@pytest.mark.parametrize(("low", "high", "expected"), [
    # over three decades: at most five labelled decades, small and large ones as 10^k
    (1e-6, 0.3, ["$10^{-6}$", "$10^{-4}$", "0.01"]),
    # under 1.5 decades: 1, 2 and 5 times the powers of ten, written plainly
    (0.01, 0.2, ["0.01", "0.02", "0.05", "0.1", "0.2"]),
])
def test_log_ticks_keep_the_labels_of_a_wide_or_narrow_log_axis_apart(ax, low, high, expected):
    from toysae.plotting import log_ticks

    ax.loglog([low, high], [1, 2])
    ax.set_xlim(low, high)
    log_ticks(ax.xaxis)
    ax.figure.canvas.draw()
    shown = [t.get_text() for t in ax.get_xticklabels()
             if t.get_text() and low <= t.get_position()[0] <= high * 1.0001]
    assert shown == expected
