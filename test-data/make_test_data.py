#!/usr/bin/env python3
"""Make test-data/: a small reference with planted repeats, its simulated reads and pairs + truth.

    python test-data/make_test_data.py

Deterministic: rerunning gives byte-identical files.
"""

from __future__ import annotations

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from neuromap.simulate import simulate_pairs, simulate_reads, write_simulation  # noqa: E402

LETTERS = np.frombuffer(b"ACGT", dtype=np.uint8)


def random_seq(rng, n):
    return LETTERS[rng.integers(0, 4, n)].tobytes().decode()


def mutate(rng, seq, rate):
    s = bytearray(seq.encode())
    for i in np.flatnonzero(rng.random(len(s)) < rate):
        s[i] = b"ACGT".replace(bytes([s[i]]), b"")[rng.integers(0, 3)]
    return s.decode()


def make_reference(rng):
    chr1 = random_seq(rng, 220_000)
    chr2 = random_seq(rng, 70_000)
    plasmid = random_seq(rng, 3_000)
    exact = random_seq(rng, 1_500)  # two identical copies: reads there are ambiguous
    near = random_seq(rng, 2_000)  # two copies 2% apart: reads there are placeable, barely
    chr1 = chr1[:40_000] + exact + chr1[41_500:]
    chr2 = chr2[:20_000] + exact + chr2[21_500:]
    chr1 = chr1[:100_000] + near + chr1[102_000:]
    chr2 = chr2[:50_000] + mutate(rng, near, 0.02) + chr2[52_000:]
    chr1 = chr1[:150_000] + "N" * 300 + chr1[150_300:]  # an assembly gap
    chr1 = chr1[:180_000] + chr1[180_000:182_000].lower() + chr1[182_000:]  # soft-masked
    chr2 = chr2[:60_000] + "R" + chr2[60_001:60_500] + "Y" + chr2[60_501:]  # IUPAC codes
    return {"chr1": chr1, "chr2": chr2, "plasmid": plasmid}


def write_fasta(path, contigs):
    with open(path, "w") as fh:
        for name, seq in contigs.items():
            fh.write(f">{name} test contig\n")
            for i in range(0, len(seq), 60):
                fh.write(seq[i : i + 60] + "\n")


def main():
    rng = np.random.default_rng(20261125)
    ref = os.path.join(HERE, "ref.fa")
    write_fasta(ref, make_reference(rng))
    reads = simulate_reads(ref, 3000, 150, seed=7, error_rate=0.01, snp_rate=0.001, indel_rate=0.0001)
    write_simulation(reads, os.path.join(HERE, "reads.fq"), os.path.join(HERE, "truth.tsv"))
    # Pairs: 2 x 150 bp, fragments 400 +- 50 bp; truth names carry /1 and /2.
    pairs = simulate_pairs(ref, 1000, 150, seed=8, fragment_mean=400, fragment_std=50, error_rate=0.01, snp_rate=0.001, indel_rate=0.0001)
    write_simulation(pairs, os.path.join(HERE, "reads_1.fq"), os.path.join(HERE, "truth_pairs.tsv"), mate2=os.path.join(HERE, "reads_2.fq"))


if __name__ == "__main__":
    main()
