"""Experiment configs from defaults, a JSON file and key=value overrides."""

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Annotated

import pytest

from toysae import experiments
from toysae._config import POSITIVE, Bounds, JsonMixin, OneOf, Seed, validate_fields
from toysae.cli import main
from toysae.experiments.overrides import (
    ConfigError,
    apply_overrides,
    parse_assignment,
    parse_value,
    resolve_config,
    split_top_level,
    valid_keys,
)
from toysae.sae import TrainConfig


@dataclass(frozen=True)
class Inner(JsonMixin):
    rate: float = 0.5
    name: str = "a"

    def __post_init__(self):
        if not 0 < self.rate <= 1:
            raise ValueError(f"rate must be in (0, 1], got {self.rate}")


@dataclass(frozen=True)
class Outer(JsonMixin):
    n: int = 3
    flag: bool = False
    sizes: tuple = (1, 2)
    ids: tuple[int, ...] | None = None
    spread: float | tuple | None = None
    maybe: int | None = 4
    inner: Inner = field(default_factory=Inner)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def quick(cls):
        return cls(n=1)


@pytest.mark.parametrize("text, hint, expected", [
    ("1000", int, 1000), ("1_000", int, 1000), ("-3", int, -3),
    ("1e-3", float, 1e-3), ("2", float, 2.0), ("inf", float, float("inf")),
    ("true", bool, True), ("No", bool, False), ("on", bool, True), ("0", bool, False),
    ("hello, world", str, "hello, world"), ("none", int | None, None),
    ("null", tuple | None, None), ("7", int | None, 7),
    ("1,2,3", tuple, (1, 2, 3)), ("[1, 2.5, \"x\"]", tuple, (1, 2.5, "x")),
    ("(1,2)", tuple, (1, 2)), ("", tuple, ()), ("a,b", tuple, ("a", "b")),
    ("[[0,1],[0,2]]", tuple, ((0, 1), (0, 2))), ("4,5", tuple[int, ...], (4, 5)),
    ("0.5", float | tuple | None, 0.5), ("1,2", float | tuple | None, (1, 2)),
    ("{\"rate\": 0.2}", Inner, {"rate": 0.2}),
])
def test_values_read_as_their_field_type(text, hint, expected):
    assert parse_value(text, hint) == expected
    assert type(parse_value(text, hint)) is type(expected)


@pytest.mark.parametrize("text, hint", [
    ("1.5", int), ("1e3", int), ("true", int), ("abc", float), ("maybe", bool),
    ("none", int), ("x,y", tuple[int, ...]), ("[1,", tuple), ("[1]", Inner),
])
def test_values_of_the_wrong_type_are_refused_naming_the_key(text, hint):
    with pytest.raises(ConfigError, match=r"^k="):
        parse_value(text, hint, key="k")


def test_split_top_level_and_assignments():
    assert split_top_level("[1,2],[3],a") == ["[1,2]", "[3]", "a"]
    assert split_top_level('"a,b",c') == ['"a,b"', "c"]
    assert split_top_level("{\"x\": [1, 2]}, 3") == ["{\"x\": [1, 2]}", "3"]
    assert parse_assignment("train.lr=1e-3") == ("train.lr", "1e-3")
    assert parse_assignment("expr=a=b") == ("expr", "a=b")
    for bad in ("lr", "=3", ""):
        with pytest.raises(ConfigError, match="key=value"):
            parse_assignment(bad)


def test_overrides_reach_nested_configs_and_validate_once():
    config = apply_overrides(Outer(), {"n": "5", "flag": "yes", "inner.rate": "0.25",
                                       "train.lr": "0.02", "ids": "1,2", "maybe": "none"})
    assert (config.n, config.flag, config.inner.rate, config.train.lr, config.ids,
            config.maybe) == (5, True, 0.25, 0.02, (1, 2), None)
    assert config.inner.name == "a" and config.train.batch_size == 256
    # Python values are checked as JSON values; a dict merges into the nested config.
    config = apply_overrides(Outer(), [("inner", {"name": "b"}), ("sizes", [3, [4, 5]])])
    assert config.inner == Inner(rate=0.5, name="b") and config.sizes == (3, (4, 5))
    # Validation sees all overrides together: alone, lr_warmup=0.8 breaks warmup+decay <= 1.
    config = apply_overrides(Outer(), {"train.lr_warmup": "0.8", "train.lr_decay": "0.1"})
    assert (config.train.lr_warmup, config.train.lr_decay) == (0.8, 0.1)
    assert apply_overrides(Outer(), {}) == Outer()


def test_override_errors_name_the_key():
    cases = [
        ({"m": "1"}, r"^m: Outer has no such key; valid keys: n, flag, sizes, ids, spread, "
                     r"maybe, inner\.<key>, train\.<key>$"),
        ({"inner.rat": "1"}, r"inner\.rat: Inner has no such key; valid keys: inner\.rate, "
                             r"inner\.name$"),
        ({"n.x": "1"}, r"n\.x: n is not a config with keys \(it holds int\)"),
        ({"n": "1.5"}, r"^n=1\.5: expected int$"),
        ({"n": 1.5}, r"^n=1\.5: expected int$"),
        ({"flag": 1}, r"^flag=1: expected bool$"),
        ({"inner.rate": "2"}, r"^inner: rate must be in \(0, 1\], got 2\.0$"),
        ({"train.lr": "-1"}, r"^train: lr must be > 0"),
        ({"train.": "1"}, r"dotted name"),
    ]
    for overrides, match in cases:
        with pytest.raises(ConfigError, match=match):
            apply_overrides(Outer(), overrides)
    with pytest.raises(TypeError, match="config dataclass instance"):
        apply_overrides(Outer, {})
    assert "train.lr" in valid_keys(Outer) and "inner.name" in valid_keys(Outer)


def test_resolve_config_layers_quick_file_and_sets(tmp_path):
    assert resolve_config(Outer) == Outer()
    assert resolve_config(Outer, quick=True) == Outer(n=1)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"flag": True, "inner": {"rate": 0.1}, "train": {"lr": 0.5}}))
    config = resolve_config(Outer, quick=True, config_file=path, sets=["train.lr=0.01"])
    assert (config.n, config.flag, config.inner.rate, config.train.lr) == (1, True, 0.1, 0.01)
    # A JSON file's strings are strings: "5" is not an int there.
    path.write_text(json.dumps({"n": "5"}))
    with pytest.raises(ConfigError, match=r'n="5": expected int'):
        resolve_config(Outer, config_file=path)
    for text, match in [("[1]", "must hold a JSON object"), ("{", "is not JSON")]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=match):
            resolve_config(Outer, config_file=path)
    with pytest.raises(ConfigError, match="no file"):
        resolve_config(Outer, config_file=tmp_path / "missing.json")
    with pytest.raises(TypeError, match="quick"):
        resolve_config(Outer, quick="yes")


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


@dataclass(frozen=True)
class Checked(JsonMixin):
    n: Annotated[int, Bounds(1)] = 2
    rate: Annotated[float, Bounds(0.0, 1.0, min_inclusive=False)] = 0.5
    lam: Annotated[float, POSITIVE] = 0.1
    flag: bool = False
    kind: Annotated[str, OneOf(("a", "b"))] = "a"
    label: str = "x"
    sizes: Annotated[tuple[int, ...], Bounds(1)] = (1, 2)
    cap: Annotated[int | None, Bounds(0)] = None
    pair: tuple[int, str] = (1, "a")
    spread: float | tuple[float, ...] = 0.5
    anything: typing.Any = None
    inner: Inner = field(default_factory=Inner)
    seed: Seed = 0

    def __post_init__(self):
        validate_fields(self)


def test_fields_are_checked_from_their_annotations():
    Checked(cap=5, sizes=[3], spread=(0.1, 0.2), anything=object(), n=7, lam=1)
    cases = [
        ({"n": 0}, ValueError, r"^n must be >= 1, got 0$"),
        ({"n": 2.0}, TypeError, r"^n must be an int, got 2\.0$"),
        ({"n": True}, TypeError, r"^n must be an int, got True$"),
        ({"rate": 0.0}, ValueError, r"^rate must be > 0\.0, got 0\.0$"),
        ({"rate": 1.5}, ValueError, r"^rate must be <= 1\.0, got 1\.5$"),
        ({"rate": float("nan")}, ValueError, "^rate must be finite"),
        ({"lam": "0.1"}, TypeError, "^lam must be a number, got '0.1'"),
        ({"flag": 1}, TypeError, "^flag must be a bool, got 1$"),
        ({"kind": "c"}, ValueError, r"^kind must be one of \['a', 'b'\], got 'c'$"),
        ({"label": 3}, TypeError, "^label must be a str, got 3$"),
        ({"sizes": ()}, ValueError, "^sizes must not be empty$"),
        ({"sizes": (1, 0)}, ValueError, r"^sizes\[1\] must be >= 1, got 0$"),
        ({"sizes": (1, 2.0)}, TypeError, r"^sizes\[1\] must be an int"),
        ({"sizes": 3}, TypeError, "^sizes must be a sequence, got int$"),
        ({"cap": -1}, ValueError, "^cap must be >= 0, got -1$"),
        ({"cap": "1"}, TypeError, "^cap must be an int"),
        ({"pair": (1,)}, ValueError, "^pair must have 2 entries, got 1$"),
        ({"pair": (1, 2)}, TypeError, r"^pair\[1\] must be a str"),
        ({"spread": "x"}, TypeError, "^spread must be float or tuple"),
        ({"inner": 3}, TypeError, "^inner must be a Inner, got int$"),
        ({"seed": -1}, ValueError, "^seed must be >= 0, got -1$"),
        ({"seed": 2**63}, ValueError, "^seed must be <= 9223372036854775807"),
    ]
    for changes, kind, match in cases:
        with pytest.raises(kind, match=match):
            Checked(**changes)


def test_annotated_fields_read_as_their_plain_type_and_validate_after_overrides():
    config = apply_overrides(Checked(), {"n": "3", "sizes": "4,5", "cap": "none",
                                         "kind": "b"})
    assert (config.n, config.sizes, config.cap, config.kind) == (3, (4, 5), None, "b")
    assert "n" in valid_keys(Checked) and "inner.rate" in valid_keys(Checked)
    with pytest.raises(ConfigError, match=r"^config: sizes\[0\] must be >= 1, got 0$"):
        apply_overrides(Checked(), {"sizes": "0"})
    with pytest.raises(ConfigError, match=r"^n=1\.5: expected int$"):
        apply_overrides(Checked(), {"n": "1.5"})


def test_bounds_are_well_formed():
    with pytest.raises(ValueError, match="minimum 2 is above maximum 1"):
        Bounds(2, 1)

    @dataclass(frozen=True)
    class StrictInt:
        n: Annotated[int, Bounds(0, min_inclusive=False)] = 1

        def __post_init__(self):
            validate_fields(self)

    with pytest.raises(TypeError, match="inclusive Bounds only"):
        StrictInt()


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
