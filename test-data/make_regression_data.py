#!/usr/bin/env python3
"""Make test-data/regressions.{fa,fq}: reads from the benchmark genome that once went wrong, with
the pieces of that genome they were placed in.

    python test-data/make_regression_data.py

The genome and reads are those of `benchmarks/bench_se.py` (5 Mb synthetic genome, seed 42; reads
of `neuromap simulate --seed 43`). Deterministic: rerunning gives byte-identical files.

- sim053463: an AT-rich read whose seeds also hit two low-complexity windows where it aligns with
  a score of 13-14. A network once found one of those windows likelier than the true one and the
  read came out unmapped; `place` now lets the network choose only among windows where the read
  aligns (tests/test_cli_align.py).
- sim089504: a read from a tandem array (period 12) whose best start by the network is a shift
  where the read aligns only with a 69-base clip; the DP's start in the same window aligns it
  whole. `describe` now keeps the network's start only where the read aligns there about as well.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from neuromap.simulate import simulate_reads, synthetic_genome, write_fasta  # noqa: E402

# (name, start, end) in the benchmark genome's "chromosome"
REGIONS = [("true_4726535", 4_726_535, 4_727_285), ("junk_2715860", 2_715_860, 2_716_660), ("junk_4054441", 4_054_441, 4_055_241),
           ("tandem_1053700", 1_053_700, 1_054_800)]
READS = {"sim053463", "sim089504"}


def main() -> None:
    genome = synthetic_genome(5_000_000, 42)
    chromosome = genome["chromosome"]
    write_fasta(os.path.join(HERE, "regressions.fa"), {name: chromosome[lo:hi] for name, lo, hi in REGIONS})
    tmp = os.path.join(HERE, "regressions.tmp.fa")
    write_fasta(tmp, genome)
    try:
        wanted = {}
        for read in simulate_reads(tmp, 100_000, 150, seed=43, snp_rate=0.001, indel_rate=0.0001):
            if read.name in READS:
                wanted[read.name] = read
            if len(wanted) == len(READS):
                break
    finally:
        os.remove(tmp)
    with open(os.path.join(HERE, "regressions.fq"), "w") as fh:
        for name in sorted(wanted):
            r = wanted[name]
            fh.write(f"@{r.name} {r.contig}:{r.start}-{r.end}:{r.strand}\n{r.seq}\n+\n{r.qual}\n")


if __name__ == "__main__":
    main()
