"""``toysae.experiments.hull_panels`` (hull-panels) at its quick size: panels A and C pass
and B fails, its outputs are written, and its config is checked."""

from __future__ import annotations

import json

import pytest

from toysae.experiments import hull_panels, save_outputs


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


def test_the_config_needs_a_missing_gap():
    # without a missing chunk below c, panel B's responses would cover c
    with pytest.raises(ValueError, match="missing_gap"):
        hull_panels.Config(missing_gap=0.0)
