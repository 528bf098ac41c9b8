"""Every notebook runs top to bottom at a small size and prints what it claims, and is
committed executed, with the outputs of such a run.

``notebooks/execute.py`` runs them (its ``SIZES`` are the sizes) and stores them; here each
committed notebook is checked for a whole top-to-bottom run that printed its claims, and a
cleared copy is run again.
"""

import importlib.util
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"
_spec = importlib.util.spec_from_file_location("notebooks_execute", NOTEBOOKS / "execute.py")
execute = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute)

CASES = {
    "01_synthetic_data.ipynb": [
        "child without parent: 0",
        "max active in the group: 1",
    ],
    "02_sae_sweep.ipynb": [
        "best SAE beats PCA: True",
        "same SAEs: True",
    ],
    "03_classical_dictionary_learning.ipynb": [
        "FISTA matches cvxpy: True",
        "a learner beats PCA on the objective: True",
    ],
    "04_optimality_conditions.ipynb": [
        "code KKT passes for optimal codes: True",
        "code KKT passes for doubled codes: False",
        "points to atom 1",
        "labrador nested in dog: True",
        "reconstruction unchanged: True",
        "[FAIL] hierarchy",
        "exclusive features pass: True",
        "all gaps >= 0: True",
    ],
    "05_end_to_end.ipynb": [
        "perfect splice changes nothing: True",
        "at matched CE increase e2e uses fewer active latents: True",
    ],
    "06_architectures.ipynb": [
        "child without parent: 0",
        "most siblings firing together: 1",
        "matryoshka absorbs less: True",
        "the true tree is not stationary: True",
        "every architecture at every seed: True",
    ],
    "07_open_questions.ipynb": [
        "pairwise MCC of a dictionary with itself is 1: True",
        "a permuted, sign-flipped copy has PW-MCC 1: True",
        "signed matching counts a negated atom as another latent: True",
        "stable latents are true more often than seed-specific ones: True",
        "true features, n above the true L0: s_n = 0: True",
        "atoms that mix features raise s_n above 0: True",
        "ties go to the smaller L0: True",
        "a number flat in L0 picks nothing: True",
        "the EV elbow of a curve that saturates at L0 4 is L0 4: True",
        "it is a^2 / (1 + a^2): True",
        "a move into the added latent's span: degree above 0: True",
        "no move: degree 0: True",
        "a move orthogonal to the added latent: degree 0: True",
        "f1 only beside f0: the objective prefers the hedged atom: True",
        "f1 on its own: the objective prefers the pure atom: True",
        "only the later of the parallel pair is flagged: True",
    ],
}


def test_every_notebook_is_covered():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(CASES) == \
        sorted(execute.SIZES)


def _missing(text: str, name: str) -> list[str]:
    return [line for line in CASES[name] if line not in text]


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_committed_notebook_holds_a_whole_run_that_printed_its_claims(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    hint = f"{name}: run `python notebooks/execute.py {name}` and commit it"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), hint
    assert not [o for c in code for o in c.outputs if o.output_type == "error"], hint
    assert not _missing(execute.printed(nb), name), hint
    # a figure cell stored its picture, so a reader sees it without running anything
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), hint


@pytest.fixture(scope="module")
def executed():
    """Every notebook run again from a cleared copy, two kernels at a time."""
    return execute.execute_all(sorted(CASES))


@pytest.mark.parametrize("name", sorted(CASES))
def test_notebook_executes(name, executed):
    missing = _missing(execute.printed(executed[name]), name)
    assert not missing, f"{name} did not print {missing}"


def test_cleared_removes_every_output_and_count():
    nb = execute.cleared(nbformat.read(NOTEBOOKS / "01_synthetic_data.ipynb", as_version=4))
    assert all(not c.outputs and c.execution_count is None for c in nb.cells
               if c.cell_type == "code")
    with pytest.raises(ValueError, match="name must be one of"):
        execute.execute("99_none.ipynb")
