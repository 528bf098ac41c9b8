"""``toysae.experiments``: the registry of experiments found by discovery: every experiment
follows the contract (its Config round-trips and checks its annotated fields, ``run`` and
``save`` exist), and the runner writes ``NAME.json`` first, then the experiment's files."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest

from toysae import experiments
from toysae.experiments import available


def test_experiments_are_registered():
    names = set(available())
    assert {"hull-panels", "hierarchy-absorption", "dense-1d", "wide-limit"} <= names


@pytest.mark.parametrize("name", sorted(experiments.available()))
def test_every_experiment_config_checks_its_annotated_fields(name):
    """Each experiment's Config calls validate_fields: a wrong type in any int, float or
    nested-config field is refused naming the field."""
    module = experiments.get(name)
    config = module.Config.quick()
    hints = typing.get_type_hints(module.Config)
    checked = 0
    for f in dataclasses.fields(config):
        hint = hints[f.name]
        if hint in (int, float) or dataclasses.is_dataclass(hint):
            with pytest.raises(TypeError, match=f"^{f.name} must be"):
                dataclasses.replace(config, **{f.name: "text"})
            checked += 1
    assert checked >= 3


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
