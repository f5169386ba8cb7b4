#!/usr/bin/env python3
"""What `align --processes` spends after its last batch: an earlier tree against this one, in turn.

    git archive COMMIT neuromap | tar -x -C /tmp/old
    python benchmarks/end_phase.py /tmp/old [--pairs 20000] [--threads 2] [--rounds 7] [--no-neural]

Each round runs `python -m neuromap align --processes` of each tree on the first N pairs of
bench_pe.py's r1.fq / r2.fq (in --workdir), SAM to /dev/null, with NEUROMAP_TRACE set, and
reads the timeline: the end phase is the time from the last worker's last batch done to the
command's process having exited (as its parent sees it), split into up to the output's commit
(the SAM written, the workers and the network's process ended or let go) and from there to the
process's exit (its teardown). On the GPU machine the main process waited 0.15 s of a 3.4 s run
over 1M pairs for the network's process to end (benchmarks/README.md, ninth lease's py-spy).
Prints the medians of the rounds and each run's wall time; the old tree gets this checkout's
compiled kernels."""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from ab_runs import prepare_old_tree  # noqa: E402
from bench_se import head_fastq, machine_lines  # noqa: E402


def traced_run(tree: str, args: list[str], folder: str) -> dict:
    """One run of `tree`'s neuromap: wall seconds, and the end phase from its timeline."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    env = dict(os.environ, NEUROMAP_TRACE=os.path.join(folder, "t"))
    start = time.time()
    subprocess.run([sys.executable, "-m", "neuromap", "align", "--quiet", *args], cwd=tree, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    end = time.time()
    last: dict[str, float] = {}
    for path in glob.glob(os.path.join(folder, "t.*")):
        with open(path) as fh:
            for line in fh:
                stamp, _, _, name, _ = line.rstrip("\n").split("\t")
                last[name] = max(last.get(name, 0.0), float(stamp))
    done, committed = last["batch-done"], last["committed"]
    return {"wall": end - start, "to commit": committed - done, "commit to exit": end - committed, "end phase": end - done}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", help="a folder holding the earlier neuromap/ package")
    ap.add_argument("--workdir", default=os.path.join(HERE, "work"))
    ap.add_argument("--pairs", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--no-neural", action="store_true")
    args = ap.parse_args()
    old = prepare_old_tree(args.old)
    trees = {"old": old, "new": ROOT}
    fields = ("end phase", "to commit", "commit to exit", "wall")
    results: dict[str, list[dict]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        files = [head_fastq(os.path.join(args.workdir, f"r{m}.fq"), args.pairs, os.path.join(tmp, f"r{m}.fq")) for m in (1, 2)]
        flags = ["--processes", "-t", str(args.threads), *(["--no-neural"] if args.no_neural else [])]
        run_args = [*flags, os.path.join(os.path.abspath(args.workdir), "genome.fa"), *files]
        for tree in trees.values():  # the network's cache and the page cache warmed
            traced_run(tree, run_args, os.path.join(tmp, "trace"))
        for r in range(args.rounds):
            order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
            for name, tree in order:
                results[name].append(traced_run(tree, run_args, os.path.join(tmp, "trace")))
    print("# What `align --processes` spends after its last batch: old against new, in turn\n")
    print(machine_lines().rstrip("\n"))
    print(f"- old: {old}; new: {ROOT}; {args.pairs:,} pairs, {' '.join(flags)}, SAM to /dev/null; {args.rounds} rounds")
    print(f"- command: python benchmarks/end_phase.py {' '.join(sys.argv[1:])}\n")
    print("| tree | " + " | ".join(f"{f} s (median)" for f in fields) + " |")
    print("|---|" + "---|" * len(fields))
    for name, rows in results.items():
        print(f"| {name} | " + " | ".join(f"{statistics.median(r[f] for r in rows):.3f}" for f in fields) + " |")
    print("\nEach run, end phase / wall s:\n")
    print("| round | " + " | ".join(trees) + " |\n|---|" + "---|" * len(trees))
    for r in range(args.rounds):
        print(f"| {r + 1} | " + " | ".join(f"{results[n][r]['end phase']:.3f} / {results[n][r]['wall']:.2f}" for n in trees) + " |")


if __name__ == "__main__":
    main()
