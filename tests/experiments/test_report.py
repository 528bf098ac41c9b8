"""``toysae.experiments.report``: the docs' result tables rendered from stored JSON: regions
found from their marker lines, rendered in place and the rest of a document untouched, a
changed number making its region stale, and every bad input (markers, documents, JSON)
refused naming its file; then the repository's own tables against its committed JSON."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest

from toysae.experiments import architectures_under_theory as aut
from toysae.experiments import get, provenance, report
from toysae.stats import mean_interval

ROOT = Path(__file__).resolve().parents[2]
NAME = aut.NAME
OPEN, CLOSE = f"<!-- report:{NAME}:summary -->", report.CLOSE


def _summary(name, target, f1s):
    intervals = {"l0": mean_interval([target or 7.5, (target or 7.5) + 0.5]).to_dict(),
                 "mcc": mean_interval([0.5, 0.6]).to_dict(),
                 "f1": mean_interval(f1s).to_dict()}
    return aut.Summary(name=name, target_l0=target, seeds=(0, 1), intervals=intervals)


def _result() -> dict:
    """A stored architectures-under-theory result, as far as its report reads it."""
    config = aut.Config.quick()
    return {provenance.KEY: provenance.provenance(aut, config),
            "config": json.loads(config.to_json()), "targets": [10], "true_l0": 9.87,
            "summaries": [_summary("relu", 10, [0.4, 0.5]).to_dict(),
                          _summary("topk", 10, [0.7, 0.72]).to_dict(),
                          _summary(aut.DICTLEARN, None, [0.8, 0.9]).to_dict()]}


def _repository(tmp_path, data=None, readme=None) -> Path:
    """A repository at tmp_path/repo: README.md and docs/theory.md with one region each,
    around text that must survive, and figures/full/NAME.json."""
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "figures" / "full").mkdir(parents=True)
    (root / "README.md").write_text(readme if readme is not None else
                                    f"# top\n\nbefore\n{OPEN}\nold\n{CLOSE}\nafter\n")
    (root / "docs" / "theory.md").write_text(f"intro `{OPEN}` quoted\n\n{OPEN}\n{CLOSE}\n")
    (root / "figures" / "full" / f"{NAME}.json").write_text(
        json.dumps(_result() if data is None else data))
    return root


def test_rendering_fills_each_region_and_leaves_the_rest(tmp_path):
    root = _repository(tmp_path)
    assert [(r.where, r.start, r.stop) for r in report.stale_regions(root)] == [
        (f"README.md:4: report:{NAME}:summary", 4, 5),
        (f"docs/theory.md:3: report:{NAME}:summary", 3, 3)]
    changed = report.write_documents(root)
    assert [r.where for r in changed] == [f"README.md:4: report:{NAME}:summary",
                                          f"docs/theory.md:3: report:{NAME}:summary"]
    readme = (root / "README.md").read_text()
    assert readme.startswith(f"# top\n\nbefore\n{OPEN}\n\nTrue L0 9.87; each cell")
    assert readme.endswith(f"not by hand.\n\n{CLOSE}\nafter\n") and "old" not in readme
    table = aut.summary_table([aut.Summary.from_dict(s) for s in _result()["summaries"]],
                              (10,), 9.87, aut.Config.quick().lam)
    assert table in readme
    assert "| relu | 10 | 10.25 [" in table and "| dictlearn | - |" in table
    assert f"From [`figures/full/{NAME}.json`](figures/full/{NAME}.json) (toysae " in readme
    theory = (root / "docs" / "theory.md").read_text()
    assert theory.startswith(f"intro `{OPEN}` quoted\n\n{OPEN}\n\n{table}\n")
    assert f"(../figures/full/{NAME}.json)" in theory  # the link works from docs/
    assert report.stale_regions(root) == [] and report.write_documents(root) == []
    assert (root / "README.md").read_text() == readme  # rendering again changes nothing


def test_a_changed_number_makes_its_regions_stale(tmp_path):
    root = _repository(tmp_path)
    report.write_documents(root)
    data = _result()
    data["summaries"][1]["intervals"]["f1"]["mean"] += 0.01
    (root / "figures" / "full" / f"{NAME}.json").write_text(json.dumps(data))
    assert [r.where for r in report.stale_regions(root)] == [
        f"README.md:4: report:{NAME}:summary", f"docs/theory.md:3: report:{NAME}:summary"]
    assert " 0.710 [" in (root / "README.md").read_text()  # topk's F1 before the change
    report.write_documents(root)
    assert " 0.710 [" not in (root / "README.md").read_text()
    assert " 0.720 [" in (root / "README.md").read_text()
    assert report.stale_regions(root) == []
    # a number typed by hand into the table is stale too
    readme = root / "README.md"
    readme.write_text(readme.read_text().replace("| relu | 10 |", "| relu | 11 |"))
    assert [r.line for r in report.stale_regions(root)] == [4]


def test_documents_and_figures_can_be_named(tmp_path):
    root = _repository(tmp_path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.move(root / "figures" / "full" / f"{NAME}.json", other / f"{NAME}.json")
    with pytest.raises(FileNotFoundError, match=f"figures/full/{NAME}.json: no such file"):
        report.stale_regions(root)
    stale = report.stale_regions(root, documents=[root / "docs" / "theory.md"], figures=other)
    assert [r.where for r in stale] == [f"docs/theory.md:3: report:{NAME}:summary"]
    report.write_documents(root, documents=[root / "docs" / "theory.md"], figures=other)
    assert f"From [`{other / NAME}.json`](../../elsewhere/{NAME}.json)" in (
        root / "docs" / "theory.md").read_text()
    assert OPEN + "\nold\n" in (root / "README.md").read_text()  # not asked: not written


def test_a_document_without_regions_is_left_alone(tmp_path):
    root = _repository(tmp_path, readme="nothing to render\n")
    (root / "docs" / "theory.md").write_text("nothing either")
    assert report.stale_regions(root) == [] and report.write_documents(root) == []
    assert report.default_documents(root) == [root / "README.md", root / "docs" / "theory.md"]


@pytest.mark.parametrize("text, message", [
    (f"{OPEN}\n", "README.md:1: the report region is never closed"),
    (f"{OPEN}\n{OPEN}\n{CLOSE}\n", "README.md:2: a report region opens inside the one opened "
                                   "at line 1"),
    (f"a\n{CLOSE}\n", f"README.md:2: {CLOSE} closes no report region"),
    ("<!-- report:NAME:TABLE -->\n", "README.md:1: a report marker must read"),
    (f"<!-- report:{NAME} -->\n", "README.md:1: a report marker must read"),
    (f"<!-- report:{NAME}:summary-->\n", "README.md:1: a report marker must read"),
])
def test_malformed_markers_are_refused_naming_the_line(tmp_path, text, message):
    root = _repository(tmp_path, readme=text)
    with pytest.raises(ValueError, match=message):
        report.stale_regions(root)
    assert (root / "README.md").read_text() == text


@pytest.mark.parametrize("marker, message", [
    ("<!-- report:no-such-experiment:summary -->",
     "README.md:1: report:no-such-experiment:summary: experiment must be one of"),
    ("<!-- report:dense-1d:summary -->", "dense-1d renders no tables"),
    (f"<!-- report:{NAME}:no_such_table -->",
     f"{NAME} renders the tables \\['summary'\\], not 'no_such_table'"),
])
def test_a_region_no_experiment_renders_is_refused(tmp_path, marker, message):
    root = _repository(tmp_path, readme=f"{marker}\n{CLOSE}\n")
    with pytest.raises(ValueError, match=message):
        report.stale_regions(root)


def test_a_benchmark_script_renders_its_own_json(tmp_path):
    """A name that is no experiment is a benchmark: benchmarks/bench_NAME.py (dashes as
    underscores) renders FIGURES/NAME.json through its own report_tables."""
    root = _repository(tmp_path, readme="<!-- report:toy-bench:rows -->\n" + CLOSE + "\n")
    (root / "benchmarks").mkdir()
    (root / "benchmarks" / "bench_toy_bench.py").write_text(
        "def report_tables(data):\n"
        "    return {'rows': '| n |\\n|---|\\n' + '\\n'.join(f'| {n} |' for n in data['n'])}\n")
    stored = {provenance.KEY: provenance.block("toy-bench", "full", []), "n": [3, 4]}
    (root / "figures" / "full" / "toy-bench.json").write_text(json.dumps(stored))
    assert report.write_documents(root)[0].where == "README.md:1: report:toy-bench:rows"
    assert "| n |\n|---|\n| 3 |\n| 4 |" in (root / "README.md").read_text()
    stored["n"][1] = 5
    (root / "figures" / "full" / "toy-bench.json").write_text(json.dumps(stored))
    assert [r.line for r in report.stale_regions(root)] == [1]
    (root / "benchmarks" / "bench_toy_bench.py").unlink()
    with pytest.raises(ValueError, match="nor is there a benchmark benchmarks/bench_toy_bench.py"):
        report.stale_regions(root)


def test_every_experiment_renders_its_figure_with_one_line_of_finding(tmp_path):
    """The line under the figure: the module's caption(data), else the result's first
    finding, else the experiment's description."""
    name = "sae-vs-dictlearn"  # no caption of its own
    fig = f"<!-- report:{name}:figure -->"
    root = _repository(tmp_path, readme=f"{fig}\n{CLOSE}\n")
    (root / "docs" / "theory.md").write_text(f"{fig}\n{CLOSE}\n")
    full = root / "figures" / "full"
    data = {provenance.KEY: provenance.block(name, "full", [])}
    (full / f"{name}.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"{name}.png is missing"):
        report.stale_regions(root)
    (full / f"{name}.png").write_bytes(b"png")
    report.write_documents(root)
    readme = (root / "README.md").read_text()
    assert f"![{name}](figures/full/{name}.png)\n\n{get(name).DESCRIPTION}\n" in readme
    assert f"![{name}](../figures/full/{name}.png)" in (root / "docs" / "theory.md").read_text()
    data["findings"] = ["First finding, from the JSON.", "second"]
    (full / f"{name}.json").write_text(json.dumps(data))
    assert len(report.stale_regions(root)) == 2  # the caption is the result's first finding
    report.write_documents(root)
    assert "\n\nFirst finding, from the JSON.\n" in (root / "README.md").read_text()
    # a module's own caption wins over its findings
    assert report.figure_caption(get("hull-panels"), {
        "findings": ["not this"], "expected_outcome_holds": True,
        "panels": [{"name": "A", "cos": 0.3, "passed": True}]}) == (
        "The convex-hull pair condition on three 2-feature datasets: panel A (cos +0.30) "
        "passes, as the theory predicts.")


def _data(change):
    data = _result()
    change(data)
    return data


@pytest.mark.parametrize("content, error, message", [
    (None, FileNotFoundError, f"figures/full/{NAME}.json: no such file .*toysae run {NAME} "
                              "--out figures/full"),
    ("{not json", ValueError, f"figures/full/{NAME}.json is not JSON"),
    (b"\xff\xfe", ValueError, f"figures/full/{NAME}.json is not a toysae result: not UTF-8"),
    ("[1, 2]", ValueError, f"figures/full/{NAME}.json is not a toysae result: a JSON list"),
    (json.dumps({"config": {}, "summaries": []}), ValueError,
     f"figures/full/{NAME}.json: no 'provenance' block"),
    (json.dumps(_data(lambda d: d[provenance.KEY].update(schema_version=0))), ValueError,
     f"figures/full/{NAME}.json: schema version 0, this toysae reads version "
     f"{provenance.SCHEMA_VERSION}"),
    (json.dumps(_data(lambda d: d[provenance.KEY].update(experiment="dense-1d"))), ValueError,
     f"figures/full/{NAME}.json holds a result of 'dense-1d', not of '{NAME}'"),
    (json.dumps(_data(lambda d: d.pop("summaries"))), ValueError,
     f"figures/full/{NAME}.json: its numbers do not render as {NAME}'s tables "
     "\\(KeyError: 'summaries'\\)"),
    (json.dumps(_data(lambda d: d["summaries"][0].update(name=None, extra=1))), ValueError,
     f"figures/full/{NAME}.json: its numbers do not render"),
])
def test_a_missing_foreign_or_other_version_json_is_refused_naming_it(tmp_path, content,
                                                                       error, message):
    root = _repository(tmp_path)
    path = root / "figures" / "full" / f"{NAME}.json"
    if content is None:
        path.unlink()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    before = (root / "README.md").read_text()
    with pytest.raises(error, match=message):
        report.write_documents(root)
    assert (root / "README.md").read_text() == before


def test_a_missing_document_or_root_is_refused(tmp_path):
    root = _repository(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.md: no such document"):
        report.stale_regions(root, documents=[root / "nope.md"])
    with pytest.raises(NotADirectoryError, match="root must be a folder"):
        report.stale_regions(root / "README.md")


def test_the_repository_tables_match_their_committed_json():
    """Stale numbers are a test failure: every region of README.md and docs/*.md holds
    what its JSON under figures/full renders (``toysae report`` rewrites them)."""
    assert [r.where for r in report.stale_regions(ROOT)] == []


def _numbers(value, at=()):
    """(path, number) of every number in a parsed JSON value, depth first."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, (*at, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _numbers(item, (*at, i))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield at, value


@contextlib.contextmanager
def _changed(data, at, value):
    """``data`` with the number at ``at`` set to ``value``, restored on exit (in place: a
    copy per number would make the search quadratic in a large JSON's size)."""
    holder = data
    for key in at[:-1]:
        holder = holder[key]
    old, holder[at[-1]] = holder[at[-1]], value
    try:
        yield data
    finally:
        holder[at[-1]] = old


def _shown(module, names, data) -> dict:
    """What the regions of ``names`` show of ``data`` (a figure region: its caption)."""
    tables = module.report_tables(data) if hasattr(module, "report_tables") else {}
    return {name: tables[name] if name in tables else report.figure_caption(module, data)
            for name in names}


def test_changing_a_committed_number_its_table_shows_fails_the_check(tmp_path):
    """On a copy of the repository: the last number of each committed JSON that its tables
    show (results come after the settings), changed, makes exactly that experiment's
    regions stale."""
    regions = [r for doc in report.render_documents(ROOT) for r in doc.regions]
    assert regions, "README.md and docs/*.md show no table rendered from figures/full"
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "README.md", copy / "README.md")
    shutil.copytree(ROOT / report.FIGURES, copy / report.FIGURES)
    shutil.copytree(ROOT / "benchmarks", copy / "benchmarks")  # a benchmark's own tables
    assert report.stale_regions(copy) == []
    for experiment in sorted({r.experiment for r in regions}):
        path = copy / report.FIGURES / f"{experiment}.json"
        original = path.read_text()
        data = json.loads(original)
        module = report.renderer(experiment, copy)
        names = {r.table for r in regions if r.experiment == experiment}
        shown = _shown(module, names, data)
        numbers = _numbers({k: v for k, v in data.items() if k not in (provenance.KEY, "config")})
        for at, number in reversed(list(numbers)):
            with _changed(data, at, number + 1 if isinstance(number, int)
                          else number * 1.01 + 0.01) as changed:
                try:
                    now = _shown(module, names, changed)
                except (KeyError, TypeError, ValueError, IndexError):
                    continue
                if now != shown:
                    changed_text = json.dumps(changed)
                    break
        else:
            if any(ch.isdigit() for text in shown.values() for ch in text):
                pytest.fail(f"no number of {path} changes what its tables show")
            continue  # its regions show no number (a figure and a sentence without one)
        path.write_text(changed_text)
        stale = report.stale_regions(copy)
        assert {r.where for r in stale} == {r.where for r in regions if r.experiment ==
                                            experiment and now[r.table] != shown[r.table]}, at
        path.write_text(original)
    assert report.stale_regions(copy) == []
