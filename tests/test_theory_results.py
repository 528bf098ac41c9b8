"""One result vocabulary (docs/design.md, "Results"): every result and report class of
the package is a dataclass with ``success`` (solvers, training) xor ``passed``
(checkers) and a ``message``, and prints with the one repr of ``toysae._result``."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from theory_helpers import solve_codes, unit_rows

import toysae.dictlearn
import toysae.sae
import toysae.theory
from toysae._result import History, Result
from toysae._threads import torch_threads
from toysae.theory import (
    amortisation_gap,
    bias_condition,
    check_optimality,
    check_sae,
    hierarchy_certificate,
    pair_conditions,
    wide_limit,
    wide_limit_gap,
)

LAM = 0.1


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


def _dog_labrador(n=40):
    rng = np.random.default_rng(0)
    F = unit_rows(np.array([[1.0, 0.0, 0.0], [0.3, 0.95, 0.0]]))
    dog = rng.uniform(1.0, 2.0, n)
    lab = (rng.uniform(size=n) < 0.35) * rng.uniform(0.5, 1.5, n)
    X = np.outer(dog, F[0]) + np.outer(lab, F[1])
    return X, F, solve_codes(X, F, LAM)


@pytest.fixture(scope="module")
def instances():
    """Results of small real calls: every theory report, nested ones, a solver result, a
    training result and its history."""
    from toysae.sae import make_sae

    X, F, Z = _dog_labrador()
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


def test_check_optimality_message_has_one_line_per_check_with_the_numbers():
    X, F, Z = _dog_labrador()
    rep = check_optimality(X, F, Z, LAM)
    assert not rep.passed
    lines = rep.message.splitlines()
    assert lines[0] == "3 of 4 checks fail"
    assert lines[1].startswith("[ok  ] code KKT holds: max violation")
    assert lines[2].startswith("[FAIL] atom stationarity fails: max relative tangential force "
                               f"{rep.atoms.max_violation:.3g} > tol 0.01")
    assert lines[3].strip() == "worst atom 1: its residual points toward atom 0 (cos 0.954)"
    pair_line = next(x for x in lines if "pair identity" in x)
    assert pair_line.startswith("[FAIL] pair identity fails") and "tol 0.01" in pair_line
    assert any(x.strip().startswith("worst pair (1, 0)") for x in lines)
    hier = next(x for x in lines if "hierarchy" in x)
    assert hier.startswith("[FAIL] hierarchy fails: 1 nested pair(s)")
    assert any("atom 1 fires only with atom 0" in x for x in lines)
    assert str(rep).endswith(rep.message)  # the message prints last, once
    assert str(rep).count("pair identity fails") == 1
    assert "code: CodeKKTReport(passed=True)" in str(rep)
    assert "atoms: AtomStationarityReport(passed=False)" in str(rep)
    assert "hierarchy: HierarchyReport(passed=False)" in str(rep)


def test_failing_checkers_say_what_fails_with_the_numbers():
    X, F, Z = _dog_labrador()
    rep = check_optimality(X, F, 2 * Z, LAM, decoder_bias=True, bias=np.full(3, 0.5))
    assert rep.code.message.startswith("code KKT fails: max violation")
    assert f"{rep.code.max_violation:.3g} > tol 0.001" in rep.code.message
    assert "worst: sample" in rep.code.message
    assert rep.bias.message == (f"decoder bias condition fails: ||mean residual|| / lam = "
                                f"{rep.bias.violation:.3g} > tol 0.001")
    lazy = np.zeros_like(Z)
    lazy[:, 0] = solve_codes(X, F[:1], LAM)[:, 0]
    atoms = check_optimality(X, F, lazy, LAM).atoms
    assert atoms.message.startswith("atom stationarity fails")
    assert "worst atom 0: its residual points toward atom 1" in atoms.message


def test_a_hierarchy_step_passes_when_its_drop_is_verified():
    X, F, Z = _dog_labrador()
    (step,) = hierarchy_certificate(X, F, Z, LAM).steps
    assert step.passed and step.verified_drop > 0
    assert step.message.startswith("atom 1 fires only with atom 0: rotating it toward atom 0")
    assert f"verified drop {step.verified_drop:.4g}" in step.message
    # no nested pair: the report passes and says so
    Xe = np.array([[1.0, 0.0], [0.0, 1.0]])
    ok = hierarchy_certificate(Xe, np.eye(2), np.diag([0.9, 0.9]), LAM)
    assert ok.passed and ok.message == "hierarchy holds: no nested pair offers a descent step"


def test_wide_limit_results_are_solver_like():
    X, F, Z = _dog_labrador()
    res = wide_limit(X, LAM)
    assert res.success and res.message.endswith("get an atom (closed form)")
    with_bias = wide_limit(X, LAM, bias=True)
    assert with_bias.success and "(optimal bias by L-BFGS: " in with_bias.message
    gap = wide_limit_gap(X, F, Z, LAM)
    assert gap.success and f"{gap.gap:.4g} above the wide-limit bound" in gap.message


class _OracleSAE(torch.nn.Module):
    """Encodes with exact lasso codes: an exact sparse coder."""

    def __init__(self, D):
        super().__init__()
        self.W = torch.nn.Parameter(torch.tensor(D))

    @property
    def dictionary(self):
        return self.W

    def encode(self, x):
        return torch.tensor(solve_codes(x.numpy(), self.W.detach().numpy(), LAM))


def test_amortisation_passes_exactly_for_an_exact_sparse_coder():
    from toysae.sae import make_sae

    rng = np.random.default_rng(6)
    X = rng.normal(size=(50, 4))
    D = unit_rows(rng.normal(size=(6, 4)))
    with torch_threads(1):
        exact = amortisation_gap(_OracleSAE(D), X, LAM, tol=1e-10)
        sae = amortisation_gap(make_sae("relu", 4, 6, seed=0), X.astype(np.float32), LAM,
                               normalize=True)
    assert exact.passed and exact.solver_success and exact.code_tol == 1e-3
    assert exact.message.startswith("the encoder is an exact sparse coder")
    assert not sae.passed and sae.sae_kkt_violation > sae.code_tol
    assert sae.message.startswith("the encoder is not an exact sparse coder for its "
                                  f"dictionary: max code-KKT violation "
                                  f"{sae.sae_kkt_violation:.3g} > tol 0.001")
    # the verdict follows the tolerance it is given
    with torch_threads(1):
        loose = amortisation_gap(make_sae("relu", 4, 6, seed=0), X.astype(np.float32), LAM,
                                 normalize=True, code_tol=2 * sae.sae_kkt_violation)
    assert loose.passed
    with pytest.raises(ValueError, match="code_tol"):
        amortisation_gap(_OracleSAE(D), X, LAM, code_tol=-1.0)


def test_print_check_sae_says_passed_or_failed_for_each_part(capsys):
    from toysae.sae import make_sae

    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 4)).astype(np.float32)
    with torch_threads(1):
        rep = check_sae(make_sae("relu", 4, 6, seed=0), X, LAM, normalize=True)
    print(rep)
    out = capsys.readouterr().out
    assert "?" not in out
    assert "amortisation: AmortisationReport(passed=False)" in out
    assert "optimality: OptimalityReport(passed=False)" in out
    assert "[FAIL] encoder: the encoder is not an exact sparse coder" in out
    assert "[FAIL] dictionary (with optimal codes) fails (3 of 5 checks fail):" in out
    for part in ("code KKT holds", "atom stationarity", "pair identity", "hierarchy"):
        assert part in out, part
    # an exact coder on a stationary dictionary passes both parts
    D = np.array([[1.0], [-1.0]])
    x = np.linspace(-2, 2, 41)[:, None]
    with torch_threads(1):
        good = check_sae(_OracleSAE(D), x, LAM, tol=1e-12)
    assert good.passed and good.amortisation.passed
    assert "[ok  ] encoder: the encoder is an exact sparse coder" in str(good)
    assert "[ok  ] dictionary (with optimal codes) passes every check" in str(good)
