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
    stored = json.loads(paths[0].read_text())
    assert list(stored)[0] == "provenance"  # first, where a reader opening the file sees it
    block = stored.pop("provenance")
    assert block["experiment"] == "synthetic-data" and block["preset"] == "quick"
    assert stored == json.loads(result.to_json())  # then the result's own fields, unchanged
    assert module.Config.from_dict(stored["config"]) == config

    def broken_figure(result, out_dir):
        raise RuntimeError("the figure failed")

    monkeypatch.setattr(module, "save", broken_figure)
    out = tmp_path / "again"
    with pytest.raises(RuntimeError, match="the figure failed"):
        experiments.save_outputs(module, result, out)
    assert [p.name for p in out.iterdir()] == ["synthetic-data.json"]  # the numbers are kept


def _stored(module, config, out_dir):
    """A result of ``module`` at ``config`` as save_outputs stores it, without running it
    (the guard reads only the stored config)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{module.NAME}.json"
    path.write_text(json.dumps({"provenance": {}, "config": json.loads(config.to_json())}))
    return path


def test_a_quick_result_never_replaces_one_from_another_config(tmp_path):
    module = experiments.get("synthetic-data")
    quick, full = module.Config.quick(), module.Config()
    path = _stored(module, full, tmp_path / "full")
    before = path.read_text()
    with pytest.raises(ValueError, match=f"{path}.*quick run never replaces it"):
        experiments.check_replaceable(module, quick, tmp_path / "full")
    with pytest.raises(ValueError, match="quick run never replaces it"):
        experiments.run_experiment("synthetic-data", quick=True, out_dir=tmp_path / "full")
    custom = dataclasses.replace(quick, n_shown=quick.n_shown + 1)
    _stored(module, custom, tmp_path / "custom")
    with pytest.raises(ValueError, match="quick run never replaces it"):
        experiments.save_outputs(module, module.run(quick), tmp_path / "custom")
    assert path.read_text() == before
    # what may replace what: the same quick config again, any config over a quick one, and
    # a quick one where nothing (or nothing of ours) is stored
    _stored(module, quick, tmp_path / "quick")
    experiments.check_replaceable(module, quick, tmp_path / "quick")
    experiments.check_replaceable(module, full, tmp_path / "quick")
    experiments.check_replaceable(module, custom, tmp_path / "full")
    experiments.check_replaceable(module, quick, tmp_path / "empty")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "synthetic-data.json").write_text("[1, 2]")
    experiments.check_replaceable(module, quick, tmp_path / "foreign")
