#!/usr/bin/env python3
"""An earlier commit's neuromap against this one, whole `align` runs in turn on the same inputs,
beside minimap2: what a change does to wall time, measured on one machine in one run.

    git archive COMMIT neuromap | tar -x -C /tmp/old       # the package as it was
    python benchmarks/ab_runs.py /tmp/old [--workdir benchmarks/work] [--sizes 4000 20000]
                                 [--pairs 4000] [--threads 2] [--rounds 5] [--no-neural]

Needs bench_se.py's data in --workdir (genome.fa, reads.fq; r1.fq and r2.fq from bench_pe.py
for --pairs), as their `--prepare-only` leaves them. Each input (the first N reads or pairs) is
aligned `--rounds` times by minimap2 -x sr, the old and the new neuromap, with threads and with
--processes, in turn, at the same -t, SAM to /dev/null; the network's cache is warmed for both
first. Prints the median wall seconds of each, each neuromap's reads/s as a ratio to minimap2's,
and the new over the old. The old tree gets this
checkout's compiled kernels (with --old-kernels it keeps its own), and both are byte-compiled
first (see bench_se.compile_package).
"""

from __future__ import annotations

import argparse
import compileall
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

from bench_se import compile_package, head_fastq, machine_lines, version_of  # noqa: E402

from neuromap import __version__  # noqa: E402


def timed(cmd: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def prepare_old_tree(folder: str, own_kernels: bool = False) -> str:
    """The absolute path of `folder`, an earlier commit's neuromap/ package, made ready to run
    beside this checkout: given this checkout's compiled kernels (unless `own_kernels`: then it
    must hold its own), and both trees byte-compiled. Exits with a message where it is not one."""
    old = os.path.abspath(folder)
    if not os.path.isfile(os.path.join(old, "neuromap", "__init__.py")):
        sys.exit(f"{old}: no neuromap/ package there (git archive COMMIT neuromap | tar -x -C {old})")
    if own_kernels:
        if not glob.glob(os.path.join(old, "neuromap", "_kernels*.so")):
            sys.exit(f"{old}/neuromap: no compiled kernels there (python setup.py build_ext --inplace in that tree)")
    else:
        for kernels in glob.glob(os.path.join(ROOT, "neuromap", "_kernels*.so")):
            shutil.copy(kernels, os.path.join(old, "neuromap"))
    compile_package()
    compileall.compile_dir(os.path.join(old, "neuromap"), quiet=1)
    return old


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", help="a folder holding the earlier neuromap/ package")
    ap.add_argument("--workdir", default=os.path.join(HERE, "work"))
    ap.add_argument("--sizes", type=int, nargs="*", default=[4000, 20000], help="single-end inputs: first N reads (none: pairs only)")
    ap.add_argument("--pairs", type=int, nargs="*", default=[4000], help="paired inputs: first N pairs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-neural", action="store_true", help="time align --no-neural instead of the network")
    ap.add_argument("--old-kernels", action="store_true",
                    help="keep the compiled kernels the old folder holds (built from its own _kernels.c), to compare kernel changes")
    args = ap.parse_args()
    old = prepare_old_tree(args.old, args.old_kernels)
    genome = os.path.join(args.workdir, "genome.fa")
    mode = ["--no-neural"] if args.no_neural else []
    trees = {"old": old, "new": ROOT}  # `python -m` takes the package from its working directory
    with tempfile.TemporaryDirectory() as tmp:
        inputs = [(f"{n:,} reads", [head_fastq(os.path.join(args.workdir, "reads.fq"), n, os.path.join(tmp, f"se{n}.fq"))])
                  for n in args.sizes]
        inputs += [(f"{n:,} pairs", [head_fastq(os.path.join(args.workdir, f"r{m}.fq"), n, os.path.join(tmp, f"pe{n}_{m}.fq"))
                                     for m in (1, 2)]) for n in args.pairs]
        runs = [("minimap2 -x sr", None, ["minimap2", "-a", "-x", "sr", "-t", str(args.threads), genome])]
        for kind in ("threads", "--processes"):
            for name, tree in trees.items():
                flags = ["--processes"] if kind == "--processes" else ["--no-processes"]
                runs.append((f"neuromap {name}, {kind}", tree,
                             [sys.executable, "-m", "neuromap", "align", "--quiet", "-t", str(args.threads), *flags, *mode, genome]))
        for tree in trees.values():  # the network exported and compiled in the cache, as after a machine's first run
            for _, files in inputs:
                subprocess.run([sys.executable, "-m", "neuromap", "align", "--quiet", genome, *files], cwd=tree, check=True,
                               stdout=subprocess.DEVNULL)
        seconds: dict = {}
        for _ in range(args.rounds):
            for label, files in inputs:
                for name, tree, cmd in runs:
                    seconds.setdefault((label, name), []).append(timed([*cmd, *files], tree or ROOT))
    print("# An earlier neuromap against this one, whole runs in turn\n")
    print(machine_lines())
    print(f"- versions: neuromap {__version__} (both trees), Python {sys.version.split()[0]}, "
          f"{version_of(['minimap2', '--version'])} (minimap2)")
    print(f"- old: {old}; new: {ROOT}; -t {args.threads}; {'--no-neural' if args.no_neural else 'the network'}; "
          f"median of {args.rounds} rounds, wall seconds, SAM to /dev/null")
    print(f"- command: python benchmarks/ab_runs.py {' '.join(sys.argv[1:])}\n")
    labels = [label for label, _ in inputs]
    header = "| run | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels)
    print(header)
    median = {key: statistics.median(v) for key, v in seconds.items()}
    for name, _, _ in runs:
        print(f"| {name} | " + " | ".join(f"{median[(label, name)]:.2f}" for label in labels) + " |")
    print("\nReads/s as a ratio to minimap2's in the same rounds (its median time over neuromap's):\n")
    print(header)
    for name, tree, _ in runs:
        if tree is not None:
            print(f"| {name} | " + " | ".join(f"{median[(label, 'minimap2 -x sr')] / median[(label, name)]:.2f} ×" for label in labels) + " |")
    print("\nNew over old, wall time:\n")
    print(header)
    for kind in ("threads", "--processes"):
        print(f"| new / old, {kind} | " + " | ".join(
            f"{median[(label, f'neuromap new, {kind}')] / median[(label, f'neuromap old, {kind}')]:.2f}" for label in labels) + " |")


if __name__ == "__main__":
    main()
