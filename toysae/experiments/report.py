"""Result tables in the docs, rendered from the committed JSON (``toysae report``).

A markdown document holds a *region* for each table it shows: an opening line
``<!-- report:EXPERIMENT:TABLE -->``, the table, and a closing line ``<!-- /report -->``,
each marker on a line of its own (a marker quoted inside a sentence is not one). What
lies between them is written by :func:`render_documents` from ``FIGURES/EXPERIMENT.json``
through the experiment module's ``report_tables(data) -> {TABLE: markdown}``, the one
function an experiment adds to opt in (a NAME that is no experiment names a benchmark
script, ``benchmarks/bench_NAME.py``, with its own ``report_tables``; the table
``figure`` needs none: :func:`figure_entry`), followed by a line naming and linking the
JSON and its provenance
(:mod:`toysae.experiments.provenance`). :func:`stale_regions` is the check: the regions
whose text differs from what their JSON renders, so a number typed by hand or left
behind by a new run fails ``toysae report --check`` and the test that runs it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from toysae._io import write_text
from toysae.experiments import get, provenance

OPEN = re.compile(r"<!-- report:([a-z0-9]+(?:-[a-z0-9]+)*):([a-z0-9_]+) -->")
CLOSE = "<!-- /report -->"
#: The table every experiment renders without asking: its figure and one line of finding.
FIGURE = "figure"
#: The folder of committed full-run outputs, relative to the repository root.
FIGURES = Path("figures") / "full"


@dataclass(frozen=True)
class Region:
    """One table's place in a document: ``lines[start:stop]`` of ``document`` (0-based,
    between the marker lines) is its text; ``line`` is the opening marker's 1-based line."""

    document: Path
    line: int
    experiment: str
    table: str
    start: int
    stop: int

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}: report:{self.experiment}:{self.table}"


def default_documents(root: str | Path) -> list[Path]:
    """The documents whose regions ``toysae report`` renders: ``README.md`` and every
    ``docs/*.md`` of the repository at ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"root must be a folder (the repository), got {root}")
    readme = root / "README.md"
    return ([readme] if readme.is_file() else []) + sorted((root / "docs").glob("*.md"))


def find_regions(document: Path, lines: list[str]) -> list[Region]:
    """The regions of ``document``, whose text is ``lines`` (no line ends). ValueError
    naming the document and line for a malformed, unclosed or nested marker, or a
    closing one with nothing open."""
    regions, opened = [], None
    for i, raw in enumerate(lines):
        line = raw.strip()
        if line.startswith("<!-- report:"):
            match = OPEN.fullmatch(line)
            if match is None:
                raise ValueError(f"{document}:{i + 1}: a report marker must read "
                                 f"'<!-- report:EXPERIMENT:TABLE -->', got {line!r}")
            if opened is not None:
                raise ValueError(f"{document}:{i + 1}: a report region opens inside the one "
                                 f"opened at line {opened[0] + 1}, which is not closed")
            opened = (i, match.group(1), match.group(2))
        elif line == CLOSE:
            if opened is None:
                raise ValueError(f"{document}:{i + 1}: {CLOSE} closes no report region")
            at, experiment, table = opened
            regions.append(Region(document, at + 1, experiment, table, at + 1, i))
            opened = None
    if opened is not None:
        raise ValueError(f"{document}:{opened[0] + 1}: the report region is never closed "
                         f"(no {CLOSE} line after it)")
    return regions


def load_result(path: Path, experiment: str, name: Path | None = None) -> dict:
    """``path`` parsed, if it is a stored result of ``experiment`` at this schema version;
    FileNotFoundError or ValueError naming it (as ``name``, default ``path``) otherwise."""
    path = Path(path)
    name = path if name is None else name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: no such file (its experiment's full run writes it: "
                                f"toysae run {experiment} --out {name.parent})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{name} is not a toysae result: not UTF-8 text") from None
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{name} is not JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{name} is not a toysae result: a JSON {type(data).__name__}, "
                         "not an object")
    block = provenance.check_block(data.get(provenance.KEY), name)
    if block.get("experiment") != experiment:
        raise ValueError(f"{name} holds a result of {block.get('experiment')!r}, not of "
                         f"{experiment!r}")
    return data


def _named(path: Path, root: Path) -> Path:
    """``path`` as messages and footers name it: relative to ``root`` when under it."""
    full, top = path.resolve(), root.resolve()
    return full.relative_to(top) if full.is_relative_to(top) else full


def render(region: Region, document: Path, json_path: Path, root: Path) -> list[str]:
    """The lines ``region`` of ``document`` should hold: its table rendered from
    ``json_path`` (named relative to ``root``) and a line naming and linking that file.
    ValueError naming the document or the JSON when the region asks for what no
    experiment renders or the JSON cannot give it."""
    module = renderer(region.experiment, root, region.where)
    tables = getattr(module, "report_tables", None)
    if tables is None and region.table != FIGURE:
        raise ValueError(f"{region.where}: {region.experiment} renders no tables (its module "
                         "has no report_tables function)")
    shown = _named(json_path, root)
    data = load_result(json_path, region.experiment, shown)
    try:
        rendered = tables(data) if tables is not None else {}
        if region.table == FIGURE and FIGURE not in rendered:
            rendered[FIGURE] = figure_entry(module, data, json_path, document)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise ValueError(f"{shown}: its numbers do not render as {region.experiment}'s "
                         f"tables ({type(err).__name__}: {err}): stored by another version "
                         "of the experiment? rerun it") from None
    if region.table not in rendered:
        raise ValueError(f"{region.where}: {region.experiment} renders the tables "
                         f"{sorted(rendered)}, not {region.table!r}")
    link = Path(os.path.relpath(json_path.resolve(), document.resolve().parent)).as_posix()
    footer = (f"From [`{shown.as_posix()}`]({link}) "
              f"({provenance.describe(data[provenance.KEY])}); written by `toysae report`, "
              "not by hand.")
    return ["", *rendered[region.table].strip("\n").split("\n"), "", footer, ""]


def figure_caption(module, data: dict) -> str:
    """The line under an experiment's figure: the module's ``caption(data)`` where it has
    one, else the result's first finding, else the experiment's description."""
    caption = getattr(module, "caption", None)
    if caption is not None:
        return caption(data)
    if data.get("findings"):
        return data["findings"][0]
    return module.DESCRIPTION


def figure_entry(module, data: dict, json_path: Path, document: Path) -> str:
    """The ``figure`` region every experiment has: its figure beside the JSON
    (``NAME.png``), linked from ``document``, over :func:`figure_caption`. ValueError
    when the figure is missing."""
    png = json_path.with_suffix(".png")
    if not png.is_file():
        raise ValueError(f"{png} is missing: the figure of {json_path.name} (rerun its "
                         "experiment)")
    link = Path(os.path.relpath(png.resolve(), document.resolve().parent)).as_posix()
    return f"![{module.NAME}]({link})\n\n{figure_caption(module, data)}"


def benchmark_file(root: Path, name: str) -> Path:
    """The benchmark script that stores ``FIGURES/name.json`` when ``name`` is not an
    experiment: ``benchmarks/bench_<name, dashes as underscores>.py`` under ``root``."""
    return Path(root) / "benchmarks" / f"bench_{name.replace('-', '_')}.py"


def renderer(name: str, root: str | Path, where: str = ""):
    """The module whose ``report_tables`` renders the tables of ``name``: the experiment of
    that name, else the benchmark script of that name in the repository at ``root``
    (loaded from its file; benchmarks are scripts, not part of the package). ValueError
    naming ``where`` (a region) when there is neither."""
    root = Path(root)
    try:
        return get(name)
    except ValueError as err:
        path = benchmark_file(root, name)
        if not path.is_file():
            raise ValueError(f"{where or name}: {err}; nor is there a benchmark "
                             f"{_named(path, root)}") from None
    spec = importlib.util.spec_from_file_location(f"_report_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Rendered:
    """A document (``path``, read as ``lines``), its regions and what each should hold."""

    path: Path
    lines: list[str]
    regions: list[Region]
    rendered: list[list[str]]

    def stale(self) -> list[Region]:
        return [r for r, new in zip(self.regions, self.rendered, strict=True)
                if self.lines[r.start:r.stop] != new]

    def text(self) -> str:
        """The document with every region rendered."""
        out, at = [], 0
        for region, new in zip(self.regions, self.rendered, strict=True):
            out += self.lines[at:region.start] + new
            at = region.stop
        return "\n".join(out + self.lines[at:])


def render_documents(root: str | Path = ".", documents=None,
                     figures: str | Path | None = None) -> list[Rendered]:
    """Every region of ``documents`` (default: :func:`default_documents` of ``root``),
    rendered from the JSON in ``figures`` (default ``root/figures/full``; a relative path
    is under ``root``). Reads only, and renders everything before anyone writes, so an
    error (naming its file) leaves every document as it was."""
    root = Path(root)
    documents = default_documents(root) if documents is None else [Path(d) for d in documents]
    figures = root / (FIGURES if figures is None else Path(figures))
    out = []
    for path in documents:
        try:
            lines = path.read_text(encoding="utf-8").split("\n")
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such document") from None
        regions = find_regions(_named(path, root), lines)
        rendered = [render(r, path, figures / f"{r.experiment}.json", root) for r in regions]
        out.append(Rendered(path, lines, regions, rendered))
    return out


def stale_regions(root: str | Path = ".", documents=None,
                  figures: str | Path | None = None) -> list[Region]:
    """The regions whose text differs from what their JSON renders (none: up to date)."""
    return [r for doc in render_documents(root, documents, figures) for r in doc.stale()]


def write_documents(root: str | Path = ".", documents=None,
                    figures: str | Path | None = None) -> list[Region]:
    """Render every region in place (each changed document written atomically, once all
    of them rendered); returns the regions that changed."""
    rendered = render_documents(root, documents, figures)
    changed = []
    for doc in rendered:
        stale = doc.stale()
        if stale:
            write_text(doc.path, doc.text())
            changed += stale
    return changed
