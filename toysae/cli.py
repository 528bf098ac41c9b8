"""The ``toysae`` command: list and run experiments, draw generator statistics."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


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
            print(f"toysae: {err}", file=sys.stderr)
            return 2
    for name in names:
        start = time.perf_counter()
        paths = experiments.run_experiment(name, quick=quick, out_dir=args.out)
        print(f"{name}: {time.perf_counter() - start:.1f} s")
        for path in paths:
            print(f"  wrote {path}")
    print(f"figures and numbers are in {args.out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
