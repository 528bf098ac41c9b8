"""``toysae.experiments.wide_limit`` (wide-limit) at a small size: the gap shrinks with the
width and the data rays attain the bound, every solve converges (or its unconverged samples
are counted and named on the figure), its outputs are written, and its config is checked."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from toysae import _io
from toysae.dictlearn import sparse_code
from toysae.experiments import save_outputs, wide_limit


@pytest.fixture(scope="module")
def result():
    return wide_limit.run(wide_limit.Config(n_samples=150, sizes=(1, 2, 4, 16), epochs=1))


def test_wide_limit_gap_shrinks_and_data_rays_attain_the_bound(result, tmp_path):
    assert all(g >= -1e-9 for g in result.gap)
    assert result.gap[-1] < result.gap[0]
    assert abs(result.data_ray_gap) < 1e-9
    assert len(save_outputs(wide_limit, result, tmp_path)) == 2


def test_every_solve_converges_even_with_many_nearly_parallel_atoms(result):
    # 16 atoms in 2-D: FISTA's old 3,000 iterations left samples unconverged here
    assert result.solver_success == (True,) * 4 and result.unconverged == (0,) * 4


def test_unconverged_samples_are_counted():
    rng = np.random.default_rng(0)
    X = np.abs(rng.normal(size=(40, 2)))
    D = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    lam = 0.05
    sol = sparse_code(X, D, lam, dtype=torch.float64, tol=1e-9, max_iter=100_000)
    assert sol.success and wide_limit._unconverged(X, D, sol.codes, lam, 1e-6) == 0
    far = np.linalg.norm(X, axis=1) > 2 * lam  # zero codes miss where a sample is not tiny
    assert wide_limit._unconverged(X, D, np.zeros((40, 3)), lam, 1e-6) >= far.sum() > 30


def test_the_figure_names_the_unconverged_sizes(result, tmp_path, monkeypatch):
    late = dataclasses.replace(result, solver_success=(True, True, True, False),
                               unconverged=(0, 0, 0, 7))
    titles = []
    monkeypatch.setattr(_io, "FIGURE_HOOKS",
                        [*_io.FIGURE_HOOKS, lambda fig, path, kw: titles.append(
                            fig.get_suptitle())])
    wide_limit.save(late, tmp_path)
    assert "codes not converged at 16 (7 of 150 samples) atoms" in " ".join(titles[0].split())


def test_the_config_needs_increasing_sizes():
    with pytest.raises(ValueError, match="sizes must be increasing"):
        wide_limit.Config(sizes=(4, 2))
