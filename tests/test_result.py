"""``toysae._result``: one result vocabulary (docs/design.md, "Results"): every result and
report class of the package is a dataclass with ``success`` (solvers, training) xor
``passed`` (checkers) and a ``message``, and prints with the one repr of ``toysae._result``."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from theory_helpers import LAM, dog_labrador_solved

import toysae.dictlearn
import toysae.sae
import toysae.theory
from toysae._result import History, Result
from toysae._threads import torch_threads
from toysae.theory import (
    bias_condition,
    check_optimality,
    check_sae,
    hierarchy_certificate,
    pair_conditions,
    wide_limit,
    wide_limit_gap,
)


def result_classes() -> list[type]:
    """Every subclass of Result defined in the package, recursively."""
    found, stack = [], list(Result.__subclasses__())
    while stack:
        cls = stack.pop()
        if cls.__module__.startswith("toysae.") and cls not in found:
            found.append(cls)
        stack.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: (c.__module__, c.__qualname__))


def vocabulary_problems(cls: type) -> list[str]:
    """What ``cls`` lacks of the result vocabulary ([] when it has it all)."""
    name = f"{cls.__module__}.{cls.__qualname__}"
    if cls is History:
        missing = [a for a in ("n_iter", "to_json", "__repr__") if not hasattr(cls, a)]
        return [f"{name}: no {a}" for a in missing]
    if not dataclasses.is_dataclass(cls):
        return [f"{name}: not a dataclass"]
    fields = {f.name for f in dataclasses.fields(cls)}
    out = []
    if ("success" in fields) == ("passed" in fields):
        both = "both" if "success" in fields else "neither"
        out.append(f"{name}: has {both} of 'success' (solvers) and 'passed' (checkers)")
    if "message" not in fields:
        out.append(f"{name}: no 'message' field")
    return out


def test_every_result_class_speaks_the_vocabulary():
    classes = result_classes()
    theory = {getattr(toysae.theory, n) for n in toysae.theory.__all__}
    reports = {c for c in theory if isinstance(c, type) and issubclass(c, Result)}
    assert reports <= set(classes) and len(reports) >= 10  # the walker sees the checkers
    problems = [p for cls in classes for p in vocabulary_problems(cls)]
    assert not problems, "classes missing the result vocabulary:\n" + "\n".join(problems)


def test_the_walker_flags_a_class_without_the_vocabulary():
    @dataclasses.dataclass(repr=False)
    class Bare(Result):
        value: float

    @dataclasses.dataclass(repr=False)
    class Both(Result):
        success: bool
        passed: bool
        message: str

    assert len(vocabulary_problems(Bare)) == 2
    assert vocabulary_problems(Both) == [
        f"{Both.__module__}.{Both.__qualname__}: has both of 'success' (solvers) and "
        "'passed' (checkers)"]


@pytest.fixture(scope="module")
def instances():
    """Results of small real calls: every theory report, nested ones, a solver result, a
    training result and its history."""
    from toysae.sae import make_sae

    X, F, Z = dog_labrador_solved()
    b = np.zeros(3) + 0.05
    rep = check_optimality(X, F, Z, LAM, decoder_bias=True, bias=b)
    hier = hierarchy_certificate(X, F, Z, LAM)
    sub = pair_conditions(X, F, Z, LAM, pairs=np.array([[1, 0]]))
    rng = np.random.default_rng(1)
    Xs = rng.normal(size=(30, 4)).astype(np.float32)
    with torch_threads(1):
        sae_rep = check_sae(make_sae("relu", 4, 6, seed=0), Xs, LAM, normalize=True)
        coded = toysae.dictlearn.sparse_code(X, F, LAM, dtype=torch.float64)
        trained = toysae.sae.train_sae("relu", Xs, toysae.sae.TrainConfig(
            n_samples=256, batch_size=32, log_every=2), width=6, progress=False, threads=1)
    return [rep, rep.code, rep.atoms, rep.pairs, rep.bias, hier, *hier.steps[:1], sub,
            bias_condition(X, F, Z, LAM, b), sae_rep, sae_rep.amortisation,
            wide_limit(X, LAM), wide_limit(X, LAM, bias=True), wide_limit_gap(X, F, Z, LAM),
            coded, trained, trained.history]


def test_reprs_of_real_results_read_well(instances):
    for obj in instances:
        text = repr(obj)
        assert "?" not in text, text
        assert str(obj) == text
        if isinstance(obj, Result) and getattr(obj, "message", ""):
            assert text.startswith(type(obj).__name__) and text.endswith(obj.message)
            json.loads(obj.to_json())
