#!/usr/bin/env python3
"""Wrong reads by how the chosen window's alignment score (AS) compares with the runner-up's (XS).

    python benchmarks/choice_split.py TRUTH.tsv ALIGNMENTS.sam [...]
    python benchmarks/choice_split.py --held-out [--reads 60000]   # simulate the calibration genome's reads first

A single-end SAM per file. Each mapped read falls in one group: no runner-up (no XS), AS more than
one mismatch (5 points) ahead, ahead by less, tied (AS = XS), or behind (AS < XS: the chosen
window aligns worse than another). Per group and MAPQ band (< 10, 10-29, >= 30) it prints the
reads, the wrong ones (more than 10 bp from the true start, or the wrong contig or strand) and
the wrong ones that P(correct) (the `pc` tag; MAPQ where there is none) expects. This is where
`align` places a single read among the windows within a mismatch of its best (pipeline.place):
with the network, the "behind" group was wrong every time.

`--held-out` writes the calibration genome (1 Mb, seed 1001: not seen in training) and reads of
seed 1002 into a temporary folder, aligns them with and without the network, and splits both (with each run's mapeval summary and
the Brier floor of brier_split.py).
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import subprocess
import sys
import tempfile

import pysam

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from neuromap import __version__  # noqa: E402
from neuromap.evaluate import load_truth  # noqa: E402
from neuromap.io.fastx import read_fastx  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_se import machine_lines  # noqa: E402
from brier_split import brier_floor, copy_odds, per_read  # noqa: E402

GROUPS = ("no XS", "AS > XS + 5", "AS > XS", "AS = XS", "AS < XS")
BANDS = ("< 10", "10-29", ">= 30")


def split(truth_path: str, sam_path: str) -> dict:
    truth = load_truth(truth_path)
    table = collections.defaultdict(lambda: [0, 0, 0.0])
    with pysam.AlignmentFile(sam_path, check_sq=False) as fh:
        for r in fh:
            if r.is_unmapped or r.is_secondary or r.is_supplementary or r.query_name not in truth:
                continue
            contig, start, _, strand = truth[r.query_name]
            clip = r.cigartuples[0][1] if r.cigartuples and r.cigartuples[0][0] in (4, 5) else 0
            right = r.reference_name == contig and ("-" if r.is_reverse else "+") == strand and abs(r.reference_start - clip - start) <= 10
            score = r.get_tag("AS")
            sub = r.get_tag("XS") if r.has_tag("XS") else None
            group = ("no XS" if sub is None else "AS > XS + 5" if score > sub + 5 else "AS > XS" if score > sub
                     else "AS = XS" if score == sub else "AS < XS")
            q = r.mapping_quality
            band = ">= 30" if q >= 30 else "10-29" if q >= 10 else "< 10"
            p = r.get_tag("pc") if r.has_tag("pc") else 1 - 10 ** (-q / 10)
            cell = table[(group, band)]
            cell[0] += 1
            cell[1] += not right
            cell[2] += 1 - p
    return table


def print_table(title: str, table: dict) -> None:
    print(f"\n{title}\n\n| AS vs XS | MAPQ | reads | wrong | wrong expected by P(correct) |\n|---|---|---|---|---|")
    for group in GROUPS:
        for band in BANDS:
            if (group, band) in table:
                n, wrong, expected = table[(group, band)]
                print(f"| {group} | {band} | {n:,} | {wrong:,} | {expected:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", help="TRUTH.tsv then one or more SAM files")
    ap.add_argument("--held-out", action="store_true", help="simulate the calibration genome's reads and align them first")
    ap.add_argument("--reads", type=int, default=60000)
    args = ap.parse_args()
    print("# Wrong reads by alignment-score lead (choice_split.py)\n")
    print(machine_lines())
    print(f"- versions: neuromap {__version__}, Python {platform.python_version()}")
    print(f"- command: `python benchmarks/choice_split.py {' '.join(sys.argv[1:])}`")
    if args.held_out:
        from neuromap.evaluate import evaluate
        from neuromap.simulate import simulate_reads, synthetic_genome, write_fasta, write_simulation

        with tempfile.TemporaryDirectory() as work:
            ref, reads, truth = (os.path.join(work, name) for name in ("genome.fa", "reads.fq", "truth.tsv"))
            write_fasta(ref, synthetic_genome(1_000_000, 1001))
            write_simulation(simulate_reads(ref, args.reads, 150, seed=1002, snp_rate=0.001, indel_rate=0.0001), reads, truth)
            odds = copy_odds({rec.name: rec.seq.upper() for rec in read_fastx(ref)}, load_truth(truth))
            for label, extra in (("network", []), ("--no-neural", ["--no-neural"])):
                sam = os.path.join(work, "out.sam")
                with open(sam, "w") as out:
                    subprocess.run([sys.executable, "-m", "neuromap", "align", "-t", "2", "--quiet", *extra, ref, reads], stdout=out, check=True)
                print_table(f"held-out: 1 Mb genome of seed 1001, {args.reads:,} reads, {label}", split(truth, sam))
                ev = evaluate(truth, sam)
                wrong = {r["mapq"]: r["wrong"] for r in ev["thresholds"]}
                floor, spread = brier_floor(per_read(sam, load_truth(truth)), odds)
                print(f"\nall reads: {ev['correct_pct']:.3f} % correct, wrong at MAPQ >= 30 / >= 10: {wrong[30]} / {wrong[10]}, "
                      f"Brier {ev['brier']:.6f}; the floor for any aligner (brier_split.py) {floor:.6f} ± {spread:.6f}")
        return
    if len(args.files) < 2:
        ap.error("give TRUTH.tsv and at least one SAM file, or --held-out")
    for sam in args.files[1:]:
        print_table(sam, split(args.files[0], sam))


if __name__ == "__main__":
    main()
