"""The optimality-conditions notebook runs top to bottom at a small size."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "04_optimality_conditions.ipynb"


def test_notebook_04_executes(monkeypatch):
    monkeypatch.setenv("TOYSAE_NOTEBOOK_N", "600")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    assert "code KKT passes for optimal codes: True" in text
    assert "code KKT passes for doubled codes: False" in text
    assert "points to atom 1" in text
    assert "labrador nested in dog: True" in text
    assert "reconstruction unchanged: True" in text
    assert "[FAIL] hierarchy" in text
    assert "exclusive features pass: True" in text
    assert "all gaps >= 0: True" in text
