"""``toysae.check.figure``: ``save_check`` writes the report's JSON and one figure: the sorted
stationarity violations of the live atoms against the tolerance, one hull panel per recorded
pair (its responses, hull, weighted mean and cosine), and a note in place of the panels when
no pair is recorded."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import toysae.plotting as plotting
from toysae._threads import torch_threads
from toysae.check import check_sae_files, save_check
from toysae.data import SyntheticConfig, SyntheticData
from toysae.sae import make_sae
from toysae.sae.checkpoint import save

LAM = 0.05


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The file report of a ReLU SAE holding 8 true features and 4 random atoms, on 600
    activations of a small toy, with two hull panels."""
    root = tmp_path_factory.mktemp("figure")
    data = SyntheticData(SyntheticConfig(d=6, n_features=8, mean_active=2.0, seed=0))
    np.save(root / "acts.npy", data.sample(600, seed=1).x.astype(np.float32))
    sae = make_sae("relu", 6, 12, seed=0)
    with torch.no_grad():
        W = torch.randn(12, 6, generator=torch.Generator().manual_seed(1))
        W[:8] = torch.as_tensor(data.features, dtype=torch.float32)
        W /= W.norm(dim=1, keepdim=True)
        sae.W_dec.copy_(W)
        sae.W_enc.copy_(W.T)
        sae.b_enc.fill_(-0.2)
    save(sae, root / "sae.safetensors")
    with torch_threads(1):
        return check_sae_files(root / "sae.safetensors", root / "acts.npy", lam=LAM,
                               batch_size=256, n_panels=2, progress=False)


@pytest.fixture
def drawn(monkeypatch):
    """The figures ``save_check`` hands to ``save_figure``, in order."""
    figures = []
    original = plotting.save_figure

    def keep(fig, path, **kwargs):
        figures.append(fig)
        return original(fig, path, **kwargs)

    monkeypatch.setattr(plotting, "save_figure", keep)
    return figures


def test_writes_the_json_and_the_figure(report, tmp_path):
    paths = save_check(report, tmp_path / "out", name="mine")
    assert paths == [tmp_path / "out" / "mine.png", tmp_path / "out" / "mine.json"]
    assert paths[1].read_text() == report.to_json()
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[0].stat().st_size > 20_000
    assert [p.name for p in save_check(report, tmp_path)] == ["check.png", "check.json"]
    assert not list(tmp_path.rglob(".*"))  # written atomically: no temporary left


def test_the_left_panel_is_every_live_atoms_sorted_violation(report, tmp_path, drawn):
    save_check(report, tmp_path)
    (fig,) = drawn
    axes = fig.axes
    assert len(axes) == 1 + len(report.hull_samples) == 3
    atoms = report.optimality.atoms
    left = axes[0]
    assert left.get_yscale() == "log"
    line, tol = left.get_lines()
    want = np.maximum(np.sort(atoms.violation[atoms.alive])[::-1], 1e-12)
    np.testing.assert_array_equal(line.get_ydata(), want)
    np.testing.assert_array_equal(line.get_xdata(), np.arange(1, atoms.alive.sum() + 1))
    assert list(tol.get_ydata()) == [atoms.tol, atoms.tol]
    assert left.get_title() == (f"atom stationarity: {atoms.n_violations} of "
                                f"{atoms.violation.size} above tol")
    verdict = "passes every check" if report.passed else "fails"
    title = " ".join(fig.get_suptitle().split())  # wrapped to the figure's width
    assert title.startswith(f"toysae check: relu SAE, 12 latents, 600 activations, lam = "
                            f"{LAM:g}")
    assert title.endswith(f"with optimal codes {verdict}")


def test_each_hull_panel_shows_its_pair(report, tmp_path, drawn):
    save_check(report, tmp_path)
    for ax, sample in zip(drawn[0].axes[1:], report.hull_samples, strict=True):
        assert ax.get_title().startswith(f"pair ({sample.i}, {sample.j}): identity violation")
        assert ("in the hull" if sample.passed else "outside the hull") in ax.get_title()
        cos, mean = ax.get_lines()
        assert list(cos.get_xdata()) == [sample.cos, sample.cos]
        assert list(mean.get_xdata()) == [sample.weighted_mean]
        shown = sum(len(c.get_offsets()) for c in ax.collections[:2])
        assert shown == sample.t.size  # every kept response, alone or co-active
        np.testing.assert_array_equal(np.sort(np.concatenate(
            [c.get_offsets()[:, 0] for c in ax.collections[:2]])), np.sort(sample.t))


def test_no_recorded_pair_leaves_a_note_instead_of_panels(report, tmp_path, drawn):
    paths = save_check(dataclasses.replace(report, hull_samples=()), tmp_path)
    (fig,) = drawn
    assert len(fig.axes) == 2 and not fig.axes[1].axison
    assert [t.get_text() for t in fig.axes[1].texts] == [
        "no pair violates the identity:\nno hull panel to show"]
    assert paths[0].stat().st_size > 10_000
