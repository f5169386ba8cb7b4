#!/usr/bin/env python3
"""Split the Brier score by whether a read is placeable at all.

    python benchmarks/brier_split.py TRUTH.tsv REFERENCE_PATH.sam OTHER.sam ...

(single-end or paired-end SAM; for pairs, truth_pairs.tsv of bench_pe.py)

A read whose best placement ties with another (AS == XS in REFERENCE_PATH.sam, neuromap's
--no-neural output) sits in an exact repeat: P(correct) = 1/copies is the best any aligner can
claim there, so that part of the Brier score is a floor, not a fault. The rest is where MAPQ can be
sharper or duller. Prints, for each file, the Brier score over all mapped reads, over the tied
reads and over the others.
"""

import os
import platform
import sys

import numpy as np
import pysam

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_se import machine_lines  # noqa: E402
from neuromap import __version__  # noqa: E402
from neuromap.evaluate import load_truth  # noqa: E402


def per_read(path, truth):
    out = {}
    with pysam.AlignmentFile(path, check_sq=False) as fh:
        for r in fh:
            name = r.query_name
            if r.is_paired:  # the truth of pairs names mates NAME/1 and NAME/2
                name += "/1" if r.is_read1 else "/2"
            if r.is_secondary or r.is_supplementary or r.is_unmapped or name not in truth:
                continue
            contig, start, _, strand = truth[name]
            clip = r.cigartuples[0][1] if r.cigartuples and r.cigartuples[0][0] in (4, 5) else 0
            ok = r.reference_name == contig and ("-" if r.is_reverse else "+") == strand and abs(r.reference_start - clip - start) <= 10
            tied = r.has_tag("XS") and r.get_tag("XS") >= r.get_tag("AS")
            out[name] = (10 ** (-r.mapping_quality / 10), not ok, tied)
    return out


def main():
    print(f"# Brier score split by ties ({os.path.basename(sys.argv[1])})\n")
    print(machine_lines())
    print(f"- versions: neuromap {__version__}, Python {platform.python_version()}")
    print(f"- command: `python benchmarks/brier_split.py {' '.join(sys.argv[1:])}`\n")
    truth = load_truth(sys.argv[1])
    ref = per_read(sys.argv[2], truth)
    tied = {name for name, (_, _, t) in ref.items() if t}
    print("| file | Brier, all mapped | tied reads (n) | Brier, tied | Brier, not tied |\n|---|---|---|---|---|")
    for path in sys.argv[2:]:
        reads = per_read(path, truth)
        claimed = np.array([v[0] for v in reads.values()])
        wrong = np.array([v[1] for v in reads.values()], dtype=float)
        in_tied = np.array([k in tied for k in reads])
        b = (claimed - wrong) ** 2
        print(f"| {path.rsplit('/', 1)[-1]} | {b.mean():.5f} | {in_tied.sum()} | {b[in_tied].mean():.5f} | {b[~in_tied].mean():.6f} |")


if __name__ == "__main__":
    main()
