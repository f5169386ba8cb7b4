#!/usr/bin/env python3
"""Reads per batch (`align -K`) against throughput, with worker processes, beside minimap2.

    python benchmarks/bench_batch.py GENOME.fa READS.fq [--threads 16] [--sizes 4000 16000]
                                     [--repeats 1] [--server] [--no-neural]

Each batch is one message to a worker and one back, and one call of the network (its distinct
pairs, padded to one of the call shapes of model.call_size): bigger batches send fewer messages
and make fewer, fuller calls, and take more memory. For each size: the network (and, with
--server, the network kept loaded by `neuromap serve`; with --no-neural, seeds + DP), SAM to
/dev/null, taken in turn with minimap2 -x sr at the same -t, `--repeats` rounds. Prints the median
wall seconds, reads/s and the ratio to minimap2 of the same rounds, and of the last round the CPU
seconds of the main process (which cuts the input and writes the SAM) and of all its processes (not
the server's), and the peak RSS of the run's process tree. The network's call shapes are compiled (kept) by one
untimed run per size first, as every run after a machine's first finds them.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from bench_se import compile_package, head_fastq, machine_lines, run_measured, version_of  # noqa: E402

from neuromap import __version__  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("genome")
    ap.add_argument("reads")
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4000, 16000], help="reads per batch (-K)")
    ap.add_argument("--repeats", type=int, default=1, help="rounds, each tool in turn")
    ap.add_argument("--server", action="store_true", help="rows through `neuromap serve` too")
    ap.add_argument("--no-neural", action="store_true", help="rows with --no-neural too")
    args = ap.parse_args()
    compile_package()
    with open(args.reads, "rb") as fh:
        n_reads = sum(1 for _ in fh) // 4
    neuromap = [sys.executable, "-m", "neuromap"]
    subprocess.run([*neuromap, "index", args.genome], check=True, stderr=subprocess.DEVNULL)
    tmp = tempfile.mkdtemp(prefix="nmbatch-", dir="/tmp")  # short: a socket's path holds 107 bytes
    sock = os.path.join(tmp, "s.sock")
    server = None
    try:
        if args.server:
            server = subprocess.Popen([*neuromap, "serve", sock], stderr=subprocess.PIPE, text=True, start_new_session=True)
            line = server.stderr.readline()
            if "serving" not in line:
                sys.exit(f"the server did not start: {line}{server.stderr.read()}")
        align = [*neuromap, "align", "-t", str(args.threads), "--processes", "--quiet"]
        runs = {"minimap2 -x sr": ["minimap2", "-a", "-x", "sr", "-t", str(args.threads), args.genome, args.reads]}
        for size in args.sizes:
            runs[f"neuromap -K {size}"] = [*align, "-K", str(size), args.genome, args.reads]
            if args.server:
                runs[f"neuromap -K {size} --server"] = [*align, "-K", str(size), "--server", sock, args.genome, args.reads]
            if args.no_neural:
                runs[f"neuromap -K {size} --no-neural"] = [*align, "-K", str(size), "--no-neural", args.genome, args.reads]
        # Every call shape each size brings, compiled (and kept) before the timed runs.
        head = head_fastq(args.reads, 4 * max(args.sizes) + 1000, os.path.join(tmp, "head.fq"))
        for name, cmd in runs.items():
            if name.startswith("neuromap") and "--no-neural" not in cmd:
                subprocess.run([*cmd[:-1], head], check=True, stdout=subprocess.DEVNULL)
        walls: dict = {name: [] for name in runs}
        last: dict = {}
        for _ in range(args.repeats):
            for name, cmd in runs.items():
                cpu: list = []
                wall, rss = run_measured(cmd, cpu=cpu)
                walls[name].append(wall)
                last[name] = (cpu[0], rss)
        print("# Reads per batch with worker processes (`align --processes -K`), beside minimap2\n")
        print(machine_lines())
        print(f"- neuromap {__version__}, Python {platform.python_version()}; {version_of(['minimap2', '--version'])} (minimap2); "
              f"{n_reads:,} reads of {args.reads}; every tool at -t {args.threads}; SAM to /dev/null; median of {args.repeats} "
              "rounds, each tool in turn")
        print(f"- command: python benchmarks/bench_batch.py {' '.join(sys.argv[1:])}\n")
        print("| run | wall s | reads/s | ratio to minimap2 | main CPU s | all CPU s | peak RSS MB |\n|---|---|---|---|---|---|---|")
        base = statistics.median(walls["minimap2 -x sr"])
        for name in runs:
            wall = statistics.median(walls[name])
            (own, total), rss = last[name]
            print(f"| {name} | {wall:.2f} | {n_reads / wall:,.0f} | {base / wall:.2f} | {own:.2f} | {total:.2f} | {rss} |")
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
