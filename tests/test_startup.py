"""Start-up: what ``import toysae`` and the ``toysae`` command load before any work.

Each check runs a fresh interpreter (this one has imported everything already) and
reads its ``sys.modules``. No timings: the machines are shared.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import toysae
from toysae import experiments
from toysae.cli import main

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("sklearn", "cvxpy", "matplotlib")


def _loaded(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; the top-level packages it then holds, and
    whatever ``code`` put in the dict ``out``."""
    script = ("import json, sys\nout = {}\n" + code +
              "\nout['modules'] = sorted({m.split('.')[0] for m in sys.modules})"
              "\nprint(json.dumps(out))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_import_toysae_loads_no_sklearn_cvxpy_or_matplotlib():
    assert not set(HEAVY) & set(_loaded("import toysae")["modules"])


def test_the_core_loads_no_sklearn_cvxpy_or_matplotlib():
    """Training, checking, scoring and the hosts: none needs the estimator contract, the
    cvxpy solver or plotting until asked for them."""
    names = [n for n in toysae.__all__ if n != "DictionaryLearner"]
    loaded = _loaded(f"import toysae\nfor n in {names!r}: getattr(toysae, n)\n"
                     "import toysae.models, toysae.interop, toysae.host_metrics, toysae.check")
    assert not set(HEAVY) & set(loaded["modules"])
    assert "torch" in loaded["modules"]  # the names did load


def test_sae_lens_is_imported_only_when_a_saelens_world_is_used():
    """sae-lens is an optional (dev) dependency: toysae, its interop (the SAE format and
    SAELensWorld's module) and the experiments load without it."""
    loaded = _loaded("import toysae, toysae.interop, toysae.interop.saelens_worlds\n"
                     "import toysae.experiments, toysae.data, toysae.metrics")
    assert "sae_lens" not in loaded["modules"] and "toysae" in loaded["modules"]


def test_lazy_names_are_the_real_ones():
    from toysae.dictlearn.learner import DictionaryLearner
    from toysae.sae import train_sae
    from toysae.theory import check_sae

    assert toysae.DictionaryLearner is DictionaryLearner
    assert toysae.train_sae is train_sae and toysae.check_sae is check_sae
    assert toysae.metrics is importlib.import_module("toysae.metrics")
    assert set(toysae.__all__) <= set(dir(toysae))
    loaded = _loaded("from toysae import DictionaryLearner\n"
                     "out['name'] = DictionaryLearner.__name__")
    assert loaded["name"] == "DictionaryLearner" and "sklearn" in loaded["modules"]


def test_unknown_names_are_attribute_errors():
    for module in (toysae, toysae.dictlearn):
        with pytest.raises(AttributeError, match="no_such_name"):
            module.no_such_name  # noqa: B018


def test_help_and_list_load_no_torch():
    for argv in (["--help"], ["list"]):
        loaded = _loaded("from toysae.cli import main\ntry:\n    main(" + repr(argv) + ")\n"
                         "except SystemExit:\n    pass")
        assert "torch" not in loaded["modules"], argv
        assert not set(HEAVY) & set(loaded["modules"]), argv


def test_list_shows_every_experiment_modules_own_name_and_description():
    """``toysae list`` reads NAME and DESCRIPTION from the sources; importing the modules
    gives the same experiments, names and descriptions."""
    imported = {}
    for info in pkgutil.iter_modules(experiments.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"toysae.experiments.{info.name}")
        if hasattr(module, "NAME"):
            imported[module.NAME] = (module.DESCRIPTION, module.__name__)
    listed = {i.name: (i.description, i.module) for i in experiments.available().values()}
    assert listed == imported and len(listed) >= 10
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["list"]) == 0
    assert out.getvalue().splitlines() == [f"{name:24s} {imported[name][0]}"
                                           for name in sorted(imported)]


def test_a_name_that_is_no_literal_is_refused(tmp_path, monkeypatch):
    package = tmp_path / "planted_experiments"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "computed.py").write_text("NAME = 'x' + 'y'\nDESCRIPTION = 'd'\n")
    (package / "named.py").write_text("NAME = 'n'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for module, message in (("computed", "NAME must be a string literal"),
                            ("named", "defines NAME but no DESCRIPTION")):
        with pytest.raises(RuntimeError, match=message):
            experiments._literals(f"planted_experiments.{module}")
