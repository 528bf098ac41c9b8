"""``toysae.experiments._run_store``: finished units kept under a key of what they compute,
reused by a run that only lists more units, apart from a run that computes differently."""

from __future__ import annotations

import json
from dataclasses import dataclass

from toysae._config import JsonMixin
from toysae.experiments import provenance
from toysae.experiments._run_store import RunStore


@dataclass(frozen=True)
class _Config(JsonMixin):
    seeds: tuple = (0,)
    lr: float = 0.1
    work_dir: str | None = None


def test_a_unit_is_kept_with_the_commit_and_found_again(tmp_path):
    store = RunStore(_Config(work_dir=str(tmp_path)), ("seeds",))
    assert store.get("a-seed0") is None
    store.put("a-seed0", {"scores": {"mcc": 0.5}})
    kept = store.get("a-seed0")
    assert kept["scores"] == {"mcc": 0.5}
    assert (kept["commit"], kept["dirty"]) == provenance.source_state()
    assert json.loads(store.path("a-seed0").read_text()) == kept
    assert [p.name for p in tmp_path.rglob("*")] == [store.root.name, "a-seed0.json"]


def test_the_key_leaves_out_the_listed_fields_and_work_dir_only(tmp_path):
    root = RunStore(_Config(work_dir=str(tmp_path)), ("seeds",)).root
    # more seeds: the same units, the same folder (wherever work_dir is)
    assert RunStore(_Config(seeds=(0, 1), work_dir=str(tmp_path)), ("seeds",)).root == root
    assert RunStore(_Config(work_dir=str(tmp_path / "x")), ("seeds",)).root.name == root.name
    # another lr computes other units: another folder
    assert RunStore(_Config(lr=0.2, work_dir=str(tmp_path)), ("seeds",)).root != root
    # a field not listed as varied is part of the key
    assert RunStore(_Config(seeds=(0, 1), work_dir=str(tmp_path)), ()).root != \
        RunStore(_Config(work_dir=str(tmp_path)), ()).root


def test_without_a_work_dir_nothing_is_kept(tmp_path):
    store = RunStore(_Config(), ("seeds",))
    store.put("a", {"scores": {}})
    assert store.root is None and store.get("a") is None
