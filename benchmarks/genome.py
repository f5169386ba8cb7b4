#!/usr/bin/env python3
"""A synthetic bacterial-size genome with the repeats that make mapping hard.

    python benchmarks/genome.py OUT.fa [--size 5000000] [--seed 1]

Random sequence with: a chromosome plus two plasmids of 1-100 kb, IS-element-like exact repeats
(10 families x 5 copies of 1.3 kb), near-exact repeats (rRNA-operon-like, 7 copies of 5 kb at
0.5-2% divergence), tandem repeats, low-complexity stretches and an N gap. Deterministic per seed.
"""

from __future__ import annotations

import argparse

import numpy as np

LETTERS = np.frombuffer(b"ACGT", dtype=np.uint8)


def make_genome(size: int, seed: int) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, size).astype(np.uint8)

    def plant(segment, at):
        codes[at : at + len(segment)] = segment

    def diverge(segment, rate):
        seg = segment.copy()
        sites = np.flatnonzero(rng.random(len(seg)) < rate)
        seg[sites] = (seg[sites] + rng.integers(1, 4, len(sites))) % 4
        return seg

    slots = rng.choice(np.arange(10_000, size - 10_000, 6_000), size=10 * 5 + 7 + 20, replace=False)
    s = iter(slots)
    for _ in range(10):  # IS elements: identical copies
        element = rng.integers(0, 4, 1_300).astype(np.uint8)
        for _ in range(5):
            plant(element, next(s))
    operon = rng.integers(0, 4, 5_000).astype(np.uint8)
    for rate in (0.0, 0.005, 0.005, 0.01, 0.01, 0.02, 0.02):  # rRNA-operon-like near repeats
        plant(diverge(operon, rate), next(s))
    for _ in range(10):  # tandem repeats
        unit = rng.integers(0, 4, int(rng.integers(2, 60))).astype(np.uint8)
        plant(np.tile(unit, 1_500 // len(unit)), next(s))
    for _ in range(10):  # low complexity (AT-rich)
        plant(rng.choice(np.array([0, 3], dtype=np.uint8), 1_000), next(s))
    seq = LETTERS[codes].tobytes().decode()
    gap = size // 3
    seq = seq[:gap] + "N" * 500 + seq[gap + 500 :]
    plasmid1 = LETTERS[rng.integers(0, 4, 100_000)].tobytes().decode()
    plasmid2 = LETTERS[rng.integers(0, 4, 1_000)].tobytes().decode()
    return {"chromosome": seq, "plasmid1": plasmid1, "plasmid2": plasmid2}


def write_fasta(path: str, contigs: dict[str, str]) -> None:
    with open(path, "w") as fh:
        for name, seq in contigs.items():
            fh.write(f">{name}\n")
            for i in range(0, len(seq), 80):
                fh.write(seq[i : i + 80] + "\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=5_000_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    write_fasta(args.out, make_genome(args.size, args.seed))
