#!/usr/bin/env python3
"""What map_pairs spends on each mate's P(correct) from its own placements: single_p over every
mate of a batch (before the eighteenth session) against only the mates whose partner has no
placement (pipeline.mates_alone_p, which choose_pairs reads), in turn on real batches of pairs,
without and with the network (the placements scored once, outside the timing).

    python benchmarks/pairs_p_alone.py [GENOME R1 R2] [--batches 4] [--repeats 15]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from neuromap import __version__  # noqa: E402
from neuromap.index import open_index  # noqa: E402
from neuromap.io.fastx import fastq_pair_batches  # noqa: E402
from neuromap.pairing import add_rescued  # noqa: E402
from neuromap.pipeline import (AlignOptions, _parse, find_candidates, insert_from_seeds, mates_alone_p, partner_unplaced,  # noqa: E402
                               place, single_p)


def main() -> None:
    work = os.path.join(HERE, "work")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("genome", nargs="?", default=os.path.join(work, "genome.fa"))
    ap.add_argument("r1", nargs="?", default=os.path.join(work, "r1.fq"))
    ap.add_argument("r2", nargs="?", default=os.path.join(work, "r2.fq"))
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    index = open_index(args.genome)
    print(f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores, {platform.platform()}; "
          f"neuromap {__version__}, Python {platform.python_version()}, numpy {np.__version__}\n")
    print("| placements | mates a batch | mates whose partner has no placement | every mate (ms a batch) | those alone (ms a batch) |")
    print("|---|---|---|---|---|")
    for neural in (False, True):
        opts = AlignOptions(neural=neural, paired=True)
        raws = list(itertools.islice(fastq_pair_batches(args.r1, args.r2, opts.batch_size // 2), args.batches))
        model, _ = insert_from_seeds(_parse(raws[0], True), index, opts, np.zeros(0, np.int64))
        placements = []
        for raw in raws:
            batch = _parse(raw, True)
            cands = find_candidates(batch.codes, batch.lengths, index, opts.seed)
            placements.append(place(batch, index, opts, add_rescued(cands, batch.codes, batch.lengths, len(batch) // 2, index, model)))
        ways = {"every": lambda pl: single_p(pl, opts), "alone": lambda pl: mates_alone_p(pl, opts)}
        times: dict = {name: [] for name in ways}
        for _ in range(args.repeats + 1):  # the first round warms up, untimed
            for name, way in ways.items():
                start = time.perf_counter()
                for pl in placements:
                    way(pl)
                times[name].append((time.perf_counter() - start) / len(placements) * 1e3)
        alone = np.mean([partner_unplaced(pl).mean() for pl in placements])
        mates = np.mean([len(pl.chosen) for pl in placements])
        print(f"| {'network' if neural else 'seeds + DP'} | {mates:,.0f} | {alone:.2%} | {np.median(times['every'][1:]):.2f} | "
              f"{np.median(times['alone'][1:]):.2f} |")


if __name__ == "__main__":
    main()
