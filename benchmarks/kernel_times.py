#!/usr/bin/env python3
"""Seconds in each compiled kernel of `align`'s worker loop, one process, no profiler.

    python benchmarks/kernel_times.py GENOME.fa READS.fq [--reads 80000] [--neural]

Cuts READS into batches of 4,000 as `align` does, parses, maps and writes SAM text for each (as a
worker does), timing every call of `kernels.call` by kernel name; prints the whole time and each
kernel's seconds and share. The rest of the time is Python and numpy. Run after bench_se.py, on
its work/genome.fa and work/reads.fq (the per-kernel figures of benchmarks/README.md's seventh
session came from it).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from neuromap import __version__, kernels  # noqa: E402
from neuromap.index import open_index  # noqa: E402
from neuromap.io.fastx import RawBatch, fastq_batches, make_batch, parse_raw_batch  # noqa: E402
from neuromap.io.sam import format_sam  # noqa: E402
from neuromap.pipeline import AlignOptions, map_batch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("genome")
    ap.add_argument("reads")
    ap.add_argument("--reads", dest="n", type=int, default=80000)
    ap.add_argument("--neural", action="store_true", help="the default path with the network (else seeds + DP)")
    args = ap.parse_args()
    index = open_index(args.genome)
    opts = AlignOptions(neural=args.neural)
    seconds: collections.Counter = collections.Counter()
    call = kernels.call

    def timed(name, *a):
        start = time.perf_counter()
        try:
            return call(name, *a)
        finally:
            seconds[name] += time.perf_counter() - start

    def run(n_reads):
        for raw in itertools.islice(fastq_batches(args.reads, opts.batch_size), -(-n_reads // opts.batch_size)):
            batch = parse_raw_batch(raw) if isinstance(raw, RawBatch) else make_batch(raw)
            format_sam(batch, map_batch(batch, index, opts), index, None)

    run(opts.batch_size)  # the kernels (and with --neural, JAX and the model) loaded outside the timing
    kernels.call = timed
    start = time.perf_counter()
    run(args.n)
    total = time.perf_counter() - start
    kernels.call = call
    print(f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores, {platform.platform()}; "
          f"neuromap {__version__}, Python {platform.python_version()}\n")
    print(f"{args.n} reads in {total:.3f} s ({'network' if args.neural else 'seeds + DP'}, one process)\n")
    print("| kernel | seconds | share |\n|---|---|---|")
    for name, secs in seconds.most_common():
        print(f"| {name} | {secs:.3f} | {100 * secs / total:.1f} % |")
    print(f"| (Python and numpy) | {total - sum(seconds.values()):.3f} | {100 * (1 - sum(seconds.values()) / total):.1f} % |")


if __name__ == "__main__":
    main()
