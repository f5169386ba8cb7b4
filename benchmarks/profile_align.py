#!/usr/bin/env python3
"""Where the time goes in `neuromap align`: time per pipeline stage, single process.

    python benchmarks/profile_align.py GENOME.fa READS.fq [MATES.fq] [--reads 20000] [--neural] [--kernels]

Times each stage of `pipeline.map_batch` on the same batches (parse, seed, windows, ungapped
screen, DP, traceback/formatting) and prints seconds and shares. With --kernels, no profiler:
the seconds in each compiled kernel (every `kernels.call`, by name), the rest being Python and
numpy. --reads is rounded up to whole batches of 4,000 (with MATES: pairs, 2,000 a batch, mapped
as a worker of `align` maps them, with the insert size estimated from the first batch's seeds).
Run after bench_se.py and bench_pe.py, on work/genome.fa and work/reads.fq (or work/r1.fq
work/r2.fq).
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import itertools
import os
import platform
import pstats
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from neuromap import __version__, kernels  # noqa: E402
from neuromap.index import open_index  # noqa: E402
from neuromap.io.fastx import RawBatch, fastq_batches, fastq_pair_batches, make_batch, parse_raw_batch  # noqa: E402
from neuromap.model import device_name  # noqa: E402
from neuromap.io.sam import format_sam  # noqa: E402
from neuromap.pipeline import AlignOptions, _parse, _work, insert_from_seeds, map_batch  # noqa: E402

STAGES = {
    "seed (minimizers, lookup, diagonal clusters)": ("neuromap/seed.py", "find_candidates"),
    "windows (gather reference, orient reads)": ("neuromap/windows.py", "make_pairs"),
    "ungapped screen": ("neuromap/align.py", "ungapped"),
    "banded DP": ("neuromap/align.py", "banded_align"),
    "traceback (CIGAR, MD, NM)": ("neuromap/align.py", "traceback"),
    "SAM formatting": ("neuromap/io/sam.py", "format_sam"),
    "SAM formatting (pairs)": ("neuromap/io/sam.py", "sam_records"),
    "mate rescue (with MATES)": ("neuromap/pairing.py", "add_rescued"),
    "joint choice of the mates (with MATES)": ("neuromap/pairing.py", "choose_pairs"),
    "FASTQ cut into batches (the calling thread)": ("neuromap/io/fastx.py", "_raw_batches"),
    "FASTQ parsing (the workers)": ("neuromap/io/fastx.py", "parse_raw_batch"),
    "FASTQ parsing of pairs (the workers)": ("neuromap/io/fastx.py", "parse_raw_pairs_batch"),
    "network (NeuralReadMapper on the device, with --neural)": ("neuromap/model.py", "_score_distinct"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("genome")
    ap.add_argument("reads")
    ap.add_argument("mates", nargs="?", help="mate 2 of each pair in READS: map pairs")
    ap.add_argument("--reads", dest="n", type=int, default=20000, help="reads to map (with MATES: pairs)")
    ap.add_argument("--neural", action="store_true", help="the default path with the network (else seeds + DP)")
    ap.add_argument("--kernels", action="store_true", help="seconds per compiled kernel, without the profiler")
    args = ap.parse_args()
    index = open_index(args.genome)
    opts = AlignOptions(neural=args.neural, paired=args.mates is not None)
    insert = None
    if args.mates:
        first = next(iter(fastq_pair_batches(args.reads, args.mates, opts.batch_size // 2)))
        insert, _ = insert_from_seeds(_parse(first, True), index, opts, np.zeros(0, np.int64))

    def run(n_reads, batch_size):  # as `align` reads FASTQ: cut into batches, each parsed by its worker
        if args.mates:
            for raw in itertools.islice(fastq_pair_batches(args.reads, args.mates, batch_size // 2), -(-2 * n_reads // batch_size)):
                _work(raw, index, opts, insert)
            return
        for raw in itertools.islice(fastq_batches(args.reads, batch_size), -(-n_reads // batch_size)):
            batch = parse_raw_batch(raw) if isinstance(raw, RawBatch) else make_batch(raw)
            format_sam(batch, map_batch(batch, index, opts), index, None)

    # Load the compiled kernels and, with --neural, JAX and the model, outside the measurement.
    run(500, 500)
    header = (f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores, {platform.platform()}; "
              f"neuromap {__version__}, Python {platform.python_version()}\n")
    where = (f"network on {device_name()}" if args.neural else "seeds + DP") + (", pairs" if args.mates else "")
    unit = "pairs" if args.mates else "reads"
    if args.kernels:
        kernel_times(run, args.n, opts.batch_size, header, where, unit)
        return
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.runcall(run, args.n, opts.batch_size)
    total = time.perf_counter() - start
    stats = pstats.Stats(prof, stream=io.StringIO())
    cumulative = {}
    for (path, _, func), (_, _, _, ct, _) in stats.stats.items():
        for stage, (suffix, name) in STAGES.items():
            if path.endswith(suffix) and func == name:
                cumulative[stage] = cumulative.get(stage, 0.0) + ct
    print(header)
    print(f"{args.n} {unit} in {total:.2f} s ({where}, one process, under the profiler): {args.n / total:,.0f} {unit}/s\n")
    print("| stage | seconds | share |\n|---|---|---|")
    for stage, secs in sorted(cumulative.items(), key=lambda kv: -kv[1]):
        print(f"| {stage} | {secs:.3f} | {100 * secs / total:.0f} % |")


def kernel_times(run, n_reads: int, batch_size: int, header: str, where: str, unit: str = "reads") -> None:
    """`run` once more with every kernels.call timed by kernel name."""
    seconds: collections.Counter = collections.Counter()
    call = kernels.call

    def timed(name, *args):
        start = time.perf_counter()
        try:
            return call(name, *args)
        finally:
            seconds[name] += time.perf_counter() - start

    kernels.call = timed
    try:
        start = time.perf_counter()
        run(n_reads, batch_size)
        total = time.perf_counter() - start
    finally:
        kernels.call = call
    print(header)
    batches = -(-n_reads * (2 if unit == "pairs" else 1) // batch_size)
    print(f"{n_reads} {unit} in {total:.3f} s ({where}, one process): {1000 * total / batches:.1f} ms a batch of {batch_size:,} reads\n")
    print("| kernel | seconds | share |\n|---|---|---|")
    for name, secs in seconds.most_common():
        print(f"| {name} | {secs:.3f} | {100 * secs / total:.1f} % |")
    print(f"| (Python and numpy) | {total - sum(seconds.values()):.3f} | {100 * (1 - sum(seconds.values()) / total):.1f} % |")


if __name__ == "__main__":
    main()
