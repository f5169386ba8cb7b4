#!/usr/bin/env python3
"""The main process of `align --processes`: its CPU time, page faults and peak RSS per run, with
neuromap's malloc thresholds (pipeline.keep_freed_buffers) and with glibc's own.

    python benchmarks/main_process_cpu.py GENOME READS [MATES] [--threads 2] [--repeats 4] [--neural] [--old DIR]

With many workers the main process, which reads the FASTQ, hands each batch out through shared
memory and takes its SAM back, is busy for most of a run (the eighth GPU lease's py-spy: 0.7-0.9
of a core at -t 16), so its CPU per read bounds the run. Each repeat runs both variants in turn
(SAM to /dev/null, --no-neural unless --neural); "glibc's thresholds" sets GLIBC_TUNABLES, which
keep_freed_buffers leaves to decide. With --old DIR, the package in DIR (`git archive COMMIT
neuromap | tar -x -C DIR`, given this checkout's compiled kernels) runs in turn too, as it is.
The figures are the main process's own (getrusage at its exit: user + system seconds, minor page
faults, ru_maxrss), not its workers'. Medians.
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench_se import count_reads, machine_lines  # noqa: E402

from neuromap import __version__  # noqa: E402

# Runs `neuromap align` in this interpreter and writes its own rusage where the first argument says.
WRAPPER = """
import atexit, resource, sys, time
out, sys.argv = sys.argv[1], ["neuromap"] + sys.argv[2:]
start = time.perf_counter()
def report():
    r = resource.getrusage(resource.RUSAGE_SELF)
    with open(out, "w") as fh:
        fh.write(f"{r.ru_utime + r.ru_stime} {r.ru_minflt} {r.ru_maxrss} {time.perf_counter() - start}")
atexit.register(report)
from neuromap.cli import main
main()
"""

VARIANTS = {
    "neuromap's thresholds (keep_freed_buffers)": {},
    "glibc's thresholds (GLIBC_TUNABLES set)": {"GLIBC_TUNABLES": "glibc.malloc.check=0"},
}


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_run(args, env_extra: dict, tree: str = ROOT) -> tuple[float, int, int, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")}
    env.update(env_extra)
    with tempfile.NamedTemporaryFile("r", suffix=".rusage") as fh:
        cmd = [sys.executable, "-c", WRAPPER, fh.name, "align", "--quiet", "--processes", "-t", str(args.threads),
               *([] if args.neural else ["--no-neural"]), *map(os.path.abspath, [args.genome, args.reads, *([args.mates] if args.mates else [])])]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, cwd=tree)  # `python -c` imports the tree's neuromap
        cpu, faults, rss_kb, wall = fh.read().split()
    return float(cpu), int(faults), int(rss_kb), float(wall)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("genome")
    ap.add_argument("reads")
    ap.add_argument("mates", nargs="?")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--neural", action="store_true", help="with the network (default --no-neural: the main process's work is the same)")
    ap.add_argument("--old", help="a folder holding an earlier neuromap/ package, run in turn too")
    args = ap.parse_args()
    n_reads = count_reads(args.reads) * (2 if args.mates else 1)
    variants = [(name, env, ROOT) for name, env in VARIANTS.items()]
    if args.old:
        old = os.path.abspath(args.old)
        if not os.path.isfile(os.path.join(old, "neuromap", "__init__.py")):
            sys.exit(f"{old}: no neuromap/ package there (git archive COMMIT neuromap | tar -x -C {old})")
        for kernels in glob.glob(os.path.join(ROOT, "neuromap", "_kernels*.so")):
            shutil.copy(kernels, os.path.join(old, "neuromap"))
        variants.append((f"the package in {args.old}", {}, old))
    runs: dict[str, list] = {name: [] for name, _, _ in variants}
    for _ in range(args.repeats):
        for name, env, tree in variants:
            runs[name].append(one_run(args, env, tree))
    print("# The main process of `align --processes`: malloc thresholds\n")
    print(machine_lines())
    print(f"- neuromap {__version__}, Python {platform.python_version()}, {platform.libc_ver()[0]} {platform.libc_ver()[1]}")
    print(f"- `align --processes -t {args.threads}{'' if args.neural else ' --no-neural'}` on {n_reads:,} reads"
          f"{' (pairs)' if args.mates else ''}, SAM to /dev/null; {args.repeats} runs of each variant in turn, medians\n")
    print("| main process | CPU s (user + system) | µs a read | minor page faults | peak RSS (MB) | wall s |")
    print("|---|---|---|---|---|---|")
    medians = {}
    for name, rows in runs.items():
        cpu, faults, rss, wall = (statistics.median(col) for col in zip(*rows))
        medians[name] = cpu
        print(f"| {name} | {cpu:.3f} | {1e6 * cpu / max(n_reads, 1):.2f} | {faults:,.0f} | {rss / 1024:.0f} | {wall:.2f} |")
    mine, glibc, *older = medians.values()
    print(f"\nCPU of the main process, neuromap's against glibc's thresholds: {mine / glibc:.2f} x"
          + (f"; this checkout against {args.old}: {mine / older[0]:.2f} x" if older else "")
          + " (start-up included: about 0.25 s of imports each time)")


if __name__ == "__main__":
    main()
