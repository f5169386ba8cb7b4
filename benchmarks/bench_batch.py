#!/usr/bin/env python3
"""Reads per batch (`align -K`) against throughput and the main process's CPU, with worker processes.

    python benchmarks/bench_batch.py GENOME.fa READS.fq [--threads 16] [--sizes 4000 16000]

Each batch is one message to a worker and one back; bigger batches send fewer of them, and take
more memory. For each size, with the network and with --no-neural: wall seconds, reads/s, the
CPU seconds of the main process (which cuts the input, serves the network and writes the SAM)
and of all processes, and the peak RSS. Run after bench_memory.py (its repeated-*.fq files).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from bench_se import compile_package, cpu_model, run_measured  # noqa: E402

from neuromap import __version__  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("genome")
    ap.add_argument("reads")
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4000, 16000])
    args = ap.parse_args()
    compile_package()
    with open(args.reads, "rb") as fh:
        n_reads = sum(1 for _ in fh) // 4
    print("# Reads per batch with worker processes (`align --processes -K`)\n")
    print(f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {cpu_model()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"- neuromap {__version__}, Python {platform.python_version()}; {n_reads:,} reads of {args.reads}; -t {args.threads}")
    print(f"- command: python benchmarks/bench_batch.py {' '.join(sys.argv[1:])}\n")
    print("| run | -K | wall s | reads/s | main CPU s | all CPU s | peak RSS MB |\n|---|---|---|---|---|---|---|")
    for label, extra in (("network", []), ("--no-neural", ["--no-neural"])):
        for size in args.sizes:
            cmd = [sys.executable, "-m", "neuromap", "align", "-t", str(args.threads), "--processes", "--quiet", "-K", str(size),
                   *extra, args.genome, args.reads]
            cpu: list = []
            wall, rss = run_measured(cmd, cpu=cpu)
            own, total = cpu[0]
            print(f"| {label} | {size} | {wall:.2f} | {n_reads / wall:,.0f} | {own:.2f} | {total:.2f} | {rss} |")


if __name__ == "__main__":
    main()
