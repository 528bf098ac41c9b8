"""``toysae.experiments.overrides``: experiment configs from defaults, a JSON file and
key=value overrides, each value read as its field's type, errors naming the key."""

import json
from dataclasses import dataclass, field

import pytest
from annotated_configs import Checked, Inner

from toysae._config import JsonMixin
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


def test_annotated_fields_read_as_their_plain_type_and_validate_after_overrides():
    config = apply_overrides(Checked(), {"n": "3", "sizes": "4,5", "cap": "none",
                                         "kind": "b"})
    assert (config.n, config.sizes, config.cap, config.kind) == (3, (4, 5), None, "b")
    assert "n" in valid_keys(Checked) and "inner.rate" in valid_keys(Checked)
    with pytest.raises(ConfigError, match=r"^config: sizes\[0\] must be >= 1, got 0$"):
        apply_overrides(Checked(), {"sizes": "0"})
    with pytest.raises(ConfigError, match=r"^n=1\.5: expected int$"):
        apply_overrides(Checked(), {"n": "1.5"})
