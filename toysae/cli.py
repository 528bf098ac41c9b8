"""The ``toysae`` command: list, run and sweep experiments, draw generator statistics."""

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
        if name == "run":
            _add_config_arguments(p)
            p.add_argument("--print-config", action="store_true",
                           help="print the resolved config as JSON and exit")
    _add_sweep_parser(sub)
    return parser


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
                   help="joblib backend (default loky: local processes; e.g. dask or ray "
                        "when installed and registered)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
    for name in names:
        start = time.perf_counter()
        paths = experiments.run_experiment(name, quick=quick, out_dir=args.out)
        print(f"{name}: {time.perf_counter() - start:.1f} s")
        for path in paths:
            print(f"  wrote {path}")
    print(f"figures and numbers are in {args.out.resolve()}")
    return 0


def _run(args) -> int:
    """``toysae run``: resolve the config (--quick, --config, --set), then run or print it."""
    from toysae import experiments
    from toysae.experiments._overrides import resolve_config

    try:
        module = experiments.get(args.experiment)
        config = resolve_config(module.Config, quick=args.quick, config_file=args.config,
                                sets=args.sets)
    except ValueError as err:
        print(f"toysae: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        print(config.to_json())
        return 0
    start = time.perf_counter()
    paths = experiments.run_experiment(args.experiment, out_dir=args.out, config=config)
    print(f"{args.experiment}: {time.perf_counter() - start:.1f} s")
    for path in paths:
        print(f"  wrote {path}")
    print(f"figures and numbers are in {args.out.resolve()}")
    return 0


def _sweep(args) -> int:
    """``toysae sweep``: every point of the grid in its own process, then the summary."""
    from toysae.experiments._sweep import parse_grid, sweep

    def report(point, done, total):
        extra = "" if point.success else f": {point.message}"
        print(f"[{done}/{total}] {point.name}: {point.status} ({point.wall_time:.1f} s)"
              f"{extra}", flush=True)

    try:
        result = sweep(args.experiment, parse_grid(args.grid), quick=args.quick,
                       config_file=args.config, sets=args.sets, out_dir=args.out,
                       n_jobs=args.n_jobs, backend=args.backend, on_point=report)
    except (ValueError, TypeError, OSError) as err:
        print(f"toysae: {err}", file=sys.stderr)
        return 2
    print(result.message)
    for path in result.paths:
        print(f"  wrote {path}")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
