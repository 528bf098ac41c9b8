"""The toysae command and the experiment registry."""

import json

import pytest

from toysae import experiments
from toysae.cli import main


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


def test_every_experiment_follows_the_contract():
    for name in experiments.available():
        module = experiments.get(name)
        config = module.Config.quick()
        assert type(config).from_json(config.to_json()) == config
        assert callable(module.run) and callable(module.save)


def test_the_runner_writes_the_json_first_then_the_experiments_files(tmp_path, monkeypatch):
    module = experiments.get("synthetic-data")
    config = module.Config.quick()
    result = module.run(config)
    paths = experiments.save_outputs(module, result, tmp_path)
    assert [p.name for p in paths] == ["synthetic-data.json", "synthetic-data.png"]
    assert (tmp_path / "synthetic-data.json").read_text() == result.to_json()
    assert module.Config.from_dict(json.loads(paths[0].read_text())["config"]) == config

    def broken_figure(result, out_dir):
        raise RuntimeError("the figure failed")

    monkeypatch.setattr(module, "save", broken_figure)
    out = tmp_path / "again"
    with pytest.raises(RuntimeError, match="the figure failed"):
        experiments.save_outputs(module, result, out)
    assert [p.name for p in out.iterdir()] == ["synthetic-data.json"]  # the numbers are kept


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
