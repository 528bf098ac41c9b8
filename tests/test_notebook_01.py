"""The synthetic-data notebook runs top to bottom at a small size."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "01_synthetic_data.ipynb"


def test_notebook_01_executes(monkeypatch):
    monkeypatch.setenv("TOYSAE_NOTEBOOK_N", "5000")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    assert "child without parent: 0" in text
    assert "max active in the group: 1" in text
