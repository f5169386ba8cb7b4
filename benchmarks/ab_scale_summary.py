#!/usr/bin/env python3
"""The table of gpu_lease.sh's ab-scale row: from its TSV of wall seconds (round, variant,
"se", "pe" or "pe20", seconds; minimap2 as a variant), each run's seconds per round, then each variant's
median seconds and median ratio of minimap2's time to its own in the same round (reads/s as a
multiple of minimap2's), on the single-end input and the pairs.

    python benchmarks/ab_scale_summary.py TIMES.tsv [--se "4000000 reads"] [--pe "1000000 pairs"] [--pe20 "2000000 pairs"]
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict


def read_times(path: str) -> dict:
    """{(variant, input): {round: seconds}}; a run that printed no number (it failed) is left out."""
    times: dict = defaultdict(dict)
    with open(path) as fh:
        for line in fh:
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 4:
                continue
            round_, variant, what, seconds = fields
            try:
                times[(variant, what)][int(round_)] = float(seconds.split()[-1])
            except (ValueError, IndexError):
                continue
    return times


def summary(times: dict, labels: dict) -> str:
    variants = list(dict.fromkeys(v for v, _ in times))
    rounds = sorted({r for runs in times.values() for r in runs})
    lines = []
    for what, label in labels.items():
        if not any(w == what for _, w in times):  # an input not run
            continue
        lines += [f"## {label}", "", "| variant | " + " | ".join(f"round {r}" for r in rounds)
                  + " | median s | × minimap2 (median of the rounds' ratios) |",
                  "|---|" + "---|" * (len(rounds) + 2)]
        base = times.get(("minimap2", what), {})
        for v in variants:
            runs = times.get((v, what), {})
            if not runs:
                continue
            cells = [f"{runs[r]:.3f}" if r in runs else "-" for r in rounds]
            ratios = [base[r] / runs[r] for r in rounds if r in runs and r in base]
            ratio = f"{statistics.median(ratios):.2f} ×" if ratios and v != "minimap2" else ""
            lines.append(f"| {v} | " + " | ".join(cells) + f" | {statistics.median(runs.values()):.3f} | {ratio} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("times")
    parser.add_argument("--se", default="single-end reads")
    parser.add_argument("--pe", default="pairs")
    parser.add_argument("--pe20", default="pairs (as many reads as the single-end input)")
    args = parser.parse_args()
    print(summary(read_times(args.times), {"se": args.se, "pe": args.pe, "pe20": args.pe20}))


if __name__ == "__main__":
    main()
