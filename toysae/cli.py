"""The ``toysae`` command: list and run experiments, draw generator statistics, check an
SAE on activation files."""

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
    _add_check_command(sub)
    return parser


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
    import tempfile

    from toysae.experiments.check_outputs import save_check
    from toysae.theory.files import check_sae_files

    name = f"check-{args.sae.stem}"
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=args.out):  # unwritable: fail now, not after the passes
            pass
        report = check_sae_files(args.sae, args.activations, lam=args.lam,
                                 batch_size=args.batch_size, threads=args.threads,
                                 normalize=args.normalize, progress=not args.no_progress)
        paths = save_check(report, args.out, name=name)
    except (ValueError, TypeError, OSError) as err:
        print(f"toysae check: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(report.message)
    for path in paths:
        print(f"  wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        return _check(args)
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
