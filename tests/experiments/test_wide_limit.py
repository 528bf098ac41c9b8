"""``toysae.experiments.wide_limit`` (wide-limit) at a small size: the gap shrinks with the
width and the data rays attain the bound, its outputs are written, and its config is
checked."""

from __future__ import annotations

import pytest

from toysae.experiments import save_outputs, wide_limit


def test_wide_limit_gap_shrinks_and_data_rays_attain_the_bound(tmp_path):
    cfg = wide_limit.Config(n_samples=150, sizes=(1, 2, 4), epochs=1)
    result = wide_limit.run(cfg)
    assert all(g >= -1e-9 for g in result.gap)
    assert result.gap[-1] < result.gap[0]
    assert abs(result.data_ray_gap) < 1e-9
    assert len(save_outputs(wide_limit, result, tmp_path)) == 2


def test_the_config_needs_increasing_sizes():
    with pytest.raises(ValueError, match="sizes must be increasing"):
        wide_limit.Config(sizes=(4, 2))
