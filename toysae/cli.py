"""The ``toysae`` command: list and run experiments, draw generator statistics."""

from __future__ import annotations

import argparse
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
        p.add_argument("--out", default="figures", type=Path,
                       help="output directory (default: figures)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from toysae import experiments

    if args.command == "list":
        for info in experiments.available().values():
            print(f"{info.name:24s} {info.description}")
        return 0
    if args.command == "demo":
        names = list(experiments.available())
        quick = True
    else:
        names = ["synthetic-data" if args.command == "data" else args.experiment]
        quick = args.quick
        try:
            experiments.get(names[0])
        except ValueError as err:
            return _report(err)
    return _run_experiments(names, quick, args.out)


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


def _run_experiments(names: list[str], quick: bool, out: Path) -> int:
    """Run the experiments into ``out`` (checked writable first); errors in one line."""
    from toysae import experiments

    try:
        check_writable_folder(out)
        for name in names:
            start = time.perf_counter()
            paths = experiments.run_experiment(name, quick=quick, out_dir=out)
            print(f"{name}: {time.perf_counter() - start:.1f} s")
            for path in paths:
                print(f"  wrote {path}")
    except REPORTED_ERRORS as err:
        return _report(err)
    print(f"figures and numbers are in {out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
