#!/usr/bin/env python3
"""What a worker process of `align --processes` costs to start: CPU seconds of all processes.

    python benchmarks/worker_start.py GENOME.fa READS.fq [--threads 2 8] [--reads 8000] [--repeats 3]

Runs `neuromap align --processes --no-neural -K 500` on the first --reads reads (enough batches
for every worker of the largest -t to start) at each -t, and reports the wall seconds and the CPU
seconds of the whole process tree (the median of --repeats runs). The CPU a run spends beyond the
smallest -t's, divided by its extra workers, is what starting one worker costs: on the GPU machine
sixteen of them start at once, on the cores the run needs. Run after bench_se.py, on its
work/genome.fa and work/reads.fq.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from bench_se import compile_package, cpu_model, head_fastq, run_measured  # noqa: E402
from neuromap import __version__  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("genome")
    ap.add_argument("reads")
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 8])
    ap.add_argument("--reads", dest="n_reads", type=int, default=8000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    compile_package()
    threads = sorted(set(args.threads))
    if threads[0] < 2:
        sys.exit("--threads: 2 or more (worker processes start from -t 2)")
    neuromap = [sys.executable, "-m", "neuromap"]
    with tempfile.TemporaryDirectory() as tmp:
        reads = os.path.join(tmp, "reads.fq")
        head_fastq(args.reads, args.n_reads, reads)
        subprocess.run([*neuromap, "index", args.genome], check=True, capture_output=True)
        rows = []
        for t in threads:
            walls, cpus = [], []
            for _ in range(args.repeats):
                cpu: list = []
                wall, _ = run_measured([*neuromap, "align", "--processes", "--no-neural", "-K", "500", "-t", str(t), args.genome, reads], cpu=cpu)
                walls.append(wall)
                cpus.append(cpu[0][1])
            rows.append((t, statistics.median(walls), statistics.median(cpus)))
    print("# Starting worker processes (`align --processes`)\n")
    print(f"- machine: {cpu_model()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"- versions: neuromap {__version__}, Python {platform.python_version()}")
    print(f"- data: the first {args.n_reads:,} reads of {args.reads}, batches of 500 (`-K 500`), `--no-neural`;"
          f" median of {args.repeats} runs\n")
    print("| -t | wall s | CPU s, all processes | CPU s per worker beyond -t " + str(threads[0]) + "'s |")
    print("|---|---|---|---|")
    base_t, _, base_cpu = rows[0]
    for t, wall, cpu_s in rows:
        extra = f"{(cpu_s - base_cpu) / (t - base_t):.3f}" if t > base_t else ""
        print(f"| {t} | {wall:.2f} | {cpu_s:.2f} | {extra} |")


if __name__ == "__main__":
    main()
