"""The layer rule of docs/architecture.md, read off every import statement in ``toysae/``.

data -> sae / dictlearn / models -> metrics / theory / interop -> experiments / check -> cli:
a module imports only from its own part, from lower layers, and from the top-level
underscore modules (plumbing, which import only plumbing). Parts of one layer do not
import each other, except where the architecture says so (``models`` trains through
``sae``'s engine). Every import statement counts, at module level or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "toysae"

#: Each part of the package and its layer; the top-level underscore modules are plumbing.
LAYERS = {
    "data": 0, "dictionary_objective": 0, "stats": 0,
    "sae": 1, "dictlearn": 1, "models": 1,
    "metrics": 2, "host_metrics": 2, "theory": 2, "interop": 2, "plotting": 2,
    "experiments": 3, "check": 3,
    "cli": 4,
}
#: Imports between parts of one layer that the architecture allows: (importer, imported).
SAME_LAYER = {("models", "sae"), ("host_metrics", "metrics")}
PLUMBING = "plumbing"


def _modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _part(module: str) -> str:
    """The part of the package ``module`` belongs to (``toysae.sae.engine`` -> ``sae``)."""
    if module == "toysae":
        return "toysae"
    top = module.split(".")[1]
    if top.startswith("_"):
        return PLUMBING
    if top not in LAYERS:
        raise AssertionError(f"{module} is in no layer: give {top!r} one in LAYERS "
                             "(and in docs/architecture.md)")
    return top


def _imported(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every toysae module that ``module``'s source imports."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            # ``from toysae import metrics`` imports the module toysae.metrics
            names = [f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in MODULES]
            found += [(node.lineno, name) for name in names or [source]]
    return [(line, name) for line, name in found if name.split(".")[0] == "toysae"]


def _violations() -> list[str]:
    out = []
    for module, path in MODULES.items():
        if module == "toysae":
            continue  # the package's front door may name anything (lazily)
        own = _part(module)
        for line, name in _imported(module, path):
            target = _part(name)
            where = f"{module} (line {line}) imports {name}"
            if target == "toysae":
                out.append(f"{where}: no module imports the package's front door")
            elif target == own or target == PLUMBING:
                continue
            elif own == PLUMBING:
                out.append(f"{where}: plumbing imports only plumbing")
            elif LAYERS[target] > LAYERS[own]:
                out.append(f"{where}: {own} (layer {LAYERS[own]}) imports the higher "
                           f"{target} (layer {LAYERS[target]})")
            elif LAYERS[target] == LAYERS[own] and (own, target) not in SAME_LAYER:
                out.append(f"{where}: {own} and {target} are one layer; neither imports "
                           "the other")
    return out


def test_every_import_respects_the_layers():
    assert _violations() == []


def test_theory_imports_nothing_from_interop():
    assert not [name for module, path in MODULES.items() if _part(module) == "theory"
                for _, name in _imported(module, path) if _part(name) == "interop"]


def test_no_host_imports_a_sibling_host():
    hosts = [m for m in MODULES if m.startswith("toysae.models.")
             and m not in ("toysae.models.base", "toysae.models.site_objective")]
    assert hosts
    for module in hosts:
        siblings = [name for _, name in _imported(module, MODULES[module])
                    if name in hosts and name != module]
        assert siblings == [], f"{module} imports {siblings}"


def _privacy_violations() -> list[str]:
    """Imports against the privacy rule (docs/design.md, Layering): an underscore module
    below the top level is imported only from inside the package that holds it, and no
    module imports another's underscore name."""
    out = []
    for module, path in MODULES.items():
        for line, name in _imported(module, path):
            parts = name.split(".")
            for depth in range(2, len(parts)):
                owner = ".".join(parts[:depth])
                if parts[depth].startswith("_") and not (module == owner
                                                         or module.startswith(owner + ".")):
                    out.append(f"{module} (line {line}) imports {name}, private to {owner}")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("toysae"):
                out += [f"{module} (line {node.lineno}) imports {a.name} from {node.module}"
                        for a in node.names if a.name.startswith("_")
                        and f"{node.module}.{a.name}" not in MODULES]
    return out


def test_every_import_respects_privacy():
    assert _privacy_violations() == []


@pytest.mark.parametrize("source, expected", [
    ("from toysae.sae._fused import step_path\n", "private to toysae.sae"),
    ("from toysae.dictlearn.lasso import _cvxpy_solver\n", "private to toysae.dictlearn.lasso"),
    ("from toysae.theory.conditions import _helper\n", "imports _helper from"),
])
def test_the_privacy_walk_sees_what_it_must(tmp_path, monkeypatch, source, expected):
    fake = tmp_path / "toysae" / "theory" / "planted.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(source)
    monkeypatch.setitem(MODULES, "toysae.theory.planted", fake)
    found = [v for v in _privacy_violations() if "planted" in v]
    assert len(found) == 1 and expected in found[0], found


@pytest.mark.parametrize("source, expected", [
    ("from toysae.interop import load_sae\n", "theory and interop are one layer"),
    ("from toysae.check.files import check_sae_files\n", "imports the higher check"),
    ("from ..experiments import get\n", "imports the higher experiments"),
    ("def f():\n    from toysae.cli import main\n", "imports the higher cli"),
    ("from toysae import metrics\n", "theory and metrics are one layer"),
    ("import toysae\n", "front door"),
])
def test_the_walk_sees_what_it_must(tmp_path, monkeypatch, source, expected):
    """A planted import in a theory module, at module level or inside a function, is found."""
    fake = tmp_path / "toysae" / "theory" / "planted.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(source)
    monkeypatch.setitem(MODULES, "toysae.theory.planted", fake)
    found = [v for v in _violations() if "planted" in v]
    assert len(found) == 1 and expected in found[0], found
