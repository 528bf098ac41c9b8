"""``toysae.experiments.e2e_pareto``, the e2e-pareto experiment: quick run, its files, and
what its numbers must satisfy."""

import json

import numpy as np
import pytest

from toysae.experiments import e2e_pareto, save_outputs
from toysae.experiments.e2e_pareto import Config, interpolate_at


@pytest.fixture(scope="module")
def result():
    return e2e_pareto.run(Config.quick())


def test_quick_run_writes_its_files(result, tmp_path):
    paths = save_outputs(e2e_pareto, result, tmp_path)
    assert sorted(p.name for p in paths) == ["e2e-pareto-tms.png", "e2e-pareto.json",
                                             "e2e-pareto.md", "e2e-pareto.png"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    data = json.loads((tmp_path / "e2e-pareto.json").read_text())
    assert Config.from_json(json.dumps(data["config"])) == result.config
    assert [s["mode"] for s in data["sweeps"]] == ["local", "e2e", "e2e_ds"]
    assert "| CE increase (nats) | mode |" in (tmp_path / "e2e-pareto.md").read_text()


def test_sweeps_trade_sparsity_for_fidelity(result):
    for sweep in result.sweeps + result.tms_sweeps:
        order = np.argsort(sweep.coefs)
        l0 = np.array(sweep.l0)[order]
        assert l0[0] > l0[-1]  # a larger penalty, fewer active latents
        assert all(0 <= a <= result.config.width for a in sweep.alive)
    local = result.sweeps[0]
    assert max(local.ce_increase) > min(local.ce_increase) > -1e-3


def test_e2e_needs_fewer_active_latents_at_matched_ce(result):
    assert result.matched, "the quick sweeps' CE ranges must overlap"
    rows = {(mode, target): l0 for mode, target, l0, *_ in result.matched}
    for mode, target in rows:
        if mode == "e2e":
            assert rows[("e2e", target)] < rows[("local", target)]
    assert result.findings and "L0 local" in result.findings[0]


def test_interpolation_is_log_linear_and_refuses_to_extrapolate():
    ce, y = np.array([0.01, 0.1]), np.array([10.0, 20.0])
    assert interpolate_at(ce, y, np.sqrt(0.001)) == pytest.approx(15.0)
    assert np.isnan(interpolate_at(ce, y, 0.5))


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="e2e_coefs"):
        Config(e2e_coefs=())
    with pytest.raises(ValueError, match=r"local_coefs\[0\]"):
        Config(local_coefs=(-0.1,))
    with pytest.raises(TypeError, match="host"):
        Config(host=3)
