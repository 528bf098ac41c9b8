"""``toysae._tuning``: the constants are what their comments promise. Each tuning constant is
read by the package (no knob left that nothing reads) and names a benchmark that exists;
sizes are positive ints and shares lie in (0, 1); the seed keys that split a run's random
streams are distinct."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from toysae import _tuning

ROOT = Path(__file__).resolve().parents[1]
SOURCE = (ROOT / "toysae" / "_tuning.py").read_text()
CONSTANTS = {n: getattr(_tuning, n) for n in dir(_tuning) if n.isupper()}
#: The constants that are fractions or tolerances, not sizes or counts.
SHARES = {"GRID_PAD_FRACTION", "SPARSE_MAX_DENSITY", "SPARSE_STEP_MAX_DENSITY", "SEARCH_TOL",
          "RESAMPLE_MIN_INPUT_NORM"}


def _names_read(path: Path) -> set[str]:
    """Every bare name, attribute name and imported name that ``path``'s source reads."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Name):
            out.add(node.id)
        elif isinstance(node, ast.Attribute):
            out.add(node.attr)
        elif isinstance(node, ast.ImportFrom):
            out.update(alias.name for alias in node.names)
    return out


def test_every_constant_is_read_by_the_package():
    assert len(CONSTANTS) > 30  # the listing found them
    read = set().union(*(_names_read(p) for p in (ROOT / "toysae").rglob("*.py")
                         if p.name != "_tuning.py"))
    unread = sorted(set(CONSTANTS) - read)
    assert not unread, f"constants nothing in toysae/ reads: {unread}"


def test_every_benchmark_the_comments_name_exists():
    named = set(re.findall(r"benchmarks/(\w+\.py)", SOURCE))
    assert len(named) >= 4
    missing = sorted(n for n in named if not (ROOT / "benchmarks" / n).is_file())
    assert not missing, f"_tuning.py names benchmarks that do not exist: {missing}"


@pytest.mark.parametrize("name", sorted(CONSTANTS))
def test_sizes_are_positive_ints_and_shares_lie_in_zero_one(name):
    value = CONSTANTS[name]
    if name in SHARES:
        assert type(value) is float and 0 < value < 1, (name, value)
    elif name == "SPARSE_PROBE_MARGIN":  # a factor above the switch
        assert value > 1
    else:
        assert type(value) is int and value >= 1, (name, value)


def test_the_seed_keys_are_distinct():
    keys = {n: v for n, v in CONSTANTS.items() if n.startswith("SEED_KEY_")}
    assert len(keys) == 4
    assert len(set(keys.values())) == len(keys), keys
