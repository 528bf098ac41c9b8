"""``toysae._config``: config fields checked from their annotations (types, ``Bounds``,
``OneOf``, nested configs), and bounds that are well formed."""

from dataclasses import dataclass
from typing import Annotated

import pytest
from annotated_configs import Checked

from toysae._config import Bounds, validate_fields


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
