"""The four theory experiments at small sizes: their claims hold and their outputs are written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from toysae.experiments import (
    available,
    dense_1d,
    hierarchy_absorption,
    hull_panels,
    save_outputs,
    wide_limit,
)


def test_experiments_are_registered():
    names = set(available())
    assert {"hull-panels", "hierarchy-absorption", "dense-1d", "wide-limit"} <= names


def test_hull_panels_a_and_c_pass_b_fails(tmp_path):
    result = hull_panels.run(hull_panels.Config.quick())
    a, b, c = result.panels
    assert result.expected_outcome_holds
    assert a.passed and c.passed and not b.passed
    assert a.in_hull_12 and a.in_hull_21 and c.in_hull_12 and c.in_hull_21
    assert not b.in_hull_12 and b.hull_low_12 > b.cos  # the missing chunk
    assert max(a.atom_violation + c.atom_violation) < 1e-10  # exactly stationary
    paths = save_outputs(hull_panels, result, tmp_path)
    assert {p.name for p in paths} == {"hull-panels.png", "hull-panels.json"}
    data = json.loads((tmp_path / "hull-panels.json").read_text())
    assert [p["passed"] for p in data["panels"]] == [True, False, True]
    config = hull_panels.Config.quick()
    assert hull_panels.Config.from_json(config.to_json()) == config


def test_experiment_configs_validate():
    # without a missing chunk below c, panel B's responses would cover c
    with pytest.raises(ValueError, match="missing_gap"):
        hull_panels.Config(missing_gap=0.0)
    with pytest.raises(ValueError, match="straddle zero"):
        dense_1d.Config(low=0.5)
    with pytest.raises(ValueError, match="sizes must be increasing"):
        wide_limit.Config(sizes=(4, 2))


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


def test_wide_limit_gap_shrinks_and_data_rays_attain_the_bound(tmp_path):
    cfg = wide_limit.Config(n_samples=150, sizes=(1, 2, 4), epochs=1)
    result = wide_limit.run(cfg)
    assert all(g >= -1e-9 for g in result.gap)
    assert result.gap[-1] < result.gap[0]
    assert abs(result.data_ray_gap) < 1e-9
    assert len(save_outputs(wide_limit, result, tmp_path)) == 2


def test_hierarchy_truth_is_certified_and_learners_remove_the_nesting(tmp_path):
    cfg = hierarchy_absorption.Config(n_samples=1000, learn_epochs=15, sae_samples=100_000)
    result = hierarchy_absorption.run(cfg)
    truth, learned, sae = result.verdicts
    assert truth.outcome == "hierarchy kept" and truth.certified_drop > 0
    assert not truth.child_pair_in_hull and not truth.passed
    for v in (learned, sae):
        assert v.n_nested == 0 and v.outcome in ("absorption", "splitting"), v.explanation
        # the atom carrying the child has taken in part of the parent direction
        cos = np.asarray(v.cos_to_truth)
        assert cos[:, 1].max() > 0.7 and cos[np.argmax(cos[:, 1]), 0] > 0.2
    assert sae.amortisation_gap is not None and sae.amortisation_gap >= -1e-9
    assert len(save_outputs(hierarchy_absorption, result, tmp_path)) == 2
