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
