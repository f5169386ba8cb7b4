#!/usr/bin/env python3
"""A compiled kernel against the numpy it replaced, on one real batch: milliseconds per call.

    python benchmarks/kernel_micro.py GENOME.fa READS.fq [--repeats 300]

Maps the first batch of 4,000 reads (seeds + DP) to get its real arrays, then times, on those
arrays, in turn: the minimizers' compaction of sketch_rows (nm_compact against np.flatnonzero,
divmod and indexing), Texts.rows on the batch's MD rows from the traceback (nm_pack_rows against
a boolean mask), the choice of one placement per read in pipeline.place (nm_choose against its
numpy) and describe's per-read bests (nm_read_bests: a placement, the runner-up's score). Checks that each gives the same arrays. Medians of `--repeats` calls, in turn in
rounds of ten, so that a busy moment of this shared machine hits both.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from bench_se import machine_lines  # noqa: E402

from neuromap import __version__, align, kernels, sketch  # noqa: E402
from neuromap.align import NEG  # noqa: E402
from neuromap.index import open_index  # noqa: E402
from neuromap.io.fastx import fastq_batches, parse_raw_batch  # noqa: E402
from neuromap.pipeline import AlignOptions, map_batch, place  # noqa: E402
from neuromap.texts import Texts  # noqa: E402
from reference_place import choose_numpy, read_bests_numpy  # noqa: E402  (the numpy the kernels replaced, kept with the tests)


def compact_numpy(selected, hashes, is_reverse):
    flat = np.flatnonzero(selected)
    row, pos = np.divmod(flat, max(selected.shape[1], 1))
    return row, pos, hashes.ravel()[flat], is_reverse.ravel()[flat]


def rows_numpy(buf, lengths):
    width = int(lengths.max()) if len(lengths) else 0
    end = np.cumsum(lengths)
    return Texts(buf[:, :width][np.arange(width)[None, :] < lengths[:, None]], end - lengths, end)


def choose_kernel(placement, slot_score, ll, min_score, one_mismatch):
    n, slots = placement.shape
    out = (np.empty((n, slots), np.bool_), np.empty(n, np.int64), np.empty((n, slots), np.bool_), np.empty(n, np.bool_))
    kernels.call("nm_choose", placement, slot_score, ll, n, slots, min_score, one_mismatch, NEG, *out)
    return out


def read_bests_kernel(valid, seeded, ll, slot_score, chosen):
    n, slots = valid.shape
    out = (np.empty(n, np.bool_), np.empty(n, np.int64))
    kernels.call("nm_read_bests", valid, seeded, ll, slot_score, chosen, n, slots, NEG, *out)
    return out


def timed_in_turn(calls: dict, repeats: int) -> dict:
    times: dict = {name: [] for name in calls}
    for _ in range(max(repeats // 10, 1)):
        for name, fn in calls.items():
            for _ in range(10):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("genome")
    ap.add_argument("reads")
    ap.add_argument("--repeats", type=int, default=300)
    args = ap.parse_args()
    index = open_index(args.genome)
    raw = next(iter(fastq_batches(args.reads, 4000)))
    batch = parse_raw_batch(raw)
    hashes, is_reverse = sketch.kmer_hashes(batch.codes, index.k)
    selected = sketch.minimizer_mask(hashes, index.w)

    md_rows: list = []  # the MD rows the traceback hands to Texts.rows, caught as it does
    rows = Texts.rows

    def catch(buf, lengths):
        md_rows.append((buf, np.asarray(lengths, dtype=np.int64)))
        return rows(buf, lengths)

    align.Texts.rows = staticmethod(catch)
    try:
        map_batch(batch, index, AlignOptions(neural=False))
    finally:
        align.Texts.rows = staticmethod(rows)
    buf, lengths = max(md_rows, key=lambda item: item[0].size)

    def compact_kernel():
        sketch.kmer_hashes, sketch.minimizer_mask = (lambda c, k: (hashes, is_reverse)), (lambda h, w: selected)
        try:
            return sketch.sketch_rows(batch.codes, index.k, index.w)
        finally:
            sketch.kmer_hashes, sketch.minimizer_mask = kmer_hashes, minimizer_mask

    opts = AlignOptions(neural=False)
    pl = place(batch, index, opts)
    choice = (np.ascontiguousarray(pl.valid), np.ascontiguousarray(pl.slot_score), np.ascontiguousarray(pl.ll), opts.min_score,
              opts.scoring.match + opts.scoring.mismatch)
    for x, y in zip(choose_kernel(*choice), choose_numpy(*choice, NEG)):
        assert np.array_equal(x, y)
    bests = (np.ascontiguousarray(pl.valid), np.ascontiguousarray(pl.cands.valid, dtype=np.bool_), np.ascontiguousarray(pl.ll),
             np.ascontiguousarray(pl.slot_score), np.ascontiguousarray(pl.chosen))
    for x, y in zip(read_bests_kernel(*bests), read_bests_numpy(*bests, NEG)):
        assert np.array_equal(x, y)
    kmer_hashes, minimizer_mask = sketch.kmer_hashes, sketch.minimizer_mask
    for x, y in zip(compact_kernel(), compact_numpy(selected, hashes, is_reverse)):
        assert np.array_equal(x, y) and x.dtype == y.dtype
    assert Texts.rows(buf, lengths).buf.tobytes() == rows_numpy(buf, lengths).buf.tobytes()
    ms = timed_in_turn({
        "compact numpy": lambda: compact_numpy(selected, hashes, is_reverse),
        "compact kernel": compact_kernel,
        "rows numpy": lambda: rows_numpy(buf, lengths),
        "rows kernel": lambda: Texts.rows(buf, lengths),
        "choice numpy": lambda: choose_numpy(*choice, NEG),
        "choice kernel": lambda: choose_kernel(*choice),
        "bests numpy": lambda: read_bests_numpy(*bests, NEG),
        "bests kernel": lambda: read_bests_kernel(*bests),
    }, args.repeats)
    print("# Kernels against the numpy they replaced, on one batch\n")
    print(machine_lines())
    print(f"- neuromap {__version__}, Python {platform.python_version()}, numpy {np.__version__}")
    print(f"- the first 4,000 reads of {args.reads}: {selected.shape[0]:,} x {selected.shape[1]:,} k-mers, "
          f"{int(selected.sum()):,} minimizers; the largest MD rows of its traceback: {buf.shape[0]:,} x {buf.shape[1]:,} bytes\n")
    print("| step | numpy ms | kernel ms | kernel / numpy |")
    print("|---|---|---|---|")
    for step in ("compact", "rows", "choice", "bests"):
        a, b = ms[f"{step} numpy"], ms[f"{step} kernel"]
        name = {"compact": "minimizers compacted (sketch_rows: nm_compact)", "rows": "MD rows packed (Texts.rows: nm_pack_rows)",
                "choice": f"one placement chosen a read, {pl.valid.shape[1]} slots (place: nm_choose)",
                "bests": f"a placement and the runner-up's score a read, {pl.valid.shape[1]} slots (describe: nm_read_bests)"}[step]
        print(f"| {name} | {a:.3f} | {b:.3f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
