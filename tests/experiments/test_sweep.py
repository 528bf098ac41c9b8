"""``toysae.experiments.sweep`` (toysae sweep): a grid of configs, each point its own
process, one summary table; on a real dask.distributed cluster the same files; a killed
sweep rerun keeps the points it finished, intact, and runs the rest."""

import json
import signal
import sys

import pytest
from child_processes import finish, kill_group, start

from toysae.cli import main
from toysae.experiments.overrides import ConfigError
from toysae.experiments.sweep import COMPLETE, headline, parse_grid, point_name, sweep

# dense-1d at its smallest: about a second a point once a worker has imported toysae.
SMALL = ["n_samples=300", "learn_seeds=1", "learn_epochs=1"]
SMALL_SETS = [a for s in SMALL for a in ("--set", s)]


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

    def dies(index, *args, **kwargs):
        if index == 1:
            raise RuntimeError("worker lost\nsecond line")
        return real(index, *args, **kwargs)

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
        (dict(grid={"lam": ["0.1"]}, scheduler="tcp://127.0.0.1:9"), ValueError,
         "for backend='dask', not 'loky'"),
        (dict(grid={"lam": ["0.1"]}, backend="dask", scheduler="tcp://127.0.0.1:9",
              n_jobs=2), ValueError, "n_jobs=2 sizes the LocalCluster"),
        (dict(grid={"lam": ["0.1"]}, backend="dask", scheduler=5), TypeError, "scheduler"),
        (dict(grid={"lam": ["0.1"]}, force=1), TypeError, "force must be a bool"),
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


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _without(summary: dict, *keys) -> dict:
    """The summary without per-run fields (wall times, folders)."""
    drop = {"wall_time", "out_dir", "paths", *keys}
    return {k: ([{pk: pv for pk, pv in p.items() if pk not in drop} for p in v]
                if k == "points" else v) for k, v in summary.items() if k not in drop}


@pytest.mark.slow
def test_a_sweep_on_a_dask_cluster_writes_what_loky_writes(tmp_path):
    import distributed
    import matplotlib.image

    grid = ["--grid", "lam=0.1,0.2", "--grid", "seed=0,1"]
    base = ["sweep", "dense-1d", "--quick", *grid, *SMALL_SETS]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        assert main([*base, "--backend", "dask", "--scheduler", cluster.scheduler_address,
                     "--out", str(tmp_path / "dask")]) == 0
    assert main([*base, "--n-jobs", "2", "--out", str(tmp_path / "loky")]) == 0
    dask, loky = tmp_path / "dask", tmp_path / "loky"
    assert _files(dask) == _files(loky) and len(_files(dask)) == 4 * 4 + 2
    for name in _files(dask):
        if name.endswith(".png"):  # figures: the same pixels (metadata may differ)
            assert (matplotlib.image.imread(dask / name)
                    == matplotlib.image.imread(loky / name)).all(), name
        elif name.endswith(COMPLETE):  # the same hashes; the report's wall time differs
            a, b = (json.loads((root / name).read_text()) for root in (dask, loky))
            assert a["files"] == b["files"]
        elif not name.startswith("summary"):  # configs and the numbers, byte for byte
            assert (dask / name).read_bytes() == (loky / name).read_bytes(), name
    summaries = [json.loads((root / "summary.json").read_text()) for root in (dask, loky)]
    assert _without(summaries[0]) == _without(summaries[1])
    assert summaries[0]["success"] and len(summaries[0]["points"]) == 4


# A dask worker preload (run in every worker process as it starts, a dask setting): the
# dense-1d point at seed 1 kills its own worker with SIGKILL.
KILL_SEED_1 = """
import os
import signal

import toysae.experiments.dense_1d as dense_1d

_run = getattr(dense_1d, "_unpatched_run", dense_1d.run)
dense_1d._unpatched_run = _run


def run(config):
    if config.seed == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return _run(config)


dense_1d.run = run
"""


@pytest.mark.slow
def test_points_failing_on_dask_workers_are_reported_and_the_rest_kept(tmp_path, capsys):
    import dask

    preload = tmp_path / "kill_seed_1.py"
    preload.write_text(KILL_SEED_1)
    out = tmp_path / "sweep"
    (out / "seed=2" / "dense-1d.png").mkdir(parents=True)  # seed 2's save raises
    with dask.config.set({"distributed.worker.preload": [str(preload)]}):
        # No --scheduler: the sweep starts its own LocalCluster, which retries no point.
        assert main(["sweep", "dense-1d", "--quick", "--grid", "seed=0,1,2,3", *SMALL_SETS,
                     "--backend", "dask", "--n-jobs", "2", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "4 points of dense-1d: 2 failed" in printed
    summary = json.loads((out / "summary.json").read_text())
    points = {p["name"]: p for p in summary["points"]}
    assert [p["status"] for p in summary["points"]] == ["ok", "failed", "failed", "ok"]
    killed = points["seed=1"]["message"]
    assert killed.startswith("WorkerDied: the dask worker running it died") and \
        killed.endswith("on 1 attempt")
    assert (out / "seed=1" / "error.txt").read_text().strip() == killed
    assert points["seed=2"]["message"].startswith("IsADirectoryError: ")
    assert "Traceback" in (out / "seed=2" / "error.txt").read_text()
    for ok in ("seed=0", "seed=3"):  # the others' results are kept
        assert points[ok]["headline"]["bias"] == json.loads(
            (out / ok / "dense-1d.json").read_text())["bias"]
        assert (out / ok / COMPLETE).is_file() and not (out / ok / "error.txt").exists()
    assert not (out / "seed=1" / COMPLETE).exists()
    assert killed in (out / "summary.md").read_text()


def test_a_killed_sweep_reruns_only_the_points_it_had_not_finished(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "dense-1d", "--quick", "--grid", "seed=0,1,2,3", *SMALL_SETS,
            "--n-jobs", "1", "--out", str(out)]
    child = start(["-m", "toysae.cli", *argv])
    first = child.stdout.readline()
    kill_group(child, signal.SIGKILL)  # while the second point runs
    code, rest, err = finish(child)
    assert first.startswith("[1/4] seed=0: ok") and code == -signal.SIGKILL, (first, err)
    finished = {p.parent.name for p in out.glob(f"*/{COMPLETE}")}
    assert "seed=0" in finished and len(finished) < 4
    before = {name: (out / name / "dense-1d.json").stat().st_mtime_ns for name in finished}

    # The same command again: the finished points are kept, untouched; the rest run.
    assert main(argv) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    kept = {p["name"] for p in summary["points"] if p["kept"]}
    assert kept == finished and f"({len(kept)} kept from an earlier run)" in printed
    assert "[1/4] seed=0: ok (kept from an earlier run, files intact)" in printed
    assert all((out / name / "dense-1d.json").stat().st_mtime_ns == t
               for name, t in before.items())
    assert all(p["status"] == "ok" for p in summary["points"])
    assert not list(out.glob(".*")) and not list(out.glob("*/.*"))

    # Kept only while intact: a changed output (here one byte of the JSON) runs again.
    numbers = out / "seed=0" / "dense-1d.json"
    numbers.write_text(numbers.read_text().replace('"bias": ', '"bias": -', 1))
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [p["kept"] for p in summary["points"]] == [False, True, True, True]
    assert '"bias": -' not in numbers.read_text()
    # --force reruns them all; a config changed by --set is another point's config.
    assert main([*argv, "--force"]) == 0
    assert not any(p["kept"] for p in json.loads((out / "summary.json").read_text())["points"])
    assert main([*argv, "--set", "lam=0.3"]) == 0
    assert not any(p["kept"] for p in json.loads((out / "summary.json").read_text())["points"])
    capsys.readouterr()


def test_the_dask_backend_without_the_cluster_extra_says_what_to_install(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    out = tmp_path / "never"
    assert main(["sweep", "dense-1d", "--grid", "seed=0", "--backend", "dask",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == ("toysae: backend='dask' needs dask.distributed, which is not installed: "
                   "pip install 'toysae[cluster]'\n")
    assert not out.exists()
