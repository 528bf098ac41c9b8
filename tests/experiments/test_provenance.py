"""``toysae.experiments.provenance``: the block save_outputs writes at the top of NAME.json:
which config (full, quick or custom, and the fields that differ), the git state of the
source toysae runs from (read in throwaway repositories), versions and machine; the
schema check ``toysae report`` relies on."""

from __future__ import annotations

import dataclasses
import datetime
import json
import subprocess

import pytest

from toysae.experiments import get, provenance


@pytest.fixture
def fresh_state(monkeypatch):
    """source_state() asks git again; the cache is cleared before and after."""
    provenance.source_state.cache_clear()
    yield lambda package: monkeypatch.setattr(provenance, "_PACKAGE", package.resolve())
    provenance.source_state.cache_clear()


def _git(folder, *args):
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


def _repository(root):
    """A git repository at ``root`` with a committed ``toysae/a.py``; its commit."""
    (root / "toysae").mkdir(parents=True)
    (root / "toysae" / "a.py").write_text("x = 1\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


def test_the_commit_and_whether_the_package_source_differs_from_it(tmp_path, fresh_state):
    commit = _repository(tmp_path)
    fresh_state(tmp_path / "toysae")
    assert provenance.source_state() == (commit, False)
    (tmp_path / "notes.md").write_text("untracked, and outside the package\n")
    (tmp_path / "toysae" / "b.py").write_text("untracked files are not the code that ran\n")
    provenance.source_state.cache_clear()
    assert provenance.source_state() == (commit, False)
    (tmp_path / "toysae" / "a.py").write_text("x = 2\n")
    assert provenance.source_state() == (commit, False)  # read once per process
    provenance.source_state.cache_clear()
    assert provenance.source_state() == (commit, True)


def test_no_commit_outside_a_checkout_of_toysae_itself(tmp_path, fresh_state):
    (tmp_path / "plain" / "toysae").mkdir(parents=True)
    fresh_state(tmp_path / "plain" / "toysae")
    assert provenance.source_state() == (None, None)
    # toysae installed into some other project's repository: that project's commit is not
    # toysae's
    _repository(tmp_path / "project")
    (tmp_path / "project" / "venv" / "toysae").mkdir(parents=True)
    provenance.source_state.cache_clear()
    fresh_state(tmp_path / "project" / "venv" / "toysae")
    assert provenance.source_state() == (None, None)


def test_the_block_names_the_config_code_and_machine(tmp_path, fresh_state):
    commit = _repository(tmp_path)
    fresh_state(tmp_path / "toysae")
    module = get("synthetic-data")
    quick = module.Config.quick()
    block = provenance.provenance(module, quick)
    assert block["schema_version"] == provenance.SCHEMA_VERSION
    assert block["experiment"] == "synthetic-data" and block["preset"] == "quick"
    assert block["differs_from_full"] == [f.name for f in dataclasses.fields(quick)
                                          if getattr(quick, f.name) !=
                                          getattr(module.Config(), f.name)]
    assert (block["commit"], block["dirty"]) == (commit, False)
    assert block["torch"] and block["numpy"] and block["python"].count(".") == 2
    assert block["cpu_count"] >= 1 and block["platform"]
    assert block["date"] == datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    assert provenance.provenance(module, module.Config())["preset"] == "full"
    assert provenance.provenance(module, module.Config())["differs_from_full"] == []
    custom = dataclasses.replace(module.Config(), n_shown=5)
    assert provenance.preset(module, custom) == ("custom", ["n_shown"])
    line = provenance.describe(provenance.provenance(module, custom))
    assert line.startswith(f"toysae {commit[:7]}; custom (n_shown) config;")
    with pytest.raises(TypeError, match="config must be a toysae.experiments.synthetic_data"):
        provenance.preset(module, get("dense-1d").Config.quick())


def test_describe_says_when_the_code_was_not_committed():
    block = {"commit": None, "toysae_version": "0.1.0", "dirty": None,
             "preset": "full", "platform": "Linux", "cpu_count": 2, "date": "2026-01-02"}
    assert provenance.describe(block) == "toysae 0.1.0; full config; Linux, 2 CPUs; 2026-01-02"
    block.update(commit="0123456789abcdef", dirty=True)
    assert provenance.describe(block).startswith("toysae 0123456 with uncommitted changes;")


def test_only_a_block_of_this_schema_version_is_read():
    block = {"schema_version": provenance.SCHEMA_VERSION, "experiment": "x"}
    assert provenance.check_block(block, "f.json") is block
    for bad, message in ((None, "f.json: no 'provenance' block"),
                         ([1], "f.json: no 'provenance' block"),
                         ({"experiment": "x"}, "f.json: schema version None, this toysae "
                                               f"reads version {provenance.SCHEMA_VERSION}"),
                         ({"schema_version": provenance.SCHEMA_VERSION + 1},
                          f"schema version {provenance.SCHEMA_VERSION + 1}")):
        with pytest.raises(ValueError, match=message):
            provenance.check_block(bad, "f.json")


def test_a_run_keeps_its_wall_time_and_describe_says_it(tmp_path):
    from toysae.experiments import run_experiment

    paths = run_experiment("synthetic-data", quick=True, out_dir=tmp_path)
    block = json.loads(paths[0].read_text())[provenance.KEY]
    assert isinstance(block["wall_time_s"], float) and block["wall_time_s"] > 0
    line = provenance.describe({**block, "wall_time_s": 466.04})
    assert line.endswith("; 466 s")
    without = {k: v for k, v in block.items() if k != "wall_time_s"}  # the older JSON
    assert provenance.describe(without).endswith(f"CPUs; {block['date']}")
