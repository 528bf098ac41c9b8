"""``toysae.plotting``: the package style is applied to matplotlib's settings, and the
annotated heat-map writes every cell's value (NaN as "-"), in a colour readable on its cell,
under the labels and titles it is given."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from toysae.plotting import STYLE, heatmap, save_figure, style


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
    # values up to the midpoint of the finite range (5, not their mean 3.4) in white, on the
    # dark end of the colour map; the rest, and NaN's "-" on a blank cell, in black
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
