#!/usr/bin/env python3
"""Peak memory as the number of reads grows 10 x: neuromap (network, --no-neural) beside minimap2.

    python benchmarks/bench_memory.py [--reads 100000 1000000] [--threads 2] [--workdir benchmarks/work]
                                      [--processes] [--from FASTQ]

Uses bench_se.py's 5 Mb genome (run `bench_se.py --prepare-only` first, or any bench_se run) and
simulates the larger read sets from it with `neuromap simulate` (same settings as bench_se.py:
150 bp, 1 % error, SNP rate 0.001, indel rate 0.0001). With `--from FASTQ` each read set is instead
that file's reads repeated (renamed `NAME.k` on the k-th pass) until there are enough: seconds
instead of minutes of simulation, for throughput on a lent GPU machine. Every run writes SAM to
/dev/null; peak RSS is that of the whole process tree (all worker processes with --processes),
sampled every 50 ms (bench_se.run_measured).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from bench_se import compile_package, WARM_NOTE, cpu_model, run_measured, version_of, warm_up  # noqa: E402
from neuromap import __version__  # noqa: E402


def repeat_reads(source: str, n: int, path: str) -> None:
    """The first n reads of `source` repeated as often as needed, renamed NAME.k on pass k."""
    with open(source, "rb") as fh:
        lines = fh.read().split(b"\n")
    records = [lines[i:i + 4] for i in range(0, len(lines) - 3, 4)]
    with open(path, "wb") as out:
        for k in range(-(-n // len(records))):
            take = records[: n - k * len(records)]
            out.write(b"".join(b"%s.%d\n%s\n+\n%s\n" % (head.split()[0], k, seq, qual) for head, seq, _, qual in take))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", default=os.path.join(HERE, "work"))
    ap.add_argument("--processes", action="store_true", help="neuromap's runs with worker processes (align --processes) instead of threads")
    ap.add_argument("--from", dest="source", metavar="FASTQ", help="make each read set by repeating this FASTQ's reads")
    args = ap.parse_args()
    compile_package()
    genome = os.path.join(args.workdir, "genome.fa")
    if not os.path.exists(genome):
        sys.exit(f"{genome}: missing; run benchmarks/bench_se.py --prepare-only first")
    neuromap = [sys.executable, "-m", "neuromap"]
    subprocess.run(neuromap + ["index", genome], check=True, capture_output=True)
    t = str(args.threads)
    align = [*neuromap, "align", "-t", t, "--quiet", "--processes" if args.processes else "--no-processes"]
    workers = ", --processes" if args.processes else ""
    tools = {
        f"neuromap (network){workers}": lambda fq: [*align, genome, fq],
        f"neuromap --no-neural{workers}": lambda fq: [*align, "--no-neural", genome, fq],
        "minimap2 -x sr": lambda fq: ["minimap2", "-ax", "sr", "-t", t, genome, fq],
    }
    rows = {name: [] for name in tools}
    warmed = False
    for n in args.reads:
        fq = os.path.join(args.workdir, f"memory-{n}.fq")
        if args.source:
            fq = os.path.join(args.workdir, f"repeated-{n}.fq")
            repeat_reads(args.source, n, fq)
        elif not os.path.exists(fq):
            subprocess.run(neuromap + ["simulate", genome, "-n", str(n), "-l", "150", "--seed", "43", "--snp-rate", "0.001",
                                       "--indel-rate", "0.0001", "-o", fq, "--truth", fq + ".truth.tsv"], check=True, capture_output=True)
        if not warmed:
            warm_up(genome, fq)
            warmed = True
        for name, cmd in tools.items():
            anon: list = []
            cpu: list = []
            pss: list = []
            shared: list = []
            wall, rss = run_measured(cmd(fq), anon=anon, cpu=cpu, pss=pss, shared=shared)
            rows[name].append((n / wall, rss, anon[0], wall, *cpu[0], pss[0], shared[0]))

    import jax

    print("# Peak memory as the number of reads grows\n")
    print(f"- machine: {cpu_model()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"- versions: neuromap {__version__}, Python {platform.python_version()}, {version_of(['minimap2', '--version'])}, "
          f"JAX {jax.__version__} on {jax.default_backend()}")
    origin = f"the reads of {args.source} repeated (renamed)" if args.source else "simulated"
    print(f"- data: bench_se.py's 5 Mb genome, {' and '.join(f'{n:,}' for n in args.reads)} x 150 bp reads ({origin}); -t {t} for every tool; {WARM_NOTE}\n")
    head = " | ".join(f"{n:,} reads: RSS MB (anonymous; PSS; shared batches) | reads/s" for n in args.reads)
    print(f"| tool | {head} | RSS growth | RSS / minimap2's | anonymous / minimap2's | PSS / minimap2's |")
    print("|---|" + "---|---|" * len(args.reads) + "---|---|---|---|")
    mm = rows["minimap2 -x sr"]
    for name, row in rows.items():
        cells = " | ".join(f"{rss} ({anon}; {pss_mb}; {shared_mb}) | {speed:,.0f}" for speed, rss, anon, *_, pss_mb, shared_mb in row)
        ratio = " / ".join(f"{r[1] / m[1]:.1f}" for r, m in zip(row, mm))
        anon_ratio = " / ".join(f"{r[2] / m[2]:.1f}" for r, m in zip(row, mm))
        pss_ratio = " / ".join(f"{r[6] / m[6]:.1f}" for r, m in zip(row, mm))
        print(f"| {name} | {cells} | {row[-1][1] / row[0][1]:.2f} x | {ratio} | {anon_ratio} | {pss_ratio} |")
    print("\nRSS counts the pages of shared libraries a process has touched; \"anonymous\" is its private")
    print("memory alone (RssAnon in /proc: heap, arrays, compiled code), without those pages and without the")
    print("memory-mapped index. JAX's library (libjax_common.so, 350 MB on disk) and runtime are most of the")
    print("difference for neuromap with the network; minimap2 is one small static program. Summed over")
    print("processes, RSS and anonymous memory count a page that n processes share n times (the index in")
    print("the page cache, and the pages forked workers share with their fork server); PSS (proportional")
    print("set size, /proc/PID/smaps_rollup) counts it once, split among them: the memory the run takes.")
    print("RSS and PSS here include the shared batch memory (in parentheses, last): with --processes the")
    print("batches' FASTQ and SAM pass between the processes through an in-memory file, 2 x -t slots of a")
    print("batch each (neuromap/slots.py), which they read and write without mapping it, so that no")
    print("process's own RSS or PSS shows it (bench_se.tree_memfd_kb).")
    print("\nWhere the time goes: wall seconds, CPU seconds of the main process (the one started; for")
    print("neuromap with --processes: reading and cutting the input, handing batches out, writing the output; the network has a process of its own)")
    print("and of all its processes together, and the cores kept busy on average (all CPU / wall). A main")
    print("process whose CPU seconds come near the wall (or pass it: its threads) is what limits the run.\n")
    head = " | ".join(f"{n:,} reads: wall s / main CPU s / all CPU s / cores" for n in args.reads)
    print(f"| tool | {head} |")
    print("|---|" + "---|" * len(args.reads))
    for name, row in rows.items():
        cells = " | ".join(f"{wall:.2f} / {own:.2f} / {total:.2f} / {total / wall:.1f}" for _, _, _, wall, own, total, *_ in row)
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
