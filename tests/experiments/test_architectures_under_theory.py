"""``toysae.experiments.architectures_under_theory``: controlled L0 over seeds and targets, the
three theory lenses, intervals and the verdicts drawn from them, kept runs, outputs, bad
config."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest

from toysae._threads import torch_threads
from toysae.data import SyntheticConfig
from toysae.experiments import architectures_under_theory as aut
from toysae.experiments import provenance, save_outputs
from toysae.sae import start_coef
from toysae.stats import mean_interval

ARCHS = ("relu", "topk", "matryoshka")


def _small(**changes) -> aut.Config:
    base = dict(data=SyntheticConfig.synth_small(n_features=256, d=32, tree_roots=2),
                width=64, architectures=ARCHS, seeds=(0, 1), l0_fractions=(1.0, 0.5),
                n_train=8192, train=aut.train_recipe(60_000, batch_size=64), n_eval=1024,
                n_check=256, dictlearn_samples=2048, dictlearn_epochs=2, track="topk",
                track_points=3, track_check=128, n_boot=200)
    return aut.Config(**{**base, **changes})


@pytest.fixture(scope="module")
def result():
    with torch_threads(1):
        return aut.run(_small())


def test_every_learner_runs_at_every_seed_and_target_at_its_l0(result):
    t_full, t_half = result.targets
    assert (t_full, t_half) == (round(result.true_l0), max(1, round(0.5 * result.true_l0)))
    expected = [(n, s, t) for t in result.targets for n in ARCHS for s in (0, 1)]
    saes = [r for r in result.runs if r.name != aut.DICTLEARN]
    assert [(r.name, r.seed, r.target_l0) for r in saes] == expected
    assert [(r.name, r.seed) for r in result.runs[len(saes):]] == [(aut.DICTLEARN, 0),
                                                                    (aut.DICTLEARN, 1)]
    for r in saes:
        if r.name == "relu":  # trained by the controller to the target, from the low start
            assert r.k is None and r.trained, r.train_message
            assert r.sparsity_coef != start_coef("l1")
            assert abs(r.l0_error) <= aut.L0_TOLERANCE
        else:
            assert r.k == r.target_l0 and r.sparsity_coef is None
    assert all(r.l0 == pytest.approx(r.target_l0) for r in saes if r.name == "topk")
    # seeds are different runs: the same learner and target, different dictionaries
    relu = [r for r in saes if r.name == "relu" and r.target_l0 == t_full]
    assert relu[0].mcc != relu[1].mcc
    for r in result.runs:
        assert 0 <= r.mcc <= 1 and 0 <= r.f1 <= 1 and 0 < r.uniqueness <= 1
        assert 0 <= r.absorption <= 1 and r.explained_variance <= 1
        assert 0 <= r.n_stationary <= r.n_alive <= result.config.width
        assert r.stationarity_median <= r.stationarity_max
        assert (r.amortisation_gap is None) == (r.name == aut.DICTLEARN)
        assert r.decoder_angle >= 0 and 0 <= r.decoder_loss_drop <= 1


def test_the_matched_lens_asks_each_decoder_at_its_own_l0(result):
    saes = [r for r in result.runs if r.name != aut.DICTLEARN]
    for r in saes:
        assert r.lam_matched > 0 and r.lam_matched_l0_error <= result.config.lam_rtol
    # a sparser target needs a larger lam for the same kind of decoder
    for name in ARCHS:
        lams = {t: np.mean([r.lam_matched for r in saes if r.name == name
                            and r.target_l0 == t]) for t in result.targets}
        assert lams[result.targets[1]] > lams[result.targets[0]]
    # dictionary learning's codes are optimal at lam itself: both lenses agree on it, and it
    # is the closest to stationary at its objective by a wide margin
    dl = [r for r in result.runs if r.name == aut.DICTLEARN]
    assert all(r.lam_matched == result.config.lam for r in dl)
    assert all(r.stationarity_matched == r.stationarity_median for r in dl)
    assert max(r.stationarity_median for r in dl) < min(r.stationarity_median for r in saes)


def test_summaries_are_the_seed_means_with_t_intervals(result):
    assert len(result.summaries) == len(ARCHS) * len(result.targets) + 1
    for s in result.summaries:
        mine = [r for r in result.runs if r.name == s.name and r.target_l0 == s.target_l0]
        assert s.seeds == (0, 1) == tuple(r.seed for r in mine)
        for metric in ("f1", "mcc", "decoder_angle", "stationarity_matched"):
            expected = mean_interval([getattr(r, metric) for r in mine])
            assert s.interval(metric) == expected
        assert (s.interval("amortisation_gap") is None) == (s.name == aut.DICTLEARN)


def _summary(name, f1s, target=5):
    return aut.Summary(name=name, target_l0=target, seeds=tuple(range(len(f1s))),
                       intervals={"f1": mean_interval(f1s).to_dict(),
                                  "mcc": mean_interval(f1s).to_dict()})


def test_the_ranking_sentence_calls_an_order_only_where_intervals_separate():
    summaries = [_summary("matryoshka", [0.80, 0.81, 0.82]),  # paper: first
                 _summary("batchtopk", [0.60, 0.61, 0.62]),   # paper: second (ties jumprelu)
                 _summary("jumprelu", [0.85, 0.86, 0.87]),    # ahead of matryoshka here
                 _summary("relu", [0.50, 0.70, 0.90]),        # overlaps everything
                 _summary("topk", [0.99, 0.99, 0.99])]        # not in the paper: left out
    text = aut.ranking_sentence(summaries, 5)
    # four of the paper's names: 6 pairs, less batchtopk = jumprelu (tied in the paper);
    # relu's interval overlaps every other, so its 3 pairs are not resolved
    assert text.startswith("At L0 5: of the paper's 5 pairwise F1 orders")
    assert "Reversed here: matryoshka > jumprelu." in text
    assert "Reproduced: matryoshka > batchtopk." in text
    assert "1 reproduced, 1 reversed and 3 not resolved at 3 seeds" in text
    assert "topk" not in text.split("among")[1].split(",")[0]
    one_seed = [_summary("matryoshka", [0.9]), _summary("relu", [0.1])]
    assert "0 reproduced, 0 reversed and 1 not resolved at 1 seed " in aut.ranking_sentence(
        one_seed, 5)
    assert "fewer than two" in aut.ranking_sentence(summaries[-1:], 5)


def test_the_summary_table_lists_every_learner_by_target_dictionary_learning_last():
    def summary(name, target, f1s):
        return dataclasses.replace(_summary(name, f1s, target), intervals={
            **_summary(name, f1s).intervals, "l0": mean_interval([4.0, 5.0]).to_dict()})

    rows = [summary("topk", 8, [0.7, 0.8]), summary("relu", 6, [0.5, 0.6]),
            summary(aut.DICTLEARN, None, [0.9, 0.91]), summary("relu", 8, [0.4, 0.5])]
    text = aut.summary_table(rows, (8, 6), 7.654, 0.1)
    lines = text.split("\n")
    assert lines[0] == ("True L0 7.65; each cell the mean over 2 seeds [95% Student-t "
                        "interval]; dictlearn solves the L1 objective at lam = 0.1.")
    assert lines[2:4] == ["| learner | target L0 | L0 | MCC | F1 |", "|---|---|---|---|---|"]
    assert [line.split(" | ")[:2] for line in lines[4:]] == [
        ["| topk", "8"], ["| relu", "8"], ["| relu", "6"], ["| dictlearn", "-"]]
    f1 = mean_interval([0.7, 0.8]).format(3)
    assert lines[4] == f"| topk | 8 | {mean_interval([4.0, 5.0]).format(2)} | {f1} | {f1} |"
    data = {"summaries": [r.to_dict() for r in rows], "targets": [8, 6], "true_l0": 7.654,
            "config": {"lam": 0.1}}
    assert aut.report_tables(json.loads(json.dumps(data))) == {"summary": text}


def test_findings_call_a_lead_only_where_intervals_separate():
    run = SimpleNamespace(name="relu", seed=0, target_l0=5, l0=5.05, l0_error=0.01,
                          trained=True)
    clear = [_summary("relu", [0.80, 0.81, 0.82]), _summary("topk", [0.50, 0.51, 0.52])]
    close = [_summary("relu", [0.60, 0.70, 0.80]), _summary("topk", [0.62, 0.66, 0.70])]
    text = " ".join(aut.findings([run], clear, (), (5,)))
    assert "relu leads on f1" in text and "intervals separate" in text
    assert "held-out L0 within 3% of its target: True" in text
    text = " ".join(aut.findings([run], close, (), (5,)))
    assert "relu has the highest mean f1" in text and "not resolved at 3 seeds" in text
    assert "none predicts the truth" in text
    missed = SimpleNamespace(**{**vars(run), "l0": 6.0, "l0_error": 0.2, "trained": False})
    text = " ".join(aut.findings([run, missed], clear, (), (5,)))
    assert "target: False (largest miss: relu, seed 0, target 5: L0 6.00, +20.0%)" in text
    assert "reported a miss: relu seed 0 target 5" in text


def test_correlations_pair_every_theory_number_with_the_truth():
    fields = dict.fromkeys(aut.THEORY, 0.0)
    runs = [SimpleNamespace(**{**fields, "decoder_angle": 10.0 - i, "amortisation_gap": None
                               if i == 0 else float(i % 2), "f1": 0.1 * i, "mcc": 0.5})
            for i in range(6)]
    found = aut.correlate(runs, 200, 0, target_l0=5)
    assert all(c.target_l0 == 5 for c in found)
    by = {(c.theory, c.truth): c for c in found}
    assert set(by) == {(t, m) for t in aut.THEORY for m in aut.TRUTH}
    angle = by[("decoder_angle", "f1")]  # perfectly anti-ordered
    assert angle.rho == pytest.approx(-1.0) and angle.resolved and angle.n == 6
    assert by[("decoder_angle", "mcc")].rho is None
    assert "mcc is the same in every run" in by[("decoder_angle", "mcc")].reason
    assert "stationarity_median is the same" in by[("stationarity_median", "f1")].reason
    assert by[("amortisation_gap", "f1")].n == 5  # the run without a gap is left out


def test_correlations_are_taken_within_each_target_and_pooled(result):
    groups = [c.target_l0 for c in result.correlations]
    assert groups == [t for t in (*result.targets, None) for _ in aut.THEORY for _ in aut.TRUTH]
    saes = [r for r in result.runs if r.name != aut.DICTLEARN]
    for c in result.correlations:
        mine = [r for r in saes if c.target_l0 in (None, r.target_l0)]
        assert c.n == len(mine)
    text = " ".join(result.findings)
    for target in result.targets:
        assert f"Over the SAE runs at L0 {target}," in text
    assert "pooled over the targets" in text


def test_the_tracked_run_logs_absorption_and_the_theory_along_training(result):
    track = dict(result.track)
    assert set(track) == set(aut.TRACKED)
    n = len(result.track_samples)
    assert n >= result.config.track_points - 1 and all(len(v) == n for v in track.values())
    assert list(result.track_samples) == sorted(result.track_samples)
    topk = next(r for r in result.runs if r.name == "topk" and r.seed == 0
                and r.target_l0 == result.targets[0])
    # the last point scored the final SAE: its MCC is that run's
    assert track["mcc"][-1] == pytest.approx(topk.mcc, rel=1e-12)
    assert track["mcc"][0] != track["mcc"][-1]
    assert all(v == topk.k for v in track["eval_l0"])
    assert all(0 <= v <= 1 for v in track["absorption"])
    assert all(v >= 0 and v == int(v) for v in track["n_certified"])


def test_kept_runs_are_reused_and_a_larger_run_trains_only_what_is_new(tmp_path, monkeypatch):
    config = _small(architectures=("topk",), seeds=(0,), l0_fractions=(1.0,),
                    work_dir=str(tmp_path), track="topk")
    with torch_threads(1):
        first = aut.run(config)
        trained = []
        real = aut._sae_run

        def counting(name, seed, target, *args):
            trained.append((name, seed, target))
            return real(name, seed, target, *args)

        monkeypatch.setattr(aut, "_sae_run", counting)
        again = aut.run(config)
        assert trained == [] and again.runs == first.runs and again.track == first.track
        wider = aut.run(aut.Config.from_dict({**config.to_dict(), "seeds": [0, 1]}))
    assert trained == [("topk", 1, first.targets[0])]
    assert wider.runs[0] == first.runs[0]
    assert len(list(tmp_path.rglob("*.json"))) == 4  # topk x 2 seeds, dictlearn x 2 seeds
    # each kept run says which code made it (the checkout's commit, as save_outputs records)
    kept = json.loads(next(tmp_path.rglob("topk-seed0-*.json")).read_text())
    assert (kept["commit"], kept["dirty"]) == provenance.source_state()
    # a change of what a run computes (here n_check) keeps its runs apart
    other = aut._Store(aut.Config.from_dict({**config.to_dict(), "n_check": 128}))
    assert other.root != aut._Store(config).root


def test_outputs_are_written(result, tmp_path):
    paths = save_outputs(aut, result, tmp_path)
    assert sorted(p.suffix for p in paths) == [".json", ".md", ".png"]
    text = (tmp_path / f"{aut.NAME}.md").read_text()
    for target in result.targets:
        assert f"## L0 target {target}" in text
    assert "| matryoshka | " in text and "0.879 / 0.793" in text
    relu = next(s for s in result.summaries if s.name == "relu")
    assert relu.interval("f1").format(3) in text
    assert "Does a theory number predict the truth?" in text
    back = json.loads((tmp_path / f"{aut.NAME}.json").read_text())
    assert [r["name"] for r in back["runs"]] == [r.name for r in result.runs]
    assert back["summaries"][0]["intervals"]["f1"]["method"] == "t"
    summary = aut.report_tables(back)["summary"]  # what toysae report renders from the JSON
    assert relu.interval("f1").format(3) in summary and relu.interval("l0").format(2) in summary


@pytest.mark.parametrize("changes, error, match", [
    ({"architectures": ("relu", "pca")}, ValueError, r"architectures\[1\]"),
    ({"architectures": ()}, ValueError, "architectures must not be empty"),
    ({"architectures": ("relu", "relu", "topk")}, ValueError, "architectures must not repeat"),
    ({"seeds": ()}, ValueError, "seeds must not be empty"),
    ({"seeds": (0, 1, 0)}, ValueError, "seeds must not repeat"),
    ({"seeds": (-1,)}, ValueError, r"seeds\[0\]"),
    ({"l0_fractions": (1.0, 1.0)}, ValueError, "l0_fractions must not repeat"),
    ({"l0_fractions": (0.0,)}, ValueError, r"l0_fractions\[0\]"),
    ({"l0_fractions": ()}, ValueError, "l0_fractions must not be empty"),
    ({"train": aut.train_recipe(1000).replace(target_l0=5.0)}, ValueError, "train.target_l0"),
    ({"track": "gated"}, ValueError, "track must be one of"),
    ({"lam": 0.0}, ValueError, "lam must be > 0"),
    ({"width": 8.0}, TypeError, "width must be an int"),
    ({"data": SyntheticConfig(d=8, n_features=16)}, ValueError, "must have a hierarchy"),
])
def test_bad_config_is_refused(changes, error, match):
    with pytest.raises(error, match=match):
        _small(**changes)
