"""``toysae.experiments.seed_consistency``: PW-MCC between seeds against MCC with the truth, the
per-latent stable/true table on hand-made decoders with known answers, identical seeds, kept
runs, outputs, bad config."""

from __future__ import annotations

import json

import numpy as np
import pytest

from toysae import metrics
from toysae._threads import torch_threads
from toysae.data import SyntheticConfig
from toysae.experiments import architectures_under_theory as aut
from toysae.experiments import save_outputs
from toysae.experiments import seed_consistency as sc
from toysae.sae import start_coef
from toysae.stats import mean_interval, pair_interval

ARCHS = ("relu", "topk", "batchtopk")
SHORT = aut.train_recipe(10_000, batch_size=64)  # where nothing is asked of the training itself


def _small(**changes) -> sc.Config:
    base = dict(data=SyntheticConfig.synth_small(n_features=256, d=32, tree_roots=2),
                width=48, architectures=ARCHS, seeds=(0, 1, 2), l0_fractions=(1.0,),
                n_train=8192, train=aut.train_recipe(60_000, batch_size=64), n_eval=1024,
                n_boot=200)
    return sc.Config(**{**base, **changes})


@pytest.fixture(scope="module")
def result():
    with torch_threads(1):
        return sc.run(_small())


# -- hand-made decoders: every class and kind once, the pair MCCs known ----------------------
E = np.eye(10)
FEATURES = E[:6]  # e6..e9 are no feature's direction
HIERARCHY = ((0, 1),)
SPLIT = 0.8 * E[0] + 0.6 * E[6]  # best feature f0 at 0.8 < 0.9, which e0 also has
MIXTURE = (E[0] + E[1]) / np.sqrt(2)  # parent f0 and child f1
DECODERS = [np.stack([E[0], E[1], E[2], E[8], SPLIT, E[6]]),  # e6 dead below
            np.stack([E[1], E[0], E[2], E[8], MIXTURE, E[7]]),
            np.stack([E[0], E[2], E[1], E[8], E[3], E[4]])]
ALIVE = [np.array([1, 1, 1, 1, 1, 0], bool), np.ones(6, bool), np.ones(6, bool)]


def _trained(decoders, alive):
    pairs = enumerate(zip(decoders, alive, strict=True))
    return [sc._Trained(scores=dict(name="topk", seed=s, target_l0=2, k=2, sparsity_coef=None,
                                    trained=True, train_message="", l0=2.0, mcc=0.5 + 0.1 * s,
                                    explained_variance=0.9, n_dead=int((~a).sum())),
                        decoder=D, alive=a) for s, (D, a) in pairs]


def test_latents_are_classed_against_the_other_seeds_and_the_truth():
    latents = sc.classify_latents(DECODERS, FEATURES, ALIVE, HIERARCHY, 0.9, 0.3)
    # e0, e1, e2 every seed has, and true; e8 every seed has, and no feature
    for lat in latents:
        assert lat["stable"].tolist() == [True] * 4 + [False] * 2
    assert [lat["true"].tolist() for lat in latents] == [
        [True, True, True, False, False, False], [True, True, True, False, False, False],
        [True, True, True, False, True, True]]
    kinds = [[sc.KINDS[k] if k >= 0 else "true" for k in lat["kind"]] for lat in latents]
    assert kinds[0][3:] == ["other", "split", "dead"]
    assert kinds[1][3:] == ["other", "parent_child", "other"]  # e7: like no feature at all
    assert kinds[2][3:] == ["other", "true", "true"]


def test_a_cell_counts_every_latent_once_and_its_pw_mcc_is_the_metric():
    runs, cell = sc.judge_cell(_trained(DECODERS, ALIVE), FEATURES, HIERARCHY, 0.9, 0.3)
    assert [r.counts for r in runs] == [
        {"stable_true": 3, "stable_false": 1, "unstable_true": 0, "unstable_false": 2},
        {"stable_true": 3, "stable_false": 1, "unstable_true": 0, "unstable_false": 2},
        {"stable_true": 3, "stable_false": 1, "unstable_true": 2, "unstable_false": 0}]
    assert cell.counts == {"stable_true": 9, "stable_false": 3, "unstable_true": 2,
                           "unstable_false": 4}
    assert sum(cell.counts.values()) == cell.n_latents == 18
    assert cell.kinds == {"dead": 1, "parent_child": 1, "split": 1, "other": 1}
    # the pairs: seeds 0 and 1 share 4 atoms and match SPLIT with MIXTURE (0.8 / sqrt 2);
    # every other pair shares 4 atoms and nothing else
    m01 = (4 + 0.8 / np.sqrt(2)) / 6
    assert np.array(cell.pair_mcc) == pytest.approx(
        np.array([[1, m01, 4 / 6], [m01, 1, 4 / 6], [4 / 6, 4 / 6, 1]]), abs=1e-12)
    pw = cell.interval("pw_mcc")
    assert pw.mean == pytest.approx(metrics.pairwise_mcc(DECODERS), abs=1e-12)
    assert pw == pair_interval(np.array(cell.pair_mcc)) and pw.method == "jackknife"
    assert runs[0].pair_mcc == pytest.approx((m01 + 4 / 6) / 2, abs=1e-12)
    assert cell.interval("mcc") == mean_interval([0.5, 0.6, 0.7])
    # per-seed shares: seed 2 has 4 stable latents, 3 true; 2 unstable, none false
    assert cell.interval("true_given_stable") == mean_interval([0.75, 0.75, 0.75])
    assert cell.interval("false_given_unstable") == mean_interval([1.0, 1.0, 0.0])


def test_identical_decoders_agree_fully():
    D = np.random.default_rng(0).standard_normal((6, 10))
    runs, cell = sc.judge_cell(_trained([D, D, D], [np.ones(6, bool)] * 3), FEATURES,
                               HIERARCHY, 0.9, 0.3)
    assert cell.interval("pw_mcc").format() == "1.000 [1.000, 1.000]"
    assert cell.counts["stable_true"] + cell.counts["stable_false"] == 18
    assert all(r.pair_mcc == pytest.approx(1.0, abs=1e-12) for r in runs)


def test_classify_latents_refuses_bad_input():
    with pytest.raises(ValueError, match="decoders must hold at least 2"):
        sc.classify_latents(DECODERS[:1], FEATURES, ALIVE[:1], HIERARCHY, 0.9, 0.3)
    with pytest.raises(ValueError, match="alive has 2 masks for 3 decoders"):
        sc.classify_latents(DECODERS, FEATURES, ALIVE[:2], HIERARCHY, 0.9, 0.3)
    with pytest.raises(ValueError, match="threshold"):
        sc.classify_latents(DECODERS, FEATURES, ALIVE, HIERARCHY, 1.5, 0.3)


# -- the experiment at a tiny size --------------------------------------------------------------
def test_every_architecture_runs_at_every_seed_and_target(result):
    assert [(r.name, r.seed, r.target_l0) for r in result.runs] == [
        (n, s, t) for t in result.targets for n in ARCHS for s in (0, 1, 2)]
    assert [(c.name, c.target_l0) for c in result.cells] == [
        (n, t) for t in result.targets for n in ARCHS]
    for r in result.runs:
        assert 0 <= r.mcc <= 1 and r.explained_variance <= 1
        assert sum(r.counts.values()) == result.config.width
        assert sum(r.kinds.values()) == r.counts["unstable_false"]
        if r.name == "relu":  # by the controller, from its low start
            assert r.k is None and r.sparsity_coef != start_coef("l1")
        else:
            assert r.k == r.target_l0 and r.sparsity_coef is None
    assert all(r.l0 == pytest.approx(r.target_l0) for r in result.runs if r.name == "topk")
    # seeds are different runs
    relu = [r for r in result.runs if r.name == "relu"]
    assert len({r.mcc for r in relu}) == len(relu)


def test_cells_summarise_their_seeds(result):
    for c in result.cells:
        mine = [r for r in result.runs if (r.name, r.target_l0) == (c.name, c.target_l0)]
        assert c.seeds == (0, 1, 2) and c.n_latents == 3 * result.config.width
        assert sum(c.counts.values()) == c.n_latents
        assert c.counts == {k: sum(r.counts[k] for r in mine) for k in sc.CLASSES}
        assert c.interval("mcc") == mean_interval([r.mcc for r in mine])
        M = np.array(c.pair_mcc)
        assert c.interval("pw_mcc") == pair_interval(M) and np.allclose(M, M.T)
        assert [r.pair_mcc for r in mine] == pytest.approx(
            [(M[i].sum() - 1) / 2 for i in range(3)], abs=1e-12)
        assert 0 < c.interval("pw_mcc").mean <= 1


def test_findings_carry_intervals_and_seed_counts(result):
    text = " ".join(result.findings)
    assert f"Over the {len(result.cells)} (architecture, L0) cells (3 seeds each)" in text
    assert result.tracking.n == len(result.cells)
    for target in result.targets:
        assert f"At L0 {target}, PW-MCC of topk" in text and "(3 seeds, 95% jackknife" in text
        topk = next(c for c in result.cells if (c.name, c.target_l0) == ("topk", target))
        assert str(topk.interval("pw_mcc")) in text
    assert "above the identity line in" in text


def test_identical_seeds_give_pw_mcc_one(monkeypatch):
    real = aut.train_run
    monkeypatch.setattr(aut, "train_run",
                        lambda name, seed, *args, **kwargs: real(name, 0, *args, **kwargs))
    with torch_threads(1):
        same = sc.run(_small(architectures=("topk",), seeds=(0, 1), l0_fractions=(1.0, 0.5),
                             train=SHORT))
    assert [(r.seed, r.target_l0) for r in same.runs] == [
        (s, t) for t in same.targets for s in (0, 1)]
    assert [c.target_l0 for c in same.cells] == list(same.targets)
    for cell in same.cells:
        assert cell.interval("pw_mcc").mean == pytest.approx(1.0, abs=1e-9)
        assert not cell.interval("pw_mcc").resolved  # two seeds: one pair, no interval
        assert cell.counts["unstable_true"] + cell.counts["unstable_false"] == 0
    assert same.runs[0].mcc == same.runs[1].mcc
    assert "PW-MCC of topk" not in " ".join(same.findings)  # no relu to set it beside


def test_kept_runs_are_reused_and_more_seeds_train_only_the_new(tmp_path, monkeypatch):
    config = _small(architectures=("topk",), seeds=(0, 1), l0_fractions=(1.0,), train=SHORT,
                    work_dir=str(tmp_path))
    trained = []
    real = sc._train_run

    def counting(name, seed, target, *args):
        trained.append((name, seed, target))
        return real(name, seed, target, *args)

    monkeypatch.setattr(sc, "_train_run", counting)
    with torch_threads(1):
        first = sc.run(config)
        assert len(trained) == 2
        again = sc.run(config)
        assert len(trained) == 2 and again.runs == first.runs and again.cells == first.cells
        wider = sc.run(sc.Config.from_dict({**config.to_dict(), "seeds": [0, 1, 2],
                                            "threshold": 0.8}))
    assert trained[2:] == [("topk", 2, first.targets[0])]
    assert [r.mcc for r in wider.runs[:2]] == [r.mcc for r in first.runs]
    assert sorted(p.suffix for p in tmp_path.rglob("topk-seed*")) == [".json"] * 3 + [
        ".safetensors"] * 3


def test_outputs_are_written(result, tmp_path):
    paths = save_outputs(sc, result, tmp_path)
    assert sorted(p.suffix for p in paths) == [".json", ".md", ".png"]
    text = (tmp_path / f"{sc.NAME}.md").read_text()
    cell = result.cells[0]
    assert cell.interval("pw_mcc").format(3) in text and "## Findings" in text
    back = json.loads((tmp_path / f"{sc.NAME}.json").read_text())
    assert back["cells"][0]["intervals"]["pw_mcc"]["method"] == "jackknife"
    summary = sc.report_tables(back)["summary"]  # what toysae report renders from the JSON
    lines = summary.split("\n")
    assert lines[2].startswith("| architecture | target L0 | L0 | MCC with the truth | PW-MCC")
    rows = lines[4:]
    assert len(rows) == len(result.cells)
    assert rows[0] == (f"| {cell.name} | {cell.target_l0} | {cell.interval('l0').format(2)} | "
                       f"{cell.interval('mcc').format(3)} | "
                       f"{cell.interval('pw_mcc').format(3)} | "
                       + " | ".join(str(cell.counts[k]) for k in sc.CLASSES) + " |")
    assert summary == sc.summary_table(result.cells, result.true_l0, 0.9)


@pytest.mark.parametrize("changes, error, match", [
    ({"seeds": (0,)}, ValueError, "seeds must hold at least 2"),
    ({"seeds": ()}, ValueError, "seeds"),
    ({"seeds": (1, 1)}, ValueError, "seeds must not repeat"),
    ({"architectures": ("relu", "pca")}, ValueError, r"architectures\[1\]"),
    ({"architectures": ("relu", "relu")}, ValueError, "architectures must not repeat"),
    ({"l0_fractions": (0.0,)}, ValueError, r"l0_fractions\[0\]"),
    ({"l0_fractions": (1.0, 1.0)}, ValueError, "l0_fractions must not repeat"),
    ({"threshold": 1.5}, ValueError, "threshold"),
    ({"threshold": 0.0}, ValueError, "threshold"),
    ({"mixture_cosine": -0.1}, ValueError, "mixture_cosine"),
    ({"n_train": 32}, ValueError, "n_train must be >= train.batch_size"),
    ({"train": aut.train_recipe(1000).replace(target_l0=5.0)}, ValueError, "train.target_l0"),
    ({"width": "wide"}, TypeError, "width"),
])
def test_bad_config_is_refused_naming_the_field(changes, error, match):
    with pytest.raises(error, match=match):
        _small(**changes)


def test_fractions_that_round_to_one_target_are_refused():
    with pytest.raises(ValueError, match=r"l0_fractions \[1.0, 0.99\] round to the L0 "
                                         r"targets \[10, 10\]"):
        sc._targets(_small(l0_fractions=(1.0, 0.99)), 10.0)
