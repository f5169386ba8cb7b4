#!/usr/bin/env python3
"""`align --server` (the network kept loaded by `neuromap serve`) against a run that loads the
network itself and against minimap2, on the same reads, in the same run.

    python benchmarks/bench_server.py [--workdir benchmarks/work] [--pe-workdir DIR] [--threads 2]
                                      [--sizes 20000 100000] [--pairs 20000] [--repeats 3] [--processes]

Needs bench_se.py's data in --workdir (genome.fa, reads.fq) and bench_pe.py's in --pe-workdir
(genome.fa, r1.fq, r2.fq; by default the same folder), as their `--prepare-only` leaves them. The server is started once and warmed by one untimed run through it (as every run
after the first finds it); then each input is aligned `--repeats` times in turn by minimap2 -x sr,
neuromap alone and neuromap through the server, every tool at the same -t, SAM to /dev/null. Prints
the median wall time and reads/s of each, the ratio to minimap2, the peak RSS of the run's process
tree and, for the server, its own RSS (held once for every run it serves), and whether the two
neuromap outputs are the same record for record (they must be)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench_se import compile_package, head_fastq, machine_lines, run_measured, tree_kb, tree_pids, version_of, warm_up  # noqa: E402

from neuromap import __version__  # noqa: E402


def body(path: str) -> list[bytes]:
    with open(path, "rb") as fh:
        return [line for line in fh if not line.startswith(b"@PG")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "work"))
    ap.add_argument("--pe-workdir", help="the paired-end data's folder (default: --workdir)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="*", default=[20000, 100000], help="single-end reads per input (none: paired-end only)")
    ap.add_argument("--pairs", type=int, nargs="*", default=[20000], help="pairs per paired-end input")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--processes", action="store_true", help="neuromap with worker processes (align --processes)")
    args = ap.parse_args()
    compile_package()
    pe_dir = args.pe_workdir or args.workdir
    genome, pe_genome = os.path.join(args.workdir, "genome.fa"), os.path.join(pe_dir, "genome.fa")
    tmp = tempfile.mkdtemp(prefix="nmsrv-", dir="/tmp")  # short: a socket's path holds 107 bytes
    sock = os.path.join(tmp, "s.sock")
    neuromap = [sys.executable, "-m", "neuromap"]
    workers = ["-t", str(args.threads), "--processes" if args.processes else "--no-processes"]
    inputs = [(f"{n:,} reads", genome, [head_fastq(os.path.join(args.workdir, "reads.fq"), n, os.path.join(tmp, f"se{n}.fq"))], n)
              for n in args.sizes]
    inputs += [(f"{n:,} pairs", pe_genome, [head_fastq(os.path.join(pe_dir, "r1.fq"), n, os.path.join(tmp, f"r1-{n}.fq")),
                                            head_fastq(os.path.join(pe_dir, "r2.fq"), n, os.path.join(tmp, f"r2-{n}.fq"))], 2 * n)
               for n in args.pairs]
    for fasta in {genome, pe_genome}:
        subprocess.run([*neuromap, "index", fasta], check=True, stderr=subprocess.DEVNULL)
    if args.sizes:
        warm_up(genome, os.path.join(args.workdir, "reads.fq"))
    if args.pairs:
        warm_up(pe_genome, os.path.join(pe_dir, "r1.fq"), os.path.join(pe_dir, "r2.fq"))

    started = time.perf_counter()
    server = subprocess.Popen([*neuromap, "serve", sock], stderr=subprocess.PIPE, text=True, start_new_session=True)
    line = server.stderr.readline()
    if "serving" not in line:
        sys.exit(f"the server did not start: {line}{server.stderr.read()}")
    server_start = time.perf_counter() - started
    try:
        for _, fasta, files, _ in inputs:  # the server's first client compiles (loads) its call shapes
            subprocess.run([*neuromap, "align", "--quiet", *workers, "--server", sock, fasta, *files], check=True,
                           stdout=subprocess.DEVNULL)
        print("# `align --server` against a run that loads the network, and minimap2\n")
        print(machine_lines())
        print(f"- neuromap {__version__}; {version_of(['minimap2', '--version'])} (minimap2); every tool at -t {args.threads}; "
              f"neuromap with {'worker processes' if args.processes else 'threads'}; SAM to /dev/null; median of {args.repeats} runs, "
              "taken in turn")
        print(f"- the server took {server_start:.2f} s to start (JAX, the device, the model), once\n")
        print("| input | tool | wall s | reads/s | ratio to minimap2 | peak RSS of the run (MB) |")
        print("|---|---|---|---|---|---|")
        same = []
        for label, fasta, files, n_reads in inputs:
            runs = {"minimap2 -x sr": ["minimap2", "-x", "sr", "-t", str(args.threads), fasta, *files],
                    "neuromap (loads the network)": [*neuromap, "align", "--quiet", *workers, fasta, *files],
                    "neuromap --server": [*neuromap, "align", "--quiet", *workers, "--server", sock, fasta, *files]}
            walls: dict = {name: [] for name in runs}
            peaks: dict = {name: [] for name in runs}
            for _ in range(args.repeats):
                for name, cmd in runs.items():
                    wall, peak = run_measured(cmd)
                    walls[name].append(wall)
                    peaks[name].append(peak)
            base = statistics.median(walls["minimap2 -x sr"])
            for name in runs:
                wall = statistics.median(walls[name])
                print(f"| {label} | {name} | {wall:.2f} | {n_reads / wall:,.0f} | {base / wall:.2f} | {max(peaks[name])} |")
            alone, served = os.path.join(tmp, "alone.sam"), os.path.join(tmp, "served.sam")
            run_measured(runs["neuromap (loads the network)"], alone)
            run_measured(runs["neuromap --server"], served)
            same.append(f"{label}: {'the same' if body(alone) == body(served) else 'DIFFERENT'}")
        server_rss = tree_kb(tree_pids(server.pid), "VmRSS") // 1024
        print(f"\nThe server's own RSS after these runs: {server_rss} MB (held once, whatever the number of runs it serves).")
        print("Output through the server against the run alone, record for record (@PG aside): " + "; ".join(same) + ".")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
