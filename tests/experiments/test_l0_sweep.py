"""``toysae.experiments.l0_sweep``: the n-th decoder projection on hand-made decoders, the
selectors' picks on hand-made curves, the targets, the sweep end to end (runs, points,
picks, findings, outputs, kept groups), and bad sweeps refused."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from toysae._threads import torch_threads
from toysae.data import SyntheticConfig
from toysae.experiments import l0_sweep as ls
from toysae.experiments import save_outputs
from toysae.stats import mean_interval, pair_interval


# -- the proxy ----------------------------------------------------------------------------------
def test_the_decoder_projection_is_the_level_n_latents_per_sample_lie_above():
    X = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 0.0, 5.0, 4.0]])
    D = np.eye(4)  # the projections are X itself: 5, 4, 3, 2, 1, 0, 0, 0 sorted
    assert ls.decoder_projection(X, D, ns=(1, 2, 3)) == (3.0, 1.0, 0.0)
    # the decoder bias is taken off first: 4, 3, 2, 1, 0, -1, -1, -1
    assert ls.decoder_projection(X, D, np.ones(4), ns=(1, 2)) == (2.0, 0.0)
    # a rotation of data and decoder together changes nothing; a permuted decoder neither
    Q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))
    assert np.allclose(ls.decoder_projection(X @ Q, D[::-1] @ Q, ns=(1, 2)), (3.0, 1.0))


def test_a_decoder_that_mixes_a_frequent_feature_into_its_atoms_projects_higher():
    """The paper's reading: with n above the true L0, the true features give the lowest s_n;
    hedging the most frequent feature into every other atom raises it."""
    rng = np.random.default_rng(1)
    F = np.eye(16)
    codes = (rng.random((2000, 16)) < 0.15) * rng.uniform(0.5, 1.5, size=(2000, 16))
    codes[:, 0] = rng.uniform(0.5, 1.5, size=2000)  # feature 0 is in every sample
    X = codes @ F
    mixed = F + 0.3 * F[0]
    mixed[0] = F[0]
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    true_l0 = float((codes > 0).sum(axis=1).mean())
    n = int(np.ceil(true_l0)) + 1
    (truth,), (hedged,) = (ls.decoder_projection(X, D, ns=(n,)) for D in (F, mixed))
    assert truth < hedged


@pytest.mark.parametrize("ns, match", [((0,), r"ns\[0\] must be >= 1"),
                                       ((4,), r"ns\[0\] must be <= 3"),
                                       ((), "ns must not be empty")])
def test_the_decoder_projection_refuses_n_outside_the_decoder(ns, match):
    with pytest.raises(ValueError, match=match):
        ls.decoder_projection(np.ones((2, 4)), np.eye(4), ns=ns)
    with pytest.raises(ValueError, match="dictionary must have 4 columns"):
        ls.decoder_projection(np.ones((2, 4)), np.eye(3), ns=(1,))
    with pytest.raises(ValueError, match="b_dec must have shape"):
        ls.decoder_projection(np.ones((2, 4)), np.eye(4), np.ones(3), ns=(1,))


# -- picks on curves ----------------------------------------------------------------------------
def test_extreme_picks_take_the_sparser_of_ties_and_nothing_from_a_flat_curve():
    assert ls.pick_extreme([3.0, 1.0, 1.0, 2.0], "min") == 1
    assert ls.pick_extreme([3.0, 1.0, 4.0, 4.0], "max") == 2
    assert ls.pick_extreme([None, 2.0, 1.0], "min") == 2
    assert ls.pick_extreme([0.0, 0.0, 0.0], "min") is None
    assert ls.pick_extreme([None, None], "max") is None
    with pytest.raises(ValueError, match="rule must be one of"):
        ls.pick_extreme([1.0, 2.0], "median")


def test_the_elbow_is_the_point_farthest_above_the_chord_in_log_l0():
    l0s = [1, 2, 4, 8, 16]  # equally spaced in log: scaled x = 0, .25, .5, .75, 1
    # scaled y = 0, .571, .857, .929, 1: above the chord by 0, .32, .36, .18, 0
    assert ls.pick_elbow(l0s, [0.2, 0.6, 0.8, 0.85, 0.9]) == 2
    assert ls.pick_elbow(l0s[::-1], [0.9, 0.85, 0.8, 0.6, 0.2]) == 2  # any order of points
    assert ls.pick_elbow(l0s, [0.1, 0.2, 0.3, 0.4, 0.5]) is None  # straight in log: no elbow
    assert ls.pick_elbow(l0s, [0.1, 0.11, 0.15, 0.3, 0.9]) is None  # convex: none above
    assert ls.pick_elbow([1, 2], [0.1, 0.5]) is None
    with pytest.raises(ValueError, match="same length"):
        ls.pick_elbow([1, 2, 3], [0.1, 0.2])


def _runs(world, name, seed, table):
    """Runs of one seed from ``table``: target -> dict of the numbers the selectors read."""
    base = dict(k=None, sparsity_coef=None, trained=True, train_message="", f1=0.5,
                absorption=None, projections=(0.0,), lam_matched=0.1,
                lam_matched_l0_error=0.0, code_kkt_max=0.0)
    return [ls.Run(world=world, name=name, seed=seed, target_l0=t, **{**base, **v})
            for t, v in table.items()]


def test_each_selector_picks_on_the_seed_mean_curve_and_is_judged_against_hindsight():
    true_l0 = 4.0
    curves = {  # per target: (mcc, projection, stationarity, gap, kkt, certified, ev)
        1: (0.50, 0.30, 1.0, 0.01, 0.01, 3, 0.40),
        2: (0.70, 0.20, 2.0, 0.02, 0.02, 0, 0.85),
        4: (0.90, 0.10, 3.0, 0.03, 0.03, 0, 0.88),
        8: (0.80, 0.15, 4.0, 0.04, 0.04, 0, 0.90),
        16: (0.60, 0.25, 5.0, 0.05, 0.05, 2, 0.92)}
    consistency = {t: {"value": v, "interval": pair_interval(np.full((3, 3), v)).to_dict()}
                   for t, v in {1: 0.4, 2: 0.9, 4: 0.8, 8: 0.7, 16: 0.6}.items()}
    seed_runs = {}
    for seed, jitter in ((0, -0.01), (1, 0.0), (2, 0.01)):
        seed_runs[seed] = _runs("w", "topk", seed, {
            t: dict(l0=float(t), mcc=m + jitter, projection=p + jitter, stationarity=s,
                    amortisation_gap=g, code_kkt=k, n_certified=c, explained_variance=e)
            for t, (m, p, s, g, k, c, e) in curves.items()})
    points = [ls._point(tuple(r for runs in seed_runs.values() for r in runs
                              if r.target_l0 == t), consistency[t]) for t in curves]
    picks = {p.selector: p for p in ls.select(points, seed_runs, true_l0)}
    assert [p for p in picks] == ["hindsight", *ls.SELECTOR_NAMES]
    expected = {"hindsight": 4, "decoder_projection": 4, "stationarity": 1,
                "amortisation_gap": 1, "code_kkt": 1, "certified_steps": 2,
                "consistency": 2, "ev_elbow": 2}
    assert {s: p.target_l0 for s, p in picks.items()} == expected
    assert picks["decoder_projection"].within and picks["decoder_projection"].versus == "best"
    assert picks["hindsight"].interval("ratio").mean == pytest.approx(1.0)
    assert not picks["consistency"].within  # L0 2 is half the true L0
    assert picks["consistency"].interval("ratio").mean == pytest.approx(0.5)
    # MCC 0.70 +- 0.01 at L0 2 against 0.90 +- 0.01 at L0 4: lower, intervals separate
    assert picks["consistency"].versus == "lower"
    assert picks["consistency"].interval("mcc") == mean_interval([0.69, 0.70, 0.71])
    assert picks["consistency"].seed_ratios is None  # one pick from all seeds together
    assert picks["stationarity"].seed_ratios == (0.25, 0.25, 0.25)
    flat = ls.select(points, {s: [dataclasses.replace(r, n_certified=0) for r in runs]
                              for s, runs in seed_runs.items()}, true_l0)
    assert {p.selector: p.seed_ratios for p in flat}["certified_steps"] == (None,) * 3


def test_targets_round_half_up_and_run_each_integer_once():
    fractions = ls.default_fractions(3, 0.25, 0.5)
    assert fractions == (0.25, 0.353553, 0.5)
    assert ls.targets_of(fractions, 5.0) == (1, 2, 3)  # 1.25, 1.77, 2.5
    assert ls.targets_of(fractions, 4.9) == (1, 2)  # 1.2, 1.7, 2.4
    assert ls.targets_of((0.01, 4.0), 2.0) == (1, 8)  # at least 1
    assert len(ls.default_fractions()) == 9 and ls.default_fractions()[4] == 1.0


def test_the_projection_ladder_depends_on_the_width_alone():
    assert ls.projection_ladder(512) == (1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128,
                                         181, 256, 362)
    assert ls.projection_ladder(24) == (1, 2, 3, 4, 6, 8, 11, 16, 23)
    assert ls.projection_ladder(24, 5) == (1, 2, 3, 4, 5, 6, 8, 11, 16, 23)
    with pytest.raises(ValueError, match="extra must be <= 23"):
        ls.projection_ladder(24, 24)


def test_the_consistency_is_pw_mcc_with_its_jackknife_interval():
    D = np.linalg.qr(np.random.default_rng(2).normal(size=(8, 8)))[0]
    value, interval = ls.consistency_of([D, D[::-1], -D[[1, 0, 2, 3, 4, 5, 6, 7]]])
    assert value == pytest.approx(1.0) and interval["method"] == "jackknife"
    assert interval["n"] == 3 and interval["low"] == pytest.approx(1.0)
    value, interval = ls.consistency_of([np.eye(4)[:2], np.eye(4)[2:]])
    assert value == pytest.approx(0.0) and interval["low"] is None  # one pair: no interval


# -- the sweep ----------------------------------------------------------------------------------
def _small(**changes) -> ls.Config:
    base = dict(synth_small=SyntheticConfig.synth_small(n_features=96, d=24, tree_roots=2),
                reference=ls.reference_world(n_features=48, d=24, mean_active=3.0),
                width=24, architectures=("relu", "topk"), seeds=(0, 1),
                l0_fractions=(0.5, 1.0, 2.0), n_train=2048,
                train=ls.train_recipe(12_000, batch_size=64).replace(l0_gain=0.2), n_eval=512,
                n_check=64, max_steps=5)
    return ls.Config(**{**base, **changes})


@pytest.fixture(scope="module")
def result():
    with torch_threads(1):
        return ls.run(_small())


def test_every_architecture_runs_at_every_target_and_seed_of_every_world(result):
    assert [w.name for w in result.worlds] == ["synth_small", "reference"]
    expected = [(w.name, a, t, s) for w in result.worlds for a in ("relu", "topk")
                for t in w.targets for s in (0, 1)]
    assert [(r.world, r.name, r.target_l0, r.seed) for r in result.runs] == expected
    for w in result.worlds:
        assert w.targets == ls.targets_of((0.5, 1.0, 2.0), w.true_l0)
        assert w.projection_ns == ls.projection_ladder(24)
        assert w.projection_n == min(n for n in w.projection_ns if n >= max(w.targets))
    synth, ref = result.worlds
    assert synth.hierarchy and not ref.hierarchy
    for r in result.runs:
        assert (r.absorption is None) == (r.world == "reference")
        assert 0 <= r.mcc <= 1 and r.explained_variance <= 1 and r.n_certified >= 0
        assert r.stationarity >= 0 and r.code_kkt >= 0 and r.lam_matched > 0
        world = synth if r.world == "synth_small" else ref
        assert len(r.projections) == len(world.projection_ns)
        assert r.projection == r.projections[world.projection_ns.index(world.projection_n)]
        if r.name == "topk":
            assert r.k == r.target_l0 and r.l0 == pytest.approx(r.target_l0)
        else:
            assert r.k is None and r.sparsity_coef > 0
    topk = [r for r in result.runs if r.name == "topk" and r.world == "reference"]
    assert topk[0].mcc != topk[1].mcc  # seeds are different runs


def test_points_are_seed_means_and_picks_cover_every_selector(result):
    for p in result.points:
        group = [r for r in result.runs if (r.world, r.name, r.target_l0)
                 == (p.world, p.name, p.target_l0)]
        assert p.seeds == (0, 1)
        assert p.interval("mcc") == mean_interval([r.mcc for r in group])
        assert (p.interval("absorption") is None) == (p.world == "reference")
        assert 0 <= p.consistency <= 1
        assert p.interval("consistency").mean == pytest.approx(p.consistency)
    assert [(p.world, p.name, p.selector) for p in result.picks] == [
        (w.name, a, s) for w in result.worlds for a in ("relu", "topk")
        for s in ("hindsight", *ls.SELECTOR_NAMES)]
    for p in result.picks:
        if p.target_l0 is not None:
            assert p.within == (abs(p.interval("ratio").mean - 1) <= ls.WITHIN)
    assert len(result.projection_picks) == sum(
        2 * len(w.projection_ns) for w in result.worlds)
    text = " ".join(result.findings)
    for selector in ls.SELECTOR_NAMES:
        assert f"{selector} (" in text
    assert "2 seeds" in text and "Within 20% of the true L0 in every world" in text


def test_outputs_are_written_and_the_selectors_table_renders_from_the_json(result, tmp_path):
    paths = save_outputs(ls, result, tmp_path)
    assert [p.name for p in paths] == ["l0-sweep.json", "l0-sweep.png",
                                       "l0-sweep-selectors.png", "l0-sweep.md"]
    back = json.loads(paths[0].read_text())
    table = ls.report_tables(back)["selectors"]
    assert table == ls.selectors_table(result.worlds, result.picks)
    pick = next(p for p in result.picks if p.selector == "hindsight")
    assert pick.interval("mcc").format(3) in table
    line = ls.caption(back)  # under the figure in the docs
    assert result.findings[-1] in line and "MCC peaks at synth_small relu" in line
    md = paths[-1].read_text()
    assert "## Selectors" in md and "n = " in md and result.findings[0] in md


def test_kept_groups_are_reused_and_a_wider_sweep_trains_only_what_is_new(tmp_path,
                                                                         monkeypatch):
    config = _small(worlds=("reference",), architectures=("topk",), l0_fractions=(1.0,),
                    work_dir=str(tmp_path))
    with torch_threads(1):
        first = ls.run(config)
        trained = []
        real = ls._run

        def counting(name, seed, target, *args):
            trained.append((name, seed, target))
            return real(name, seed, target, *args)

        monkeypatch.setattr(ls, "_run", counting)
        again = ls.run(config)
        assert trained == [] and again.runs == first.runs and again.points == first.points
        wider = ls.run(ls.Config.from_dict({**config.to_dict(), "l0_fractions": [0.5, 1.0]}))
    target = first.worlds[0].targets[0]
    assert {t for _, _, t in trained} == set(wider.worlds[0].targets) - {target}
    assert [r for r in wider.runs if r.target_l0 == target] == list(first.runs)


@pytest.mark.parametrize("changes, error, match", [
    ({"l0_fractions": ()}, ValueError, "l0_fractions must not be empty"),
    ({"l0_fractions": (0.0, 1.0)}, ValueError, r"l0_fractions\[0\] must be > 0"),
    ({"l0_fractions": (-0.5,)}, ValueError, r"l0_fractions\[0\] must be > 0"),
    ({"l0_fractions": (1.0, 0.5)}, ValueError, "l0_fractions must be increasing"),
    ({"l0_fractions": (1.0, 1.0)}, ValueError, "l0_fractions must be increasing"),
    ({"seeds": (0,)}, ValueError, "seeds must hold at least 2 seeds"),
    ({"seeds": (0, 0)}, ValueError, "seeds must not repeat"),
    ({"worlds": ("synth_small", "synth_small")}, ValueError, "worlds must not repeat"),
    ({"worlds": ("tms",)}, ValueError, r"worlds\[0\] must be one of"),
    ({"worlds": ()}, ValueError, "worlds must not be empty"),
    ({"architectures": ("relu", "pca")}, ValueError, r"architectures\[1\]"),
    ({"projection_n": 24}, ValueError, "projection_n must be < width"),
    ({"projection_n": 0}, ValueError, "projection_n must be >= 1"),
    ({"train": ls.train_recipe(1000).replace(target_l0=5.0)}, ValueError, "train.target_l0"),
    ({"width": 8.0}, TypeError, "width must be an int"),
])
def test_bad_config_is_refused(changes, error, match):
    with pytest.raises(error, match=match):
        _small(**changes)
