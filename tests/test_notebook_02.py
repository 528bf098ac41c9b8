"""The SAE-sweep notebook runs top to bottom at a small size."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "02_sae_sweep.ipynb"


def test_notebook_02_executes(monkeypatch):
    monkeypatch.setenv("TOYSAE_NOTEBOOK_STEPS", "150")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    assert "best SAE beats PCA: True" in text
    assert "same SAEs: True" in text
