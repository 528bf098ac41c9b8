"""``toysae.experiments.synthetic_data``: the generator's statistics: measured firing rates
match the expected ones, co-firing follows the copula correlation (none without one), the
3-D toy's samples are its codes times its features; the files it writes; bad configs refused
naming the field."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from toysae import experiments
from toysae.data import SyntheticConfig, SyntheticData
from toysae.experiments import synthetic_data

SMALL = SyntheticConfig(d=16, n_features=24, mean_active=3.0, seed=1)
N = 20_000


@pytest.fixture(scope="module")
def result():
    return synthetic_data.run(synthetic_data.Config(data=SMALL, n_samples=N, n_shown=16))


def test_measured_firing_rates_match_the_expected_ones(result):
    p = SyntheticData(SMALL).probabilities
    np.testing.assert_array_equal(result.expected_rate, p)
    sd = np.sqrt(p * (1 - p) / N)  # binomial standard deviation of each measured rate
    assert (np.abs(result.measured_rate - p) < 5 * sd).all()
    assert result.mean_active == pytest.approx(p.sum(), abs=5 * np.sqrt((p * (1 - p)).sum() / N))
    assert result.measured_rate.sum() == pytest.approx(result.mean_active, rel=1e-12)


def test_co_firing_follows_the_copula_correlation(result):
    """Over the first n_shown = 16 of the 24 features."""
    C, cofire = result.copula_correlation, result.cofiring_correlation
    np.testing.assert_array_equal(C, SyntheticData(SMALL).correlation[:16, :16])
    assert cofire.shape == (16, 16)
    np.testing.assert_allclose(cofire, cofire.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(cofire), 1.0, atol=1e-12)
    upper = np.triu_indices(16, 1)
    assert spearmanr(C[upper], cofire[upper]).statistic > 0.8


def test_without_a_copula_co_firing_is_uncorrelated_and_never_firing_features_are_nan():
    # the last feature fires with probability 1e-7: never in these 20,000 samples
    data = SyntheticConfig(d=8, n_features=10, correlation="none", firing="explicit",
                           rates=(0.3,) * 9 + (1e-7,), seed=0)
    out = synthetic_data.run(synthetic_data.Config(data=data, n_samples=N, n_shown=20))
    assert out.copula_correlation is None
    cofire = out.cofiring_correlation
    assert cofire.shape == (10, 10)  # n_shown is capped at the number of features
    assert np.isnan(cofire[9]).all() and np.isnan(cofire[:, 9]).all()
    off = cofire[:9, :9][~np.eye(9, dtype=bool)]
    assert np.abs(off).max() < 5 / np.sqrt(N)


def test_the_3d_toy_samples_are_codes_times_features(result):
    assert result.toy_features.shape == (6, 3) and result.toy_x.shape == (12, 3)
    np.testing.assert_allclose(result.toy_x, result.toy_codes @ result.toy_features,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(result.toy_features, axis=1), 1.0, rtol=1e-6)


def test_writes_its_json_and_figure(result, tmp_path):
    paths = experiments.save_outputs(synthetic_data, result, tmp_path)
    assert [p.name for p in paths] == ["synthetic-data.json", "synthetic-data.png"]
    numbers = json.loads(paths[0].read_text())
    assert numbers["mean_active"] == result.mean_active
    assert numbers["measured_rate"] == pytest.approx(result.measured_rate.tolist())
    assert synthetic_data.Config.from_dict(numbers["config"]) == result.config
    assert paths[1].stat().st_size > 20_000


def test_bad_configs_are_refused_naming_the_field():
    with pytest.raises(ValueError, match="^toy must be a SyntheticConfig with d=3"):
        synthetic_data.Config(toy=SyntheticConfig(d=4, n_features=6))
    with pytest.raises(ValueError, match="^n_shown must be >= 2"):
        synthetic_data.Config(n_shown=1)
    with pytest.raises(ValueError, match="^n_samples must be >= 1"):
        synthetic_data.Config(n_samples=0)
    with pytest.raises(TypeError, match="^data must be"):
        synthetic_data.Config(data={"d": 3})
