"""The ``toysae`` command: list, run and sweep experiments, draw generator statistics,
check an SAE on activation files, render the docs' result tables from the committed JSON."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

# What a run reports as "toysae: <message>" (exit code 2) rather than a traceback: bad input
# and configs (ValueError, TypeError), files (OSError), failed runs (RuntimeError, such as
# TrainingDiverged). Anything else is a bug and keeps its traceback.
REPORTED_ERRORS = (ValueError, TypeError, OSError, RuntimeError)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toysae",
        description="Toy-model laboratory for sparse autoencoders and dictionary learning.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="list the experiments")
    for name, helptext in [("run", "run one experiment and write its figures and numbers"),
                           ("data", "draw the synthetic generator's statistics"),
                           ("demo", "run the quick version of every experiment")]:
        p = sub.add_parser(name, help=helptext)
        if name == "run":
            p.add_argument("experiment", help="experiment name (see `toysae list`)")
        if name != "demo":
            p.add_argument("--quick", action="store_true", help="small, fast version")
        default = "figures/quick" if name == "demo" else "figures"
        p.add_argument("--out", default=default, type=Path,
                       help=f"output directory (default: {default})")
        if name == "run":
            _add_config_arguments(p)
            p.add_argument("--print-config", action="store_true",
                           help="print the resolved config as JSON and exit")
            p.add_argument("--device", default=None,
                           help="the torch device to train on (cpu, cuda): --set device=... "
                                "for an experiment whose config has a device field")
    _add_sweep_parser(sub)
    _add_check_command(sub)
    _add_report_parser(sub)
    return parser


def _add_report_parser(sub) -> None:
    p = sub.add_parser("report", help="render the result tables of README.md and docs/*.md "
                                      "from the committed JSON (figures/full)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 naming every table that differs from what "
                        "its JSON renders")
    p.add_argument("--root", type=Path, default=Path("."),
                   help="the repository (default: the current folder)")
    p.add_argument("--figures", type=Path, default=None,
                   help="the folder of the JSON, under --root when relative "
                        "(default: figures/full)")


def _report_command(args) -> int:
    """``toysae report``: render the docs' tables, or with --check name the stale ones."""
    from toysae.experiments.report import FIGURES, stale_regions, write_documents

    try:
        if args.check:
            stale = stale_regions(args.root, figures=args.figures)
        else:
            changed = write_documents(args.root, figures=args.figures)
    except REPORTED_ERRORS as err:
        return _report(err)
    if args.check:
        figures = FIGURES if args.figures is None else args.figures
        for region in stale:
            print(f"{region.where} is stale: it differs from what "
                  f"{figures / (region.experiment + '.json')} renders (run toysae report)")
        if not stale:
            print("every report table matches its JSON")
        return 1 if stale else 0
    for region in changed:
        print(f"rendered {region.where}")
    if not changed:
        print("every report table already matches its JSON")
    return 0


def _add_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="FILE.json",
                   help="a full or partial config (JSON) applied over the defaults "
                        "(over the quick config with --quick)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="override one config field, after --config; nested fields with dots "
                        "(train.lr=0.01); repeatable")


def _add_sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="run one experiment over a grid of config values, "
                                     "each point in its own process")
    p.add_argument("experiment", help="experiment name (see `toysae list`)")
    p.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...",
                   help="a config field and its values (repeatable: the product is run)")
    p.add_argument("--quick", action="store_true", help="start from the quick config")
    _add_config_arguments(p)
    p.add_argument("--out", type=Path, default=None,
                   help="output directory (default: sweeps/EXPERIMENT)")
    p.add_argument("--n-jobs", type=int, default=-1,
                   help="points run at once (joblib's n_jobs; default -1: every core; "
                        "1 runs them in this process)")
    p.add_argument("--backend", default="loky",
                   help="loky (default: local processes), dask (a dask.distributed cluster; "
                        "needs toysae[cluster]) or another registered joblib backend")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="with --backend dask: an existing scheduler's address (default: a "
                        "LocalCluster of --n-jobs worker processes, started for the sweep)")
    p.add_argument("--force", action="store_true",
                   help="rerun every point (default: keep those an earlier run of this "
                        "sweep finished, when their files are intact)")


def _add_check_command(sub) -> None:
    p = sub.add_parser(
        "check", help="check an SAE's decoder and encoder against the optimality conditions "
        "on activation files (docs/theory.md)")
    p.add_argument("sae", type=Path, help="the SAE: a toysae checkpoint file")
    p.add_argument("activations", type=Path,
                   help="activations: a .npy file, a .safetensors file with one tensor, or a "
                        "directory of such shards; shape (..., d)")
    p.add_argument("--lam", type=float, default=None,
                   help="L1 weight of the checks, per sample (default: the coefficient the SAE "
                        "file records; required when it records none)")
    p.add_argument("--out", default="figures", type=Path,
                   help="output directory for check-<sae>.json and .png (default: figures)")
    p.add_argument("--batch-size", type=int, default=4096,
                   help="activations encoded and re-solved at a time (default: 4096)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument("--normalize", action="store_true",
                   help="accept decoder rows that are not unit norm (rescale rows and codes)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _check(args) -> int:
    """``toysae check``: errors are one line on stderr and exit status 2."""
    from toysae.check import check_sae_files, save_check

    name = f"check-{args.sae.stem}"
    try:
        check_writable_folder(args.out)  # fail now, not after the passes
        report = check_sae_files(args.sae, args.activations, lam=args.lam,
                                 batch_size=args.batch_size, threads=args.threads,
                                 normalize=args.normalize, progress=not args.no_progress)
        paths = save_check(report, args.out, name=name)
    except REPORTED_ERRORS as err:
        return _report(err)
    print(report.message)
    for path in paths:
        print(f"  wrote {path}")
    return 0


#: The exit status after Ctrl-C (SIGINT): 128 + the signal's number, as shells report it.
INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        # Every write is atomic and removes its temporary file as the interrupt unwinds
        # it (toysae._io), so what is on disk is whole; a traceback would say nothing more.
        print("toysae: interrupted", file=sys.stderr)
        return INTERRUPTED


def _dispatch(args) -> int:
    if args.command == "check":
        return _check(args)
    if args.command == "report":
        return _report_command(args)
    from toysae import experiments

    if args.command == "list":
        for info in experiments.available().values():
            print(f"{info.name:24s} {info.description}")
        return 0
    if args.command == "run":
        return _run(args)
    if args.command == "sweep":
        return _sweep(args)
    if args.command == "demo":
        names = list(experiments.available())
        quick = True
    else:  # data
        names, quick = ["synthetic-data"], args.quick
    return _run_experiments(names, args.out, quick=quick)


def check_writable_folder(out: Path) -> None:
    """Create ``out`` (and its parents) if needed and check that a file can be written in
    it, before any work; OSError naming the folder otherwise. Leaves nothing behind."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"cannot write to the output folder {out}: it is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise OSError(f"cannot write to the output folder {out}: "
                      f"{err.strerror or err}") from err


def _report(err: BaseException) -> int:
    """Print ``toysae: <message>`` on one line to stderr; the exit code for an error."""
    print(f"toysae: {' '.join(str(err).split())}", file=sys.stderr)
    return 2


def _run_experiments(names: list[str], out: Path, *, quick: bool = False,
                     config=None) -> int:
    """Run the experiments into ``out`` (checked writable first), at ``config`` when given;
    errors in one line."""
    from toysae import experiments

    try:
        check_writable_folder(out)
        for name in names:  # before any run: a quick run never replaces a full one
            module = experiments.get(name)
            experiments.check_replaceable(
                module, config if config is not None else
                (module.Config.quick() if quick else module.Config()), out)
        for name in names:
            start = time.perf_counter()
            paths = experiments.run_experiment(name, quick=quick, out_dir=out, config=config)
            print(f"{name}: {time.perf_counter() - start:.1f} s")
            for path in paths:
                print(f"  wrote {path}")
    except REPORTED_ERRORS as err:
        return _report(err)
    print(f"figures and numbers are in {out.resolve()}")
    return 0


def _run(args) -> int:
    """``toysae run``: resolve the config (--quick, --config, --set), then run or print it."""
    from toysae import experiments
    from toysae.experiments.overrides import resolve_config

    try:
        module = experiments.get(args.experiment)
        sets = list(args.sets)
        if args.device is not None:
            if "device" not in {f.name for f in dataclasses.fields(module.Config)}:
                raise ValueError(f"--device: {args.experiment} has no device field (it runs "
                                 "on the CPU)")
            sets.append(f"device={args.device}")
        config = resolve_config(module.Config, quick=args.quick, config_file=args.config,
                                sets=sets)
    except REPORTED_ERRORS as err:
        return _report(err)
    if args.print_config:
        print(config.to_json())
        return 0
    return _run_experiments([args.experiment], args.out, config=config)


def _sweep(args) -> int:
    """``toysae sweep``: every point of the grid in its own process, then the summary."""
    from toysae.experiments.sweep import parse_grid, sweep

    def report(point, done, total):
        extra = "" if point.success else f": {point.message}"
        how = "kept from an earlier run, files intact" if point.kept else \
            f"{point.wall_time:.1f} s"
        print(f"[{done}/{total}] {point.name}: {point.status} ({how}){extra}", flush=True)

    try:
        result = sweep(args.experiment, parse_grid(args.grid), quick=args.quick,
                       config_file=args.config, sets=args.sets, out_dir=args.out,
                       n_jobs=args.n_jobs, backend=args.backend, scheduler=args.scheduler,
                       force=args.force, on_point=report)
    except (ValueError, TypeError, OSError) as err:
        return _report(err)
    print(result.message)
    for path in result.paths:
        print(f"  wrote {path}")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
