"""The speed figures of two commits, measured in one run: did a refactor cost speed?

    flock /tmp/toysae-bench.lock .venv/bin/python benchmarks/bench_refactor.py \
        --base 6a3c53a [--head HEAD] [--rounds 2]

Each commit is checked out into a temporary git worktree and its own benchmark
scripts run there (``import toysae`` resolves to that tree), alternating
base / head round by round so load from other processes hits both alike; each
figure is the best over the rounds. Figures:

- ReLU SAE training samples/s, width 1024, batch 1024 and the default batch 256
  (benchmarks/bench_sae.py);
- the batched grid's speed-up over sequential training (benchmarks/bench_sae_grid.py);
- the sparse step's samples/s at width 4096, d 768, for ReLU and TopK
  (benchmarks/bench_sae.py's sparse-step rows);
- sparse coding against scikit-learn's ``sparse_encode(lasso_cd)`` and the
  dictionary learner's time to MMCS 0.95 against ``MiniBatchDictionaryLearning``
  (benchmarks/bench_dictlearn.py; ``--skip-dictlearn`` leaves them out);
- ``toysae check`` on 50,000 activations (benchmarks/bench_check.py ``--n 50000``,
  samples/s of the command; ``--skip-check`` leaves it out).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (label, script and arguments, regex for the figure, higher is better)
CASES = [
    ("ReLU SAE samples/s, width 1024, batch 1024",
     ["benchmarks/bench_sae.py", "--batch", "1024", "--steps", "60"],
     r"^training samples/s\s+([\d.]+)", True),
    ("ReLU SAE samples/s, width 1024, batch 256",
     ["benchmarks/bench_sae.py", "--batch", "256", "--steps", "200"],
     r"^training samples/s\s+([\d.]+)", True),
]
# The sparse-step rows only need the width-4096 presets; the first section's 4 steps
# are not read.
SPARSE = (["benchmarks/bench_sae.py", "--steps", "4", "--rounds", "1", "--widths", "4096"],
          r"^\S+\s+768\s+4096\s+(relu|topk)\s+[\d.]+\s+[\d.]+\s+([\d.]+)")
GRID = ("benchmarks/bench_sae_grid.py", ["--repeats", "1", "--toy-steps", "400"])
CHECK = ("benchmarks/bench_check.py", ["--n", "50000"])
CHECK_PATTERN = r"^ours: toysae check \(streamed, CLI\)\s+\d+\s+[\d.]+\s+([\d.]+)"
DICTLEARN = ("benchmarks/bench_dictlearn.py", ["--sk-cap", "60"])


def run_in(tree: Path, script: str, args: list[str]) -> str:
    """Run ``tree``'s copy of ``script`` with ``tree`` first on sys.path; its stdout."""
    launcher = ("import runpy, sys; sys.path.insert(0, sys.argv[1]); "
                "sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", launcher, str(tree), str(tree / script), *args],
                         cwd=tree, capture_output=True, text=True, check=False,
                         env={"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"})
    if out.returncode:
        raise RuntimeError(f"{script} failed in {tree}:\n{out.stderr[-3000:]}")
    return out.stdout


def figures(output: str, pattern: str) -> list[float]:
    return [float(m) for m in re.findall(pattern, output, flags=re.MULTILINE)]


def grid_ratios(output: str) -> dict[str, float]:
    """Each batched row's 'reference / ours' ratio of bench_sae_grid.py's table."""
    ratios = {}
    for line in output.splitlines():
        m = re.match(r"^(.*\[(?:pad|group)\])\s+[\d.]+\s+[\d.]+\s+([\d.]+)x", line)
        if m:
            ratios[m.group(1).strip()] = float(m.group(2))
    return ratios


def dictlearn_ratios(output: str) -> dict[str, float]:
    found = {}
    for line in output.splitlines():
        if "lasso_cd" in line:
            m = re.search(r"([\d.]+)x\s*$", line)
            if m:
                found["sparse coding: lasso_cd time / ours"] = float(m.group(1))
        if line.startswith("seconds to MMCS 0.95"):
            m = re.search(r"([\d.]+)x?\s*$", line)
            if m:
                found["dictionary learning to MMCS 0.95: sklearn / ours"] = float(m.group(1))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit before the change")
    parser.add_argument("--head", default="HEAD")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-dictlearn", action="store_true")
    parser.add_argument("--skip-check", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for name in ("base", "head"):
            rev = getattr(args, name)
            tree = Path(tmp) / name
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), rev],
                           cwd=ROOT, check=True)
            sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout.strip()
            trees[name] = (tree, sha)
        try:
            rows = measure(trees, args)
        finally:
            for tree, _ in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                               check=False)
    width = max(len(r[0]) for r in rows)
    base_sha, head_sha = trees["base"][1], trees["head"][1]
    print(f"\nbest of {args.rounds} rounds, base {base_sha} and head {head_sha} alternating")
    print(f"{'figure':{width}s} {'base ' + base_sha:>14s} {'head ' + head_sha:>14s} "
          f"{'head/base':>10s}")
    for label, base, head in rows:
        print(f"{label:{width}s} {base:14.4g} {head:14.4g} {head / base:10.3f}")


def measure(trees, args) -> list[tuple[str, float, float]]:
    best: dict[str, dict[str, float]] = {"base": {}, "head": {}}

    def keep(name: str, label: str, value: float) -> None:
        best[name][label] = max(best[name].get(label, 0.0), value)

    for round_ in range(args.rounds):
        for name in ("base", "head"):
            tree = trees[name][0]
            for label, command, pattern, _ in CASES:
                for value in figures(run_in(tree, command[0], command[1:]), pattern):
                    keep(name, label, value)
            sparse_out = run_in(tree, SPARSE[0][0], SPARSE[0][1:])
            for arch, rate in re.findall(SPARSE[1], sparse_out, flags=re.MULTILINE):
                keep(name, f"sparse step samples/s, width 4096, d 768, {arch}", float(rate))
            for label, ratio in grid_ratios(run_in(tree, *GRID)).items():
                keep(name, f"grid speed-up: {label}", ratio)
            if not args.skip_check:
                # each tree writes its own activation files, so neither reads the other's
                work = ["--workdir", str(Path(tempfile.gettempdir()) / f"bench-refactor-{name}")]
                for value in figures(run_in(tree, CHECK[0], CHECK[1] + work), CHECK_PATTERN):
                    keep(name, "toysae check samples/s, 50k activations", value)
            if not args.skip_dictlearn and round_ == 0:
                output = run_in(tree, *DICTLEARN)
                print(f"--- bench_dictlearn.py at {name} ---\n{output}")
                for label, ratio in dictlearn_ratios(output).items():
                    keep(name, label, ratio)
            print(f"round {round_ + 1}, {name}: {best[name]}", flush=True)
    labels = [k for k in best["head"] if k in best["base"]]
    return [(k, best["base"][k], best["head"][k]) for k in labels]


if __name__ == "__main__":
    main()
