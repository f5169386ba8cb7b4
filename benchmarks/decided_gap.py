#!/usr/bin/env python3
"""How far behind a read's best window the network puts the windows where the read aligns worse.

    python benchmarks/decided_gap.py [--size 1000000] [--seed 1001] [--reads 30000]

`neuromap align` does not give the network the windows where a read aligns DECIDED_GAP or more
alignment points worse than in its best one (neuromap/pipeline.py). This script checks that rule
on held-out data: the calibration genome (seed 1001, as `neuromap calibrate`; neither training
nor the benchmark genome), every window of every read with alternatives scored by the network.
Per gap threshold it prints the share of the network's (read, window) pairs at that gap or more
and how far below the read's best the network put them, in calibrated log units
(λ x Δ log-likelihood: e^-20 is a probability share of 2e-9).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import neuromap.pipeline as pipeline  # noqa: E402
from neuromap import __version__  # noqa: E402
from neuromap.evaluate import load_truth  # noqa: E402
from neuromap.index import build_index, load_index  # noqa: E402
from neuromap.io.fastx import batched, make_batch, read_fastx  # noqa: E402
from neuromap.simulate import simulate_reads, synthetic_genome, write_fasta, write_simulation  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1_000_000, help="genome size (bp)")
    ap.add_argument("--seed", type=int, default=1001, help="genome seed (reads use seed + 1)")
    ap.add_argument("--reads", type=int, default=30000)
    args = ap.parse_args()
    pipeline.DECIDED_GAP = 1 << 30  # score every window with the network
    opts = pipeline.AlignOptions(neural=True)
    lam = pipeline.likelihood_scale(opts)
    gaps, behind, true = [], [], []
    with tempfile.TemporaryDirectory() as work:
        ref, reads = os.path.join(work, "genome.fa"), os.path.join(work, "reads.fq")
        write_fasta(ref, synthetic_genome(args.size, args.seed))
        write_simulation(simulate_reads(ref, args.reads, 150, seed=args.seed + 1, snp_rate=0.001, indel_rate=0.0001),
                         reads, os.path.join(work, "truth.tsv"))
        truth = load_truth(os.path.join(work, "truth.tsv"))
        index = load_index(build_index(ref))
        names = np.array(index.names)
        for records in batched(read_fastx(reads), opts.batch_size):
            batch = make_batch(records)
            pl = pipeline.place(batch, index, opts)
            slot_pair = np.full(pl.valid.shape, -1)
            slot_pair[pl.pairs.read, pl.pairs.slot] = np.arange(len(pl.pairs.read))
            for r in np.flatnonzero(pl.valid.sum(axis=1) > 1):  # reads with alternatives (all went to the network)
                v = np.flatnonzero(pl.valid[r])
                gaps.append(pl.slot_score[r][v].max() - pl.slot_score[r][v])
                behind.append(lam * (pl.ll[r][v].max() - pl.ll[r][v]))
                # Is the window the read's true origin? (the DP's start within 10 bp of it)
                t_contig, t_start, _, t_strand = truth[batch.names[r]]
                pair = slot_pair[r, v]
                contig = pl.cands.contig[r, v]
                start = pl.pairs.window_start[pair] + pl.pair_diag[pair] - index.contig_offsets[contig]
                true.append((names[contig] == t_contig) & (pl.cands.reverse[r, v] == (t_strand == "-")) & (np.abs(start - t_start) <= 10))
    gap, low, origin = np.concatenate(gaps), np.concatenate(behind), np.concatenate(true)
    print("# Windows the alignment decides: how far behind the network puts them\n")
    print(f"- neuromap {__version__}, Python {platform.python_version()}, {platform.platform()}")
    print(f"- data: {args.size:,} bp synthetic genome (seed {args.seed}), {args.reads:,} x 150 bp reads; "
          f"{len(gap):,} (read, window) pairs of reads with alternatives; λ = {lam:.3f}\n")
    print("| alignment points behind the best window | share of pairs | true origins among them | least λ·Δll | 1st percentile |")
    print("|---|---|---|---|---|")
    for g in (5, 10, 15, 20, 30, 40, 60):
        sel = gap >= g
        least = f"{low[sel].min():.1f}" if sel.any() else "-"
        p1 = f"{np.percentile(low[sel], 1):.1f}" if sel.any() else "-"
        print(f"| >= {g} | {sel.mean():.3f} | {int(origin[sel].sum())} of {int(sel.sum()):,} | {least} | {p1} |")
    print("\nA true origin behind the best window is a read whose best-aligning window is a paralog (its own")
    print("copy carries more sequencing errors or SNPs); the network could only win a read back there.")


if __name__ == "__main__":
    main()
