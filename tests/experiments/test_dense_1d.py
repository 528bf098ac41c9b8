"""``toysae.experiments.dense_1d`` (dense-1d) at a small size: the antipodal pair is optimal
with and without a bias, its outputs are written, and its config is checked."""

from __future__ import annotations

import pytest

from toysae.experiments import dense_1d, save_outputs


def test_dense_1d_pair_is_optimal_with_and_without_bias(tmp_path):
    cfg = dense_1d.Config(n_samples=400, learn_seeds=1, learn_epochs=1)
    result = dense_1d.run(cfg)
    assert result.pair_passed and result.pair_bias_passed and result.pair_cos_in_hull
    assert abs(result.gaps["pair"]) < 1e-9 and abs(result.gaps["pair + bias"]) < 1e-9
    assert result.gaps["single +1"] > 1.0
    assert min(result.firing_rate) > 0.2 and min(result.firing_rate_bias) > 0.2  # dense
    assert cfg.low < result.bias < cfg.high
    for atoms, gap, _ in result.learned:
        assert gap >= -1e-9 and (gap < 1e-6) == (sorted(atoms) == [-1.0, 1.0])
    assert len(save_outputs(dense_1d, result, tmp_path)) == 2


def test_the_config_needs_data_that_straddles_zero():
    with pytest.raises(ValueError, match="straddle zero"):
        dense_1d.Config(low=0.5)
