"""``toysae.experiments.sweep`` (toysae sweep): a grid of configs, each point its own
process, one summary table."""

import json

import pytest

from toysae.cli import main
from toysae.experiments.overrides import ConfigError
from toysae.experiments.sweep import headline, parse_grid, point_name, sweep

# dense-1d at its smallest: about a second a point once a worker has imported toysae.
SMALL = ["n_samples=300", "learn_seeds=1", "learn_epochs=1"]


def test_a_2x2_grid_runs_in_two_processes_and_writes_the_summary(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "dense-1d", "--quick", "--grid", "lam=0.1,0.2", "--grid",
                 "seed=0,1", *[a for s in SMALL for a in ("--set", s)], "--n-jobs", "2",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 points of dense-1d: all ok" in printed and "[4/4]" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["success"] and summary["grid"] == {"lam": [0.1, 0.2], "seed": [0, 1]}
    assert summary["base"] == {"quick": True, "sets": SMALL, "config_file": None}
    names = ["lam=0.1,seed=0", "lam=0.1,seed=1", "lam=0.2,seed=0", "lam=0.2,seed=1"]
    assert [p["name"] for p in summary["points"]] == names
    for point in summary["points"]:
        folder = out / point["name"]
        config = json.loads((folder / "config.json").read_text())
        assert (config["lam"], config["seed"]) == (point["values"]["lam"],
                                                    point["values"]["seed"])
        assert config["n_samples"] == 300 and config["learn_seeds"] == 1
        numbers = json.loads((folder / "dense-1d.json").read_text())
        assert numbers["config"] == config
        assert point["status"] == "ok" and point["wall_time"] > 0
        # The headline numbers are the result's top-level scalars.
        assert point["headline"]["bias"] == numbers["bias"]
        assert point["headline"]["pair_passed"] is numbers["pair_passed"]
    assert len({p["headline"]["bias"] for p in summary["points"]}) == 4
    table = (out / "summary.md").read_text()
    assert "| point | lam | seed | status | wall (s) | bias |" in table
    assert all(f"| {name} | " in table for name in names)
    assert not list(out.glob(".*")) and not list(out.glob("*/.*"))  # no temporary files


def test_a_failing_point_is_recorded_and_the_others_run(tmp_path, capsys):
    out = tmp_path / "sweep"
    # A directory where the point's figure must go: its save fails, in the worker.
    (out / "seed=1" / "dense-1d.png").mkdir(parents=True)
    seen = []
    result = sweep("dense-1d", {"seed": ["0", "1", "2"]}, quick=True, sets=SMALL,
                   out_dir=out, n_jobs=1, on_point=lambda p, done, total: seen.append(done))
    assert not result.success and result.message == "3 points of dense-1d: 1 failed"
    assert [p.status for p in result.points] == ["ok", "failed", "ok"] and seen == [1, 2, 3]
    failed = result.points[1]
    assert failed.message.startswith("IsADirectoryError: ") and "\n" not in failed.message
    assert "Traceback" in (out / "seed=1" / "error.txt").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert [p["status"] for p in summary["points"]] == ["ok", "failed", "ok"]
    assert failed.message in (out / "summary.md").read_text()
    # The CLI exits nonzero when a point failed.
    assert main(["sweep", "dense-1d", "--quick", "--grid", "seed=1,2", "--n-jobs", "1",
                 *[a for s in SMALL for a in ("--set", s)], "--out", str(out)]) == 1
    assert "1 failed" in capsys.readouterr().out


def test_a_broken_worker_marks_the_points_it_did_not_run(tmp_path, monkeypatch):
    from toysae.experiments import sweep as sweep_module

    def dies(index, *args):
        if index == 1:
            raise RuntimeError("worker lost\nsecond line")
        return real(index, *args)

    real = sweep_module._run_point
    monkeypatch.setattr(sweep_module, "_run_point", dies)
    result = sweep("dense-1d", {"seed": [0, 1, 2]}, quick=True, sets=SMALL,
                   out_dir=tmp_path, n_jobs=1)
    assert [p.status for p in result.points] == ["ok", "failed", "failed"]
    assert result.points[2].message == "not run: RuntimeError: worker lost"
    assert not result.success


def test_bad_sweeps_are_refused_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "never"
    cases = [
        (dict(grid={"lamm": ["0.1"]}), ConfigError, "lamm: Config has no such key"),
        (dict(grid={"lam": ["0.1", "x"]}), ConfigError, "grid point lam=x: lam=x: expected"),
        (dict(grid={"low": ["-1", "3"]}), ConfigError, "grid point low=3: config: the data"),
        (dict(grid={"lam": ["0.1"]}, sets=["lam=0.2"]), ConfigError, "both swept"),
        (dict(grid={"lam": []}), ConfigError, "non-empty list"),
        (dict(grid={}), ValueError, "at least one key"),
        (dict(grid={"lam": ["0.1"]}, n_jobs=0), ValueError, "n_jobs"),
        (dict(grid={"lam": ["0.1"]}, n_jobs=1.5), TypeError, "n_jobs"),
        (dict(grid={"lam": ["0.1"]}, backend="nonsense"), ValueError, "backend 'nonsense'"),
    ]
    for kwargs, kind, match in cases:
        with pytest.raises(kind, match=match):
            sweep("dense-1d", out_dir=out, **kwargs)
    with pytest.raises(ValueError, match="experiment must be one of"):
        sweep("no-such-thing", {"seed": [0]}, out_dir=out)
    assert not out.exists()
    assert main(["sweep", "dense-1d", "--grid", "lam=0.1", "--grid", "lam=0.2",
                 "--out", str(out)]) == 2
    assert "given twice" in capsys.readouterr().err
    assert not out.exists()


def test_grid_parsing_names_and_headlines():
    assert parse_grid(["sizes=[1,2],[4,8]", "lam=0.1,0.2"]) == {
        "sizes": ["[1,2]", "[4,8]"], "lam": ["0.1", "0.2"]}
    with pytest.raises(ConfigError, match="empty"):
        parse_grid(["lam=0.1,"])
    assert point_name({"train.lr": 0.01, "sizes": (1, (2, 3)), "ids": None}) == \
        "train.lr=0.01,sizes=1-2-3,ids=none"
    assert point_name({"name": "a b/c", "on": True}) == "name=a-b-c,on=True"

    class Fake:
        def to_dict(self):
            return {"config": {"seed": 3}, "score": 0.5, "ok": True, "n": 4,
                    "nan": float("nan"), "curve": [1, 2], "label": "x",
                    "toy": {"mmcs": 0.9, "frames": [0], "deep": {"dead": 2}}}

    assert headline(Fake()) == {"score": 0.5, "ok": True, "n": 4, "toy.mmcs": 0.9,
                                "toy.deep.dead": 2}
