"""sites-and-recipes (the package's ``__init__``: the experiment) at its quick size: it is
registered, its config round-trips, and it writes its files."""

from __future__ import annotations

import json

import pytest

from toysae.experiments import available, save_outputs, sites_and_recipes


def test_registered_and_config_round_trips(quick):
    config, _ = quick
    assert "sites-and-recipes" in available()
    assert sites_and_recipes.Config.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="one entry per site"):
        sites_and_recipes.Config(sparsity_coefs=(0.1,))
    with pytest.raises(ValueError, match="resampling arm"):
        sites_and_recipes.Config(
            site_train=sites_and_recipes.Config().site_train.replace(resample_every=0))


def test_writes_its_files(quick, tmp_path):
    config, result = quick
    paths = save_outputs(sites_and_recipes, result, tmp_path)
    assert sorted(p.name for p in paths) == ["sites-and-recipes-panels.png",
                                             "sites-and-recipes.json", "sites-and-recipes.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    data = json.loads((tmp_path / "sites-and-recipes.json").read_text())
    assert sites_and_recipes.Config.from_dict(data["config"]) == config
    assert len(data["findings"]) == 1 + 2 + len(config.exclusive_cosines) + 3
    assert {s["ground_truth"] for s in data["site_scores"] if s["site"] == "mlp_post"} == {"PROXY"}
