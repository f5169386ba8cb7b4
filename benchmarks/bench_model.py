#!/usr/bin/env python3
"""The network alone on the device: (read, window) pairs per second, float32 against bfloat16.

    python benchmarks/bench_model.py [--reads 2048] [--buckets 1024 4096] [--repeats 20] [--dtypes float32]

Scores generated 150-bp reads against 6 windows each (the true one, near paralogs, a diverged and
a foreign one), padded as `neuromap align` pads them (read width 160, window 182 -> 192), with the shipped
weights, in calls of `bucket` pairs, as `neuromap.model` does. Prints pairs/s per precision and
bucket (after compilation and a warm-up call; median of `repeats` timed calls), and how far
bfloat16 moves what the aligner uses: each pair's log-likelihood and start, and each read's chosen
window and MAPQ (softmax of the calibrated log-likelihoods over its 6 windows).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from neuromap.model import Calibration, ExportedScorer  # noqa: E402
from neuromap.mapq import mapq_from_p  # noqa: E402
from neuromap.training_data import TrainConfig, make_examples  # noqa: E402
from neuromap.weights import SHIPPED  # noqa: E402

READ_WIDTH, WINDOW_WIDTH, WINDOWS = 160, 192, 6


def scorer(compute_dtype: str):
    """The aligner's own compiled scorer (neuromap.model.ExportedScorer), on the shipped weights in
    this precision (exported for this run only: no cache folder)."""
    return ExportedScorer(SHIPPED, compute_dtype, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=2048, help="reads (each with 6 windows)")
    ap.add_argument("--buckets", type=int, nargs="+", default=[1024, 4096], help="pairs per model call")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], help="precisions to time (the comparison needs both)")
    args = ap.parse_args()
    import jax

    cfg = TrainConfig(min_read_length=150, read_length=150, flank=16, windows_per_read=WINDOWS, near_paralog=(0.003, 0.02))
    reads, mask, windows, _ = make_examples(np.random.default_rng(2026), args.reads, cfg)
    n = args.reads * WINDOWS
    read_codes = np.full((n, READ_WIDTH), 4, np.uint8)
    read_codes[:, :150] = np.where(np.repeat(reads, WINDOWS, axis=0) < 0, 4, np.repeat(reads, WINDOWS, axis=0))
    read_mask = np.zeros((n, READ_WIDTH), np.float32)
    read_mask[:, :150] = np.repeat(mask, WINDOWS, axis=0)
    window_codes = np.full((n, WINDOW_WIDTH), 4, np.uint8)
    width = windows.shape[2]
    window_codes[:, :width] = windows.reshape(n, width)

    print("# The network alone on the device\n")
    import platform

    print(f"- device: {jax.default_backend()} ({jax.devices()[0].device_kind}); JAX {jax.__version__}; "
          f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, {platform.platform()}")
    print(f"- {args.reads:,} reads of 150 bp x {WINDOWS} windows = {n:,} pairs; read width {READ_WIDTH}, window {WINDOW_WIDTH}\n")
    print("| precision | pairs per call | pairs/s | ms per call |\n|---|---|---|---|")
    results = {}
    for dtype in args.dtypes:
        score = scorer(dtype)
        for bucket in args.buckets:
            calls = [(lo, min(lo + bucket, n)) for lo in range(0, n, bucket)]

            def run_all():
                out = []
                for lo, hi in calls:
                    rc = np.full((bucket, READ_WIDTH), 4, np.uint8)
                    rm = np.zeros((bucket, READ_WIDTH), np.float32)
                    wc = np.full((bucket, WINDOW_WIDTH), 4, np.uint8)
                    rc[: hi - lo], rm[: hi - lo], wc[: hi - lo] = read_codes[lo:hi], read_mask[lo:hi], window_codes[lo:hi]
                    out.append(np.asarray(score(rc, rm, wc))[: hi - lo, :width])
                return np.concatenate(out)

            scores = run_all()  # compile and warm up
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                run_all()
                times.append(time.perf_counter() - t0)
            sec = statistics.median(times)
            print(f"| {dtype} | {bucket} | {n / sec:,.0f} | {1000 * sec / len(calls):.2f} |")
            results[dtype] = scores.astype(np.float64)

    if not {"float32", "bfloat16"} <= set(results):
        return
    lam = Calibration.load(SHIPPED).scale

    def summarise(scores):
        peak = scores.max(axis=1, keepdims=True)
        ll = (peak[:, 0] + np.log(np.exp(scores - peak).sum(axis=1))).reshape(args.reads, WINDOWS)
        start = scores.argmax(axis=1)
        z = lam * (ll - ll.max(axis=1, keepdims=True))
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        chosen = ll.argmax(axis=1)
        return ll, start, chosen, mapq_from_p(p[np.arange(args.reads), chosen])

    ll32, start32, chosen32, q32 = summarise(results["float32"])
    ll16, start16, chosen16, q16 = summarise(results["bfloat16"])
    dq = np.abs(q32.astype(int) - q16.astype(int))
    print("\nbfloat16 against float32 (same pairs):\n")
    print(f"- log-likelihood per pair: max |difference| {np.abs(ll32 - ll16).max():.3f}, median {np.median(np.abs(ll32 - ll16)):.3f} "
          f"(calibrated scale {lam:.3f})")
    print(f"- start per pair: the same in {100 * np.mean(start32 == start16):.2f} % of pairs")
    print(f"- chosen window per read: the same in {100 * np.mean(chosen32 == chosen16):.2f} % of reads")
    print(f"- MAPQ per read: the same in {100 * np.mean(dq == 0):.2f} %, within 3 in {100 * np.mean(dq <= 3):.2f} %, max |difference| {dq.max()}")


if __name__ == "__main__":
    main()
