"""The classical dictionary-learning notebook runs top to bottom at a small size."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "03_classical_dictionary_learning.ipynb"


def test_notebook_03_executes(monkeypatch):
    monkeypatch.setenv("TOYSAE_NOTEBOOK_SAMPLES", "3000")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    assert "FISTA matches cvxpy: True" in text
    assert "a learner beats PCA on the objective: True" in text
