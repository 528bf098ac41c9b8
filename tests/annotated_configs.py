"""Small frozen config dataclasses for the tests of ``toysae._config`` (fields checked
from their annotations) and ``toysae.experiments.overrides`` (values read as the field's
type): ``Inner`` validates itself by hand, ``Checked`` through ``validate_fields``."""

import typing
from dataclasses import dataclass, field
from typing import Annotated

from toysae._config import POSITIVE, Bounds, JsonMixin, OneOf, Seed, validate_fields


@dataclass(frozen=True)
class Inner(JsonMixin):
    rate: float = 0.5
    name: str = "a"

    def __post_init__(self):
        if not 0 < self.rate <= 1:
            raise ValueError(f"rate must be in (0, 1], got {self.rate}")


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
