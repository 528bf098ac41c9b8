"""``toysae.experiments.e2e_pareto``, the e2e-pareto experiment: quick run, its files, what
its numbers must satisfy, and its findings calling a difference only where the intervals
over seeds separate."""

import json

import numpy as np
import pytest

from toysae.experiments import e2e_pareto, save_outputs
from toysae.experiments.e2e_pareto import (
    MATCHED,
    Config,
    Matched,
    Sweep,
    at_matched_ce,
    compare_modes,
    interpolate_at,
)
from toysae.stats import mean_interval


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
    seeds = list(result.config.seeds)
    assert [(s["mode"], s["seed"]) for s in data["sweeps"]] == \
        [(m, s) for m in ("local", "e2e", "e2e_ds") for s in seeds]
    assert [(s["mode"], s["seed"]) for s in data["tms_sweeps"]] == \
        [(m, s) for m in ("local", "e2e") for s in seeds]
    text = (tmp_path / "e2e-pareto.md").read_text()
    assert "| CE increase (nats) | mode | L0 |" in text and f"Training seeds {seeds}" in text


def test_sweeps_trade_sparsity_for_fidelity(result):
    for sweep in result.sweeps + result.tms_sweeps:
        order = np.argsort(sweep.coefs)
        l0 = np.array(sweep.l0)[order]
        assert l0[0] > l0[-1]  # a larger penalty, fewer active latents
        assert all(0 <= a <= result.config.width for a in sweep.alive)
    local = result.sweeps[0]
    assert max(local.ce_increase) > min(local.ce_increase) > -1e-3
    # the seeds train different SAEs on the same host
    a, b = (s for s in result.sweeps if s.mode == "local")
    assert a.seed != b.seed and a.l0 != b.l0


def test_matched_intervals_are_the_t_intervals_of_the_per_seed_values(result):
    assert result.matched, "the quick sweeps' CE ranges must overlap"
    for row in result.matched:
        runs = [s for s in result.sweeps if s.mode == row.mode]
        assert row.seeds == tuple(s.seed for s in runs) == result.config.seeds
        for s in runs:  # the target is inside every seed's sweep: nothing extrapolated
            assert min(s.ce_increase) < row.target < max(s.ce_increase)
        for metric, *_ in MATCHED:
            per_seed = tuple(interpolate_at(np.array(s.ce_increase),
                                            np.array(getattr(s, metric)), row.target)
                             for s in runs)
            assert row.values[metric] == per_seed
            assert row.interval(metric) == mean_interval(per_seed)
            assert row.interval(metric).resolved  # two seeds: an interval


def test_e2e_needs_fewer_active_latents_at_matched_ce(result):
    means = {(r.mode, r.target): r.interval("l0").mean for r in result.matched}
    for mode, target in means:
        if mode == "e2e":
            assert means[("e2e", target)] < means[("local", target)]
    assert result.findings and result.findings[0].startswith(
        f"at CE increase {result.matched[0].target:.3g} nats, local vs e2e (means over 2 seeds")


def _sweep(mode, seed, ce, l0):
    n = len(ce)
    return Sweep(mode=mode, seed=seed, divergence_name="kl", coefs=tuple(range(1, n + 1)),
                 ce_increase=tuple(ce), divergence=tuple(ce), l0=tuple(l0), alive=(5.0,) * n,
                 fvu=(0.1,) * n, mmcs=(0.9,) * n, mcc=(0.9,) * n, functional_mmcs=(0.9,) * n,
                 nuisance_mmcs=(0.5,) * n)


def test_matched_targets_lie_inside_every_seeds_sweep():
    sweeps = (_sweep("local", 0, (0.01, 0.1), (20.0, 10.0)),
              _sweep("local", 1, (0.02, 0.2), (22.0, 12.0)),
              _sweep("e2e", 0, (0.005, 0.08), (9.0, 4.0)))
    rows = at_matched_ce(sweeps, n_targets=2)
    assert [r.mode for r in rows] == ["local", "e2e"] * 2
    targets = sorted({r.target for r in rows})
    np.testing.assert_allclose(targets, np.geomspace(0.02, 0.08, 4)[1:-1])
    local = rows[0]
    assert local.seeds == (0, 1) and rows[1].seeds == (0,)
    assert local.values["l0"] == (interpolate_at(np.array([0.01, 0.1]), np.array([20, 10.0]),
                                                 targets[0]),
                                  interpolate_at(np.array([0.02, 0.2]), np.array([22, 12.0]),
                                                 targets[0]))
    assert not rows[1].interval("l0").resolved  # one seed: no interval
    assert at_matched_ce((_sweep("local", 0, (0.01, 0.02), (2, 1)),
                          _sweep("e2e", 0, (0.03, 0.04), (2, 1)))) == ()


def _row(mode, **values):
    metrics = {m: values.get(m, (1.0, 2.0, 3.0)) for m, *_ in MATCHED}
    n = len(next(iter(metrics.values())))
    return Matched(mode=mode, target=0.05, seeds=tuple(range(n)), values=metrics,
                   intervals={m: mean_interval(v).to_dict() for m, v in metrics.items()})


def test_findings_call_a_difference_only_where_the_intervals_separate():
    local = _row("local", l0=(10.0, 11.0, 12.0), alive=(90.0, 91.0, 92.0),
                 functional_mmcs=(0.90, 0.91, 0.92))
    e2e = _row("e2e", l0=(10.5, 11.5, 12.5), alive=(60.0, 61.0, 62.0),
               functional_mmcs=(0.80, 0.81, 0.82))
    (sentence,) = compare_modes((local, e2e))
    assert sentence.startswith("at CE increase 0.05 nats, local vs e2e (means over 3 seeds")
    assert "L0 not resolved at 3 seeds (local 11.00 [" in sentence  # overlapping
    assert "e2e has fewer alive latents than local (local 91.0 [" in sentence
    assert "e2e has lower functional MMCS than local" in sentence
    assert "nuisance MMCS not resolved at 3 seeds" in sentence  # the same values
    # one seed each: no interval, nothing called however far apart the means
    (sentence,) = compare_modes((_row("local", l0=(10.0,), alive=(90.0,), functional_mmcs=(1,),
                                      nuisance_mmcs=(1,)),
                                 _row("e2e", l0=(2.0,), alive=(9.0,), functional_mmcs=(0,),
                                      nuisance_mmcs=(0,))))
    assert sentence.count("not resolved at 1 seed") == len(MATCHED) and "has" not in sentence
    three = compare_modes((local, e2e, _row("e2e_ds", l0=(1.0, 1.1, 1.2))))
    assert [s.split(" (")[0].split(", ")[1] for s in three] == \
        ["local vs e2e", "local vs e2e_ds", "e2e vs e2e_ds"]
    assert "e2e_ds has lower L0 than local" in three[1]


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


@pytest.mark.parametrize("seeds, error, match", [
    ((), ValueError, "seeds must not be empty"),
    ((0, 1, 0), ValueError, r"seeds must not repeat, got \[0, 1, 0\]"),
    ((0, -1), ValueError, r"seeds\[1\]"),
    ((0.5,), TypeError, r"seeds\[0\]")])
def test_bad_seeds_are_refused_naming_seeds(seeds, error, match):
    with pytest.raises(error, match=match):
        Config(seeds=seeds)
