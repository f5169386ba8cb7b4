#!/usr/bin/env python3
"""Whole `align` runs under different environment settings, in turn on the same input, beside
minimap2: what a setting such as NEUROMAP_PARK_BATCHES or NEUROMAP_SPARE_WORKERS does to wall
time and memory, measured on one machine in one run.

    python benchmarks/env_ab.py GENOME READS [MATES] --variant "" --variant NEUROMAP_PARK_BATCHES=8
                                [--threads 2] [--rounds 4] [--no-neural] [--no-processes]

Each variant is a space-separated list of NAME=VALUE ("" for the environment as it is; the
names a variant sets are removed from the others). Each round runs minimap2 -x sr and then every
variant of `neuromap align --processes -t THREADS`, SAM to /dev/null, after one untimed run of
each to warm the caches. Prints the median wall seconds, reads/s as a ratio to minimap2's, and
the peak RSS and PSS of the whole process tree (bench_se.run_measured: shared batch memory
counted once).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from bench_se import count_reads, machine_lines, run_measured, version_of  # noqa: E402

from neuromap import __version__  # noqa: E402


def parse_variant(text: str) -> dict[str, str]:
    env = {}
    for item in text.split():
        name, sep, value = item.partition("=")
        if not sep or not name:
            sys.exit(f"--variant {text!r}: expected NAME=VALUE items")
        env[name] = value
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("genome")
    ap.add_argument("reads")
    ap.add_argument("mates", nargs="?")
    ap.add_argument("--variant", action="append", default=[], help='NAME=VALUE ... ("" : the environment as it is); repeat')
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--no-neural", action="store_true")
    ap.add_argument("--no-processes", action="store_true", help="worker threads instead of processes")
    args = ap.parse_args()
    if not shutil.which("minimap2"):
        sys.exit("minimap2 not found on PATH (Debian: apt-get install minimap2)")
    variants = [(v or "(as it is)", parse_variant(v)) for v in (args.variant or [""])]
    named = {name for _, env in variants for name in env}
    inputs = [args.reads] + ([args.mates] if args.mates else [])
    n_reads = count_reads(args.reads) * len(inputs)
    base = {k: v for k, v in os.environ.items() if k not in named}
    neuromap = [sys.executable, "-m", "neuromap", "align", "--quiet", "--processes" if not args.no_processes else "--no-processes",
                "-t", str(args.threads), *(["--no-neural"] if args.no_neural else []), args.genome, *inputs]
    minimap2 = ["minimap2", "-a", "-x", "sr", "-t", str(args.threads), args.genome, *inputs]

    def run(cmd, env):
        pss: list = []
        wall, rss = run_measured(cmd, env=env, pss=pss)
        return wall, rss, pss[0] if pss else 0

    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(base)  # run_measured adds its env to os.environ
        for _, env in variants:
            subprocess.run(neuromap, env={**base, **env}, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        results: dict[str, list] = {"minimap2 -x sr": []} | {name: [] for name, _ in variants}
        for _ in range(args.rounds):
            results["minimap2 -x sr"].append(run(minimap2, {}))
            for name, env in variants:
                results[name].append(run(neuromap, env))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    print("# Environment settings A/B\n")
    print(machine_lines())
    print(f"- neuromap {__version__}, Python {platform.python_version()}; minimap2 {version_of(['minimap2', '--version'])}")
    print(f"- {n_reads:,} reads{' (pairs)' if args.mates else ''}; `{' '.join(neuromap[2:4] + neuromap[4:-len(inputs) - 1])}` "
          f"(every tool at -t {args.threads}), SAM to /dev/null; {args.rounds} rounds in turn, medians; "
          f"{time.strftime('%H:%M UTC', time.gmtime())}\n")
    print("| run | wall s | reads/s / minimap2's | peak RSS (MB) | peak PSS (MB) |")
    print("|---|---|---|---|---|")
    mm_wall = statistics.median(r[0] for r in results["minimap2 -x sr"])
    for name, rows in results.items():
        wall, rss, pss = (statistics.median(col) for col in zip(*rows))
        print(f"| {name} | {wall:.2f} | {mm_wall / wall:.2f} | {rss:.0f} | {pss:.0f} |")


if __name__ == "__main__":
    main()
