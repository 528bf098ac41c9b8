"""The tests folder mirrors the package (docs/design.md, Conventions, "Tests").

``toysae/A/B.py`` is tested in ``tests/A/test_B.py`` (``_B.py`` too: the underscore is
dropped), a top-level ``toysae/B.py`` in ``tests/test_B.py``, and a package's own code in its
``__init__.py`` in ``tests/A/test_A.py`` (``toysae/__init__.py``: ``tests/test_toysae.py``).
Every module needs its mirror file; an ``__init__.py`` needs one when it defines a public
function or class of its own (one that only gathers names needs none). Every ``test_*.py``
under ``tests/`` mirrors a module, or is one of the package-wide files listed below.
Helpers (``conftest.py``, ``problems.py``, ...) are not named ``test_*.py`` and are ignored.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import pytest

P = PurePosixPath
ROOT = Path(__file__).resolve().parents[1]
PACKAGE, TESTS = ROOT / "toysae", ROOT / "tests"

#: The test files that check the package as a whole, so mirror no one module. Keep it short:
#: a test of one module's behaviour belongs in that module's file.
PACKAGE_WIDE = {
    "test_layers.py",  # the layer rule, read off every import statement of the package
    "test_layout.py",  # this file: the tests folder mirrors the package
    "test_startup.py",  # what `import toysae` and the command load before any work
    "test_readme.py",  # the README's code and numbers
    "test_notebooks.py",  # the notebooks run
    "test_behaviour_pins.py",  # fixed-seed runs end on recorded hashes across every layer
    "test_new_architecture.py",  # a throwaway architecture through every layer, no edits
}


def mirror(module: PurePosixPath) -> PurePosixPath:
    """The test file of ``module``, a path relative to the package's parent
    (``toysae/sae/_fused.py`` -> ``sae/test_fused.py``, relative to ``tests/``)."""
    parts = module.parts[1:]  # below toysae/
    if module.name == "__init__.py":
        folder = parts[:-1]
        return PurePosixPath(*folder, f"test_{(folder or module.parts[:1])[-1]}.py")
    return PurePosixPath(*parts[:-1], f"test_{module.stem.lstrip('_')}.py")


def defines_public_code(source: str) -> bool:
    """Whether a module's source defines a public function or class at its top level."""
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
               and not node.name.startswith("_") for node in ast.parse(source).body)


def modules_needing_tests(package: Path) -> list[PurePosixPath]:
    """Every module of ``package`` that needs a mirror file, relative to its parent."""
    out = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "__main__.py":
            continue
        if path.name == "__init__.py" and not defines_public_code(path.read_text()):
            continue
        out.append(PurePosixPath(path.relative_to(package.parent).as_posix()))
    return out


def layout_problems(modules: Iterable[PurePosixPath], packages: Iterable[PurePosixPath],
                    test_files: Iterable[PurePosixPath],
                    package_wide: Iterable[str] = PACKAGE_WIDE) -> list[str]:
    """What breaks the mirror, one line each.

    modules : the modules that need a mirror file (:func:`modules_needing_tests`);
    packages : every package's ``__init__.py``, whose mirror file may exist without need;
    test_files : every ``test_*.py`` under ``tests/``, relative to it;
    package_wide : the top-level test files that mirror nothing.
    """
    modules, test_files, package_wide = list(modules), set(test_files), set(package_wide)
    problems, owners = [], {}
    for module in modules:
        test = mirror(module)
        if test in owners:
            problems.append(f"{owners[test]} and {module} both mirror to tests/{test}: "
                            "rename one")
        owners[test] = module
        if test not in test_files:
            problems.append(f"{module} has no test file: write tests/{test}")
    allowed = set(owners) | {mirror(p) for p in packages}
    for test in sorted(test_files):
        if test in allowed:
            if test.as_posix() in package_wide:
                problems.append(f"tests/{test} mirrors a module: take it off PACKAGE_WIDE")
        elif test.as_posix() not in package_wide:
            problems.append(f"tests/{test} mirrors no module of the package: move its tests "
                            "to the file of the module they check (or, for a package-wide "
                            "test, list it in PACKAGE_WIDE in tests/test_layout.py)")
    problems += [f"PACKAGE_WIDE lists tests/{name}, which does not exist"
                 for name in sorted(package_wide) if PurePosixPath(name) not in test_files]
    return problems


def _tree() -> tuple[list, list, list]:
    packages = [PurePosixPath(p.relative_to(ROOT).as_posix())
                for p in sorted(PACKAGE.rglob("__init__.py"))]
    tests = [PurePosixPath(p.relative_to(TESTS).as_posix())
             for p in sorted(TESTS.rglob("test_*.py"))]
    return modules_needing_tests(PACKAGE), packages, tests


def test_the_tests_folder_mirrors_the_package():
    modules, packages, tests = _tree()
    assert len(modules) > 80 and len(tests) > 80  # the listing found the tree
    problems = layout_problems(modules, packages, tests)
    assert problems == [], "\n".join(problems)


def test_mirror_paths():
    cases = {"toysae/sae/engine.py": "sae/test_engine.py",
             "toysae/sae/_fused.py": "sae/test_fused.py",
             "toysae/_io.py": "test_io.py",
             "toysae/cli.py": "test_cli.py",
             "toysae/dictlearn/lasso/_fista.py": "dictlearn/lasso/test_fista.py",
             "toysae/experiments/sites_and_recipes/common.py":
                 "experiments/sites_and_recipes/test_common.py",
             "toysae/experiments/sites_and_recipes/__init__.py":
                 "experiments/sites_and_recipes/test_sites_and_recipes.py",
             "toysae/models/__init__.py": "models/test_models.py",
             "toysae/__init__.py": "test_toysae.py"}
    assert {k: mirror(PurePosixPath(k)).as_posix() for k in cases} == cases


def test_the_guard_fails_on_a_module_without_its_test_file():
    modules = [P("toysae/sae/relu.py"), P("toysae/sae/newarch.py")]
    problems = layout_problems(modules, [], [P("sae/test_relu.py")], package_wide=())
    assert problems == ["toysae/sae/newarch.py has no test file: write "
                        "tests/sae/test_newarch.py"]
    # the file in another folder does not count: the mirror is exact
    assert layout_problems(modules, [], [P("sae/test_relu.py"), P("test_newarch.py")],
                           package_wide=()) == [
        "toysae/sae/newarch.py has no test file: write tests/sae/test_newarch.py",
        "tests/test_newarch.py mirrors no module of the package: move its tests to the file "
        "of the module they check (or, for a package-wide test, list it in PACKAGE_WIDE in "
        "tests/test_layout.py)"]


def test_the_guard_fails_on_a_test_file_without_its_module_unless_package_wide():
    modules, tests = [P("toysae/metrics.py")], [P("test_metrics.py"), P("test_sae.py")]
    (problem,) = layout_problems(modules, [], tests, package_wide=())
    assert problem.startswith("tests/test_sae.py mirrors no module of the package")
    assert layout_problems(modules, [], tests, package_wide={"test_sae.py"}) == []
    # a package's __init__ mirror may exist without the __init__ needing it
    init = [P("toysae/data/__init__.py")]
    assert layout_problems(modules, init, tests + [P("data/test_data.py")],
                           package_wide={"test_sae.py"}) == []


def test_the_guard_fails_on_a_stale_or_needless_allowlist_entry_and_a_shared_mirror():
    modules, tests = [P("toysae/cli.py")], [P("test_cli.py")]
    assert layout_problems(modules, [], tests, package_wide={"test_cli.py"}) == [
        "tests/test_cli.py mirrors a module: take it off PACKAGE_WIDE"]
    assert layout_problems(modules, [], tests, package_wide={"test_gone.py"}) == [
        "PACKAGE_WIDE lists tests/test_gone.py, which does not exist"]
    both = [P("toysae/sae/config.py"), P("toysae/sae/_config.py")]
    assert layout_problems(both, [], [P("sae/test_config.py")], package_wide=()) == [
        "toysae/sae/config.py and toysae/sae/_config.py both mirror to tests/sae/"
        "test_config.py: rename one"]


def test_an_init_needs_a_test_file_only_for_public_code_of_its_own(tmp_path):
    package = tmp_path / "toysae"
    (package / "gather").mkdir(parents=True)
    (package / "own").mkdir()
    (package / "__init__.py").write_text("def __getattr__(name):\n    return name\n")
    (package / "__main__.py").write_text("print('run')\n")
    (package / "gather" / "__init__.py").write_text("from toysae.gather.x import f\n")
    (package / "gather" / "x.py").write_text("def f():\n    return 1\n")
    (package / "own" / "__init__.py").write_text("class Registry:\n    pass\n\n"
                                                 "def _helper():\n    pass\n")
    assert modules_needing_tests(package) == [P("toysae/gather/x.py"),
                                              P("toysae/own/__init__.py")]
    assert mirror(P("toysae/own/__init__.py")) == P("own/test_own.py")


@pytest.mark.parametrize("source, public", [("x = 1\n", False), ("def _f():\n    pass\n", False),
                                            ("async def f():\n    pass\n", True),
                                            ("class C:\n    pass\n", True)])
def test_defines_public_code(source, public):
    assert defines_public_code(source) is public
