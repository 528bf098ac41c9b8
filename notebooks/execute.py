"""Run every notebook top to bottom at its small size and store it with its outputs.

    .venv/bin/python notebooks/execute.py [NAME.ipynb ...]

The notebooks are written by ``make_NN.py`` (their cells) and committed executed, so a
reader on a code host sees their figures and printed numbers without running them. Each
reads its size from an environment variable; :data:`SIZES` is what the stored run and
the test suite (``tests/test_notebooks.py``) use, small enough that the stored outputs
stay a reviewable diff. Each notebook is written whole, then renamed into place.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from toysae._io import write_text

HERE = Path(__file__).resolve().parent

#: The environment each notebook runs under: its size, small.
SIZES = {
    "01_synthetic_data.ipynb": {"TOYSAE_NOTEBOOK_N": "5000"},
    "02_sae_sweep.ipynb": {"TOYSAE_NOTEBOOK_STEPS": "150"},
    "03_classical_dictionary_learning.ipynb": {"TOYSAE_NOTEBOOK_SAMPLES": "3000"},
    "04_optimality_conditions.ipynb": {"TOYSAE_NOTEBOOK_N": "600"},
    "05_end_to_end.ipynb": {"TOYSAE_NOTEBOOK_SAMPLES": "60000"},
    "06_architectures.ipynb": {"TOYSAE_NOTEBOOK_SAMPLES": "150000"},
    "07_open_questions.ipynb": {"TOYSAE_NOTEBOOK_SAMPLES": "50000"},
}
TIMEOUT = 120  # seconds a cell may take
INLINE = "module://matplotlib_inline.backend_inline"  # ipykernel's own figure display


def cleared(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` with every code cell's outputs and execution count removed."""
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def execute(name: str, env: dict | None = None) -> nbformat.NotebookNode:
    """``notebooks/name`` run from a clean state under ``SIZES[name]`` (and ``env``),
    in the notebooks folder, its figures drawn inline (so the stored notebook shows them,
    whatever ``MPLBACKEND`` the caller has); the executed notebook."""
    return execute_all([name], env, workers=1)[name]


def execute_all(names, env: dict | None = None, *, workers: int = 2) -> dict:
    """:func:`execute` of every notebook of ``names``, at most ``workers`` kernels at a
    time (each kernel is its own process, so two notebooks use two cores); ``{name:
    executed notebook}``. Each kernel gets its sizes in its own environment, so runs
    side by side never see each other's."""
    unknown = [n for n in names if n not in SIZES]
    if unknown:
        raise ValueError(f"name must be one of {sorted(SIZES)}, got {unknown[0]!r}")

    async def run_all() -> dict:
        gate = asyncio.Semaphore(workers)

        async def one(name: str):
            nb = cleared(nbformat.read(HERE / name, as_version=4))
            kernel_env = {**os.environ, **SIZES[name], **(env or {}), "MPLBACKEND": INLINE}
            async with gate:
                await NotebookClient(nb, timeout=TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(HERE)}}
                                     ).async_execute(env=kernel_env)
            return name, nb

        return dict(await asyncio.gather(*(one(n) for n in names)))

    return asyncio.run(run_all())


def printed(nb: nbformat.NotebookNode) -> str:
    """Everything the notebook's code cells printed (stream outputs and plain-text results)."""
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") or o.get("data", {}).get("text/plain", ""))
    return "".join(out)


def store(nb: nbformat.NotebookNode, path: Path) -> None:
    """Write ``nb`` to ``path`` whole, then rename it into place."""
    write_text(path, nbformat.writes(nb) + "\n")


def main(names: list[str]) -> None:
    for name, nb in execute_all(names or sorted(SIZES)).items():
        store(nb, HERE / name)
        print(f"executed and stored {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
