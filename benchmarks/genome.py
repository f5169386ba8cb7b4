#!/usr/bin/env python3
"""Write the synthetic bacterial-size genome with repeats (neuromap.simulate.synthetic_genome).

    python benchmarks/genome.py OUT.fa [--size 5000000] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from neuromap.simulate import synthetic_genome, write_fasta  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=5_000_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    write_fasta(args.out, synthetic_genome(args.size, args.seed))
