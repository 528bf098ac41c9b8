"""``toysae.experiments.architectures_under_theory``: matched L0, the scores, the ranking
sentence, outputs, bad config."""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace

import pytest

from toysae._threads import torch_threads
from toysae.data import SyntheticConfig
from toysae.experiments import architectures_under_theory as aut
from toysae.experiments import save_outputs


def _small(**changes) -> aut.Config:
    base = dict(data=SyntheticConfig.synth_small(n_features=256, d=32, tree_roots=2),
                width=64, architectures=("relu", "topk", "matryoshka"), n_train=8192,
                train=aut._train(30_000), calibration_samples=10_000, calibration_rounds=2,
                n_eval=1024, n_check=256, dictlearn_samples=2048, dictlearn_epochs=2,
                track="topk", track_points=3, track_check=128)
    return aut.Config(**{**base, **changes})


@pytest.fixture(scope="module")
def result():
    with torch_threads(1):
        return aut.run(_small())


def test_every_learner_is_scored_at_its_matched_sparsity(result):
    names = [r.name for r in result.rows]
    assert names == ["relu", "topk", "matryoshka", aut.DICTLEARN]
    by = {r.name: r for r in result.rows}
    k = max(1, round(result.true_l0))
    assert by["topk"].k == by["matryoshka"].k == k and by["relu"].k is None
    assert by["topk"].l0 == pytest.approx(k)  # TopK fires exactly k latents
    # short runs pick the first full-length coefficient; the reported run is the
    # full-length run that landed closest to the target
    (cal,) = result.calibrations
    first = min(cal.tried, key=lambda t: abs(math.log(t[1] / result.true_l0)))
    best = min(cal.finals, key=lambda t: abs(math.log(t[1] / result.true_l0)))
    assert cal.name == "relu" and cal.finals[0][0] == first[0]
    assert 1 <= len(cal.finals) <= result.config.final_rounds
    assert cal.chosen == best[0] == by["relu"].sparsity_coef
    for r in result.rows:
        assert 0 <= r.mcc <= 1 and 0 <= r.f1 <= 1 and 0 < r.uniqueness <= 1
        assert 0 <= r.absorption <= 1 and r.explained_variance <= 1
        assert 0 <= r.n_stationary <= r.n_alive <= result.config.width
        assert r.stationarity_median <= r.stationarity_max
        assert (r.amortisation_gap is None) == (r.name == aut.DICTLEARN)
    # dictionary learning minimises the judged objective itself: it is the closest to
    # stationary of all, by a wide margin over the SAEs trained on other objectives
    assert by[aut.DICTLEARN].stationarity_median < min(
        by[n].stationarity_median for n in ("relu", "topk", "matryoshka"))


def test_the_tracked_run_logs_absorption_and_the_theory_along_training(result):
    track = dict(result.track)
    assert set(track) >= {"absorption", "n_certified", "stationarity_median", "mcc"}
    n = len(result.track_samples)
    assert n >= result.config.track_points - 1 and all(len(v) == n for v in track.values())
    assert list(result.track_samples) == sorted(result.track_samples)
    assert result.track_samples[-1] == result.config.train.n_steps * 1024
    # the values, not only the keys: the last point scored the final SAE, so its MCC is the
    # topk row's (the same dictionary against the same features); TopK fires exactly k
    # latents at every point; the theory's counts and drops are what they can be
    by = {r.name: r for r in result.rows}
    assert track["mcc"][-1] == pytest.approx(by["topk"].mcc, rel=1e-12)
    assert track["mcc"][0] != track["mcc"][-1]  # logged along training, not one value copied
    assert all(v == by["topk"].k for v in track["eval_l0"])
    assert all(0 <= v <= 1 for v in track["absorption"])
    assert all(v >= 0 and v == int(v) for v in track["n_certified"])
    assert all((drop > 0) == (n > 0) for n, drop in zip(track["n_certified"],
                                                         track["certified_drop"], strict=True))
    assert all(v > 0 for v in track["stationarity_median"])  # a short SAE run: not stationary


def _orders(ranking: str) -> tuple[list[str], list[str]]:
    """The two orders the ranking sentence states: (here, paper)."""
    match = re.match(r"F1 order here: (.*?); paper: (.*?)\.", ranking)
    assert match, ranking
    return match.group(1).split(" > "), match.group(2).split(" > ")


def test_the_ranking_sentence_names_the_papers_order(result):
    assert "paper: matryoshka > relu" in result.ranking
    assert ("Matryoshka is ahead" in result.ranking) != ("Matryoshka is not ahead"
                                                          in result.ranking)
    # the sentence's order is the rows' F1 order, and its verdicts follow from the rows
    f1 = {r.name: r.f1 for r in result.rows if r.name in aut.PAPER}
    here, paper = _orders(result.ranking)
    assert sorted(here) == sorted(f1) == sorted(paper)
    assert [f1[n] for n in here] == sorted(f1.values(), reverse=True)
    assert [aut.PAPER[n][0] for n in paper] == sorted((aut.PAPER[n][0] for n in f1),
                                                      reverse=True)
    ahead = f1["matryoshka"] == max(f1.values())
    assert ("Matryoshka is ahead on F1" in result.ranking) == ahead
    assert ("Matryoshka is not ahead on F1" in result.ranking) == (not ahead)
    last = f1["relu"] == min(f1.values())
    assert ("(relu) is last on F1" in result.ranking) == last
    assert ("(relu) is not last on F1" in result.ranking) == (not last)


@pytest.mark.parametrize("f1, here, ahead, last", [
    ({"relu": 0.2, "jumprelu": 0.5, "matryoshka": 0.7}, ["matryoshka", "jumprelu", "relu"],
     True, True),
    ({"relu": 0.6, "jumprelu": 0.5, "matryoshka": 0.4}, ["relu", "jumprelu", "matryoshka"],
     False, False),
])
def test_the_ranking_sentence_on_hand_made_rows(f1, here, ahead, last):
    # both verdicts both ways, and a row outside the paper (topk) left out of the orders
    rows = [SimpleNamespace(name=n, f1=v) for n, v in {**f1, "topk": 0.99}.items()]
    ranking = aut._ranking(rows)
    assert _orders(ranking) == (here, ["matryoshka", "jumprelu", "relu"])
    assert ("Matryoshka is ahead on F1" in ranking) == ahead
    assert ("Matryoshka is not ahead on F1" in ranking) == (not ahead)
    assert ("(relu) is last on F1" in ranking) == last
    assert ("(relu) is not last on F1" in ranking) == (not last)
    assert "no ranking" in aut._ranking(rows[:1] + rows[-1:])


def test_outputs_are_written(result, tmp_path):
    paths = save_outputs(aut, result, tmp_path)
    assert sorted(p.suffix for p in paths) == [".json", ".md", ".png"]
    text = (tmp_path / f"{aut.NAME}.md").read_text()
    assert "| matryoshka | k=" in text and "0.879 / 0.793" in text
    back = json.loads((tmp_path / f"{aut.NAME}.json").read_text())
    assert [r["name"] for r in back["rows"]] == [r.name for r in result.rows]


@pytest.mark.parametrize("changes, error, match", [
    ({"architectures": ("relu", "pca")}, ValueError, r"architectures\[1\]"),
    ({"architectures": ()}, ValueError, "architectures must not be empty"),
    ({"track": "gated"}, ValueError, "track must be one of"),
    ({"lam": 0.0}, ValueError, "lam must be > 0"),
    ({"width": 8.0}, TypeError, "width must be an int"),
    ({"data": SyntheticConfig(d=8, n_features=16)}, ValueError, "must have a hierarchy"),
])
def test_bad_config_is_refused(changes, error, match):
    with pytest.raises(error, match=match):
        _small(**changes)
