"""``toysae.cli``: the toysae command: list, data, run (with ``--set``, ``--config`` and
``--print-config``), help, output folders refused before running (a quick run never over a
full one; demo writes figures/quick), report and report --check, errors in one line, and
Ctrl-C (a real SIGINT) a one-line message and exit code 130."""

import json
import signal
import time

import pytest
from child_processes import finish, kill_group, start, wait_until

from toysae import experiments
from toysae.cli import main
from toysae.experiments.overrides import resolve_config


def test_list_shows_experiments(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "synthetic-data" in out


def test_data_writes_figure_and_numbers(tmp_path, capsys):
    assert main(["data", "--quick", "--out", str(tmp_path)]) == 0
    png = tmp_path / "synthetic-data.png"
    assert png.stat().st_size > 10_000
    numbers = json.loads((tmp_path / "synthetic-data.json").read_text())
    assert abs(numbers["mean_active"] - 5.0) < 0.1
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    assert str(tmp_path) in capsys.readouterr().out


def test_unknown_experiment(capsys):
    assert main(["run", "no-such-thing"]) == 2
    assert "experiment must be one of" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no-such-thing"):
        experiments.get("no-such-thing")


def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "demo" in capsys.readouterr().out


@pytest.fixture
def runs(monkeypatch):
    """Record experiment runs instead of running them."""
    calls = []

    def fake_run(name, *, quick=False, out_dir="figures", config=None):
        calls.append(name)
        return []

    monkeypatch.setattr(experiments, "run_experiment", fake_run)
    return calls


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("toysae: "), err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("command", [["data", "--quick"], ["run", "synthetic-data"], ["demo"]])
def test_an_unwritable_output_folder_is_refused_before_running(tmp_path, capsys, runs, command):
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    for out in (a_file, a_file / "sub"):
        assert main([*command, "--out", str(out)]) == 2
        err = _one_line_error(capsys)
        assert "cannot write to the output folder" in err and str(out) in err
    assert runs == []  # refused before any experiment ran
    assert main([*command, "--out", str(tmp_path / "new" / "folder")]) == 0
    assert runs and (tmp_path / "new" / "folder").is_dir()
    assert list((tmp_path / "new" / "folder").iterdir()) == []  # the probe left nothing


def test_demo_writes_to_figures_quick_by_default(tmp_path, capsys, runs, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    assert runs == sorted(experiments.available())
    assert (tmp_path / "figures" / "quick").is_dir()
    assert capsys.readouterr().out.endswith(
        f"figures and numbers are in {tmp_path / 'figures' / 'quick'}\n")


@pytest.mark.parametrize("command", [["data", "--quick"], ["run", "synthetic-data", "--quick"],
                                     ["demo"]])
def test_a_quick_run_over_a_full_result_is_refused_before_running(tmp_path, capsys, runs,
                                                                   command):
    full = experiments.get("synthetic-data").Config()
    stored = tmp_path / "synthetic-data.json"
    stored.write_text(json.dumps({"config": json.loads(full.to_json())}))
    assert main([*command, "--out", str(tmp_path)]) == 2
    err = _one_line_error(capsys)
    assert f"{stored} holds a synthetic-data result from a config other than the quick" in err
    assert runs == []


def test_a_read_only_output_folder_is_refused(tmp_path, capsys, runs, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)

    def denied(*args, **kwargs):  # what the kernel says to a non-root user (root may write)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.TemporaryFile", denied)
    assert main(["data", "--out", str(ro)]) == 2
    err = _one_line_error(capsys)
    assert f"cannot write to the output folder {ro}: Permission denied" in err and runs == []


@pytest.mark.parametrize("error", [ValueError("lr must be > 0,\n  got -1"),
                                   TypeError("seed must be an int"),
                                   OSError(28, "No space left on device"),
                                   RuntimeError("training diverged between step 1 and 2")])
def test_errors_are_reported_in_one_line_not_a_traceback(tmp_path, capsys, monkeypatch, error):
    def failing_run(*args, **kwargs):
        raise error

    monkeypatch.setattr(experiments, "run_experiment", failing_run)
    assert main(["run", "synthetic-data", "--out", str(tmp_path)]) == 2
    err = _one_line_error(capsys)
    assert " ".join(str(error).split()) in err


@pytest.mark.parametrize("name", sorted(experiments.available()))
def test_print_config_of_every_experiment_is_a_config_file_for_it(name, tmp_path, capsys):
    assert main(["run", name, "--quick", "--set", "seed=1" if name != "synthetic-data"
                 else "n_shown=5", "--print-config"]) == 0
    printed = capsys.readouterr().out
    module = experiments.get(name)
    expected = resolve_config(module.Config, quick=True,
                              sets=["seed=1" if name != "synthetic-data" else "n_shown=5"])
    assert module.Config.from_json(printed) == expected
    path = tmp_path / "config.json"
    path.write_text(printed)
    assert resolve_config(module.Config, config_file=path) == expected


def test_cli_run_takes_overrides_and_reports_bad_ones_in_one_line(tmp_path, capsys):
    assert main(["run", "dense-1d", "--quick", "--set", "n_samples=200", "--set",
                 "learn_seeds=1", "--set", "learn_epochs=1", "--out", str(tmp_path)]) == 0
    numbers = json.loads((tmp_path / "dense-1d.json").read_text())
    assert numbers["config"]["n_samples"] == 200 and len(numbers["learned"]) == 1
    capsys.readouterr()
    for argv, match in [
        (["--set", "lamm=0.1"], "lamm: Config has no such key; valid keys: n_samples"),
        (["--set", "n_samples=2.5"], "n_samples=2.5: expected int"),
        (["--set", "low=3"], "config: the data must straddle zero"),
        (["--config", str(tmp_path / "none.json")], "--config: no file"),
    ]:
        assert main(["run", "dense-1d", *argv, "--print-config"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("toysae: ") and match in err and err.count("\n") == 1


def test_device_sets_the_device_field_and_is_refused_where_there_is_none(capsys):
    assert main(["run", "synthsaebench", "--quick", "--device", "cuda", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["device"] == "cuda"
    assert main(["run", "dense-1d", "--quick", "--device", "cuda", "--print-config"]) == 2
    assert "--device: dense-1d has no device field" in _one_line_error(capsys)


# Seconds of work after the output folder appears, so the Ctrl-C lands inside the run on a
# fast idle machine too (a tiny run finished within the wait before the signal, exit 0).
LONG_DENSE = ["--set", "n_samples=100000", "--set", "learn_seeds=6"]


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_ctrl_c_is_one_line_exit_130_and_leaves_no_temporary_file(tmp_path, command):
    out = tmp_path / "out"
    if command == "run":
        argv = ["run", "dense-1d", "--quick", *LONG_DENSE, "--out", str(out)]
        started = out.is_dir  # the output folder is made just before the run starts
    else:  # two local worker processes running points
        argv = ["sweep", "dense-1d", "--quick", "--grid", "seed=0,1,2,3", *LONG_DENSE,
                "--n-jobs", "2", "--out", str(out)]
        started = (out / "summary.json").is_file
    child = start(["-m", "toysae.cli", *argv])
    wait_until(started, child, what=f"toysae {command} under way")
    time.sleep(0.3)
    kill_group(child, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    code, printed, err = finish(child)
    assert code == 130, err
    lines = err.splitlines()
    assert lines[0] == "toysae: interrupted" and "Traceback" not in err, err
    # Nothing more, but for what Python's resource tracker (a process of its own) may warn
    # at exit, now and then, about the semaphores of workers ended mid-way.
    rest = "\n".join(lines[1:])
    assert not rest or "resource_tracker: There appear to be" in rest, err
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary file anywhere


def _repository(tmp_path, readme: str):
    """A repository with README.md and an architectures-under-theory result stored as
    save_outputs stores it (the fields its report reads)."""
    from toysae.experiments import architectures_under_theory as aut
    from toysae.experiments.provenance import provenance
    from toysae.stats import mean_interval

    interval = mean_interval([0.5, 0.6]).to_dict()
    summary = aut.Summary(name="topk", target_l0=10, seeds=(0, 1),
                          intervals={m: interval for m in aut.SUMMARY_METRICS})
    data = {"provenance": provenance(aut, aut.Config()), "config": {"lam": 0.1},
            "targets": [10], "true_l0": 10.2, "summaries": [summary.to_dict()]}
    (tmp_path / "figures" / "full").mkdir(parents=True)
    path = tmp_path / "figures" / "full" / "architectures-under-theory.json"
    path.write_text(json.dumps(data))
    (tmp_path / "README.md").write_text(readme)
    return path


REGION = "<!-- report:architectures-under-theory:summary -->\n<!-- /report -->\n"


def test_report_renders_the_tables_and_check_names_the_stale_ones(tmp_path, capsys):
    path = _repository(tmp_path, "# r\n" + REGION)
    where = "README.md:2: report:architectures-under-theory:summary"
    assert main(["report", "--check", "--root", str(tmp_path)]) == 1
    assert capsys.readouterr().out == (
        f"{where} is stale: it differs from what "
        "figures/full/architectures-under-theory.json renders (run toysae report)\n")
    assert (tmp_path / "README.md").read_text() == "# r\n" + REGION  # --check writes nothing
    assert main(["report", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"rendered {where}\n"
    assert "| topk | 10 | 0.55 [" in (tmp_path / "README.md").read_text()
    assert main(["report", "--check", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "every report table matches its JSON\n"
    assert main(["report", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "every report table already matches its JSON\n"
    path.write_text(path.read_text().replace('"mean": 0.55', '"mean": 0.56', 1))
    assert main(["report", "--check", "--root", str(tmp_path)]) == 1
    assert where in capsys.readouterr().out


@pytest.mark.parametrize("change, message", [
    (lambda path: path.unlink(), "architectures-under-theory.json: no such file"),
    (lambda path: path.write_text('{"config": {}}'),
     "architectures-under-theory.json: no 'provenance' block"),
    (lambda path: path.write_text(path.read_text().replace('"schema_version": 1',
                                                           '"schema_version": 7')),
     "architectures-under-theory.json: schema version 7, this toysae reads version 1"),
])
def test_report_on_a_missing_or_foreign_json_is_one_line_naming_it(tmp_path, capsys, change,
                                                                   message):
    change(_repository(tmp_path, REGION))
    for argv in (["report"], ["report", "--check"]):
        assert main([*argv, "--root", str(tmp_path)]) == 2
        assert message in _one_line_error(capsys)
    assert (tmp_path / "README.md").read_text() == REGION
