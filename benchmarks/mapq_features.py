#!/usr/bin/env python3
"""Does the network's likelihood say more about a placement than its alignment score does?

    python benchmarks/mapq_features.py [--workdir benchmarks/work] [--weights DIR]

P(correct) is a softmax over a read's placements. `neuromap align` feeds it the network's
log-likelihood times λ (fitted by `neuromap calibrate`); `--no-neural` feeds it the alignment
score. This script fits P(correct) ∝ exp(λ·ll + μ·AS) by log loss on the held-out calibration
genome (1 Mb, seed 1001, as `neuromap calibrate`), with the network choosing the placements, and
scores each fit's Brier on the benchmark reads of bench_se.py (run that first). If the fit puts
its weight on AS, the network's likelihood carries no information about correctness that the
alignment score lacks: that is what training has to change.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from neuromap import __version__  # noqa: E402
from neuromap.calibrate import _log_loss, collect, collect_reads  # noqa: E402
from neuromap.index import open_index  # noqa: E402
from neuromap.mapq import p_correct  # noqa: E402
from neuromap.model import load_model  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def probability(data, lam: float, mu: float) -> np.ndarray:
    evidence = lam * data.ll + mu * data.score
    unscored = lam * data.unscored + mu * data.weakest_score
    return p_correct(evidence, data.valid, data.chosen, data.extra, unscored)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=os.path.join(HERE, "work"), help="bench_se.py's genome.fa, reads.fq, truth.tsv")
    ap.add_argument("--weights", metavar="DIR", help="a trained and calibrated model (default: the shipped one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        cal = collect(args.weights, 1_000_000, 20_000, 1001, work)
    w = lambda name: os.path.join(args.workdir, name)  # noqa: E731
    bench = collect_reads(open_index(w("genome.fa")), w("reads.fq"), w("truth.tsv"), args.weights)

    grid = np.concatenate([[0.0], np.geomspace(0.02, 10.0, 60)])
    fits = {}
    for name, lams, mus in (("network log-likelihood only", grid[1:], [0.0]), ("alignment score only", [0.0], grid[1:]),
                            ("both", grid, grid)):
        loss, lam, mu = min((_log_loss(probability(cal, lam, mu), cal.right), lam, mu)
                            for lam in lams for mu in mus if lam or mu)
        fits[name] = (lam, mu, loss)
    shipped = load_model(args.weights)[2].scale
    fits["as calibrated (calibration.json)"] = (shipped, 0.0, _log_loss(probability(cal, shipped, 0.0), cal.right))

    print("# What P(correct) is best built from\n")
    print(f"- neuromap {__version__}, Python {platform.python_version()}, {platform.platform()}; model: {args.weights or 'shipped'}")
    print(f"- fitted on the calibration genome (1 Mb, seed 1001, 20,000 reads, {len(cal.right):,} aligned); "
          f"Brier on {args.workdir}/reads.fq ({len(bench.right):,} aligned reads); the network chooses every placement\n")
    print("| P(correct) ∝ exp(λ·ll + μ·AS) | λ | μ | log loss (calibration) | Brier (calibration) | Brier (benchmark) |")
    print("|---|---|---|---|---|---|")
    for name, (lam, mu, loss) in fits.items():
        b_cal = float(np.mean((probability(cal, lam, mu) - cal.right) ** 2))
        b_bench = float(np.mean((probability(bench, lam, mu) - bench.right) ** 2))
        print(f"| {name} | {lam:.3f} | {mu:.3f} | {loss:.5f} | {b_cal:.5f} | {b_bench:.5f} |")

    # Where the difference lies: benchmark reads by how far their best placement's alignment score
    # is ahead of the runner-up's (0: tied copies; none: one placement).
    score = np.where(bench.valid, bench.score, -(1 << 40))
    top2 = -np.sort(-score, axis=1)[:, :2]
    gap = np.where(bench.valid.sum(axis=1) > 1, top2[:, 0] - top2[:, 1], -1)
    right = bench.right.astype(float)
    p_net = probability(bench, *fits["network log-likelihood only"][:2])
    p_as = probability(bench, *fits["alignment score only"][:2])
    print("\nBenchmark reads by the alignment-score lead of their best placement over the runner-up: summed squared "
          "error (Brier x reads) of P(correct) from each evidence\n")
    print("| AS lead | reads | wrong | network log-likelihood | alignment score |\n|---|---|---|---|---|")
    for label, lo, hi in (("0 (tied)", 0, 0), ("1-5 (one mismatch)", 1, 5), ("6-10", 6, 10), ("11-20", 11, 20),
                          ("21 or more", 21, 1 << 40), ("one placement", -1, -1)):
        m = (gap >= lo) & (gap <= hi)
        print(f"| {label} | {m.sum():,} | {int((1 - right[m]).sum()):,} | {((p_net[m] - right[m]) ** 2).sum():.2f} | "
              f"{((p_as[m] - right[m]) ** 2).sum():.2f} |")


if __name__ == "__main__":
    main()
