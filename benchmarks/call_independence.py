#!/usr/bin/env python3
"""Does a (read, window) pair's score depend on the other pairs in its model call?

    python benchmarks/call_independence.py [--bucket 1024] [--dtype float32]

neuromap's output is byte-identical whatever the threads, processes or timing because each model
call has the shape and the pairs a worker gives it (`model._model_call`). Merging the calls of
several workers into one would halve the number of calls on a GPU: a batch of 4,000 reads fills
about 430 of a call's 1,024 pairs. That is safe only if a pair's scores do not depend on the
other pairs in the call, nor on where in the call it sits. This scores the same pairs with the
shipped weights in calls of one shape, arranged four ways, and counts the pairs whose scores
differ in any bit from the first arrangement's:
- in reverse order;
- the first half of the pairs moved to the second half of the call, with other pairs before them;
- the first half alone, the rest padding (as a call of fewer pairs is padded).
It also scores the first quarter in a call a quarter the size (`model.call_size`'s smaller
shapes). Generated 150-bp reads against 6 windows each (bench_model.py's), padded as `align` pads
them.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench_model import READ_WIDTH, WINDOW_WIDTH, WINDOWS, scorer  # noqa: E402

from neuromap.training_data import TrainConfig, make_examples  # noqa: E402


def pairs(n: int, seed: int):
    """n (read, window) pairs as `align` pads them: codes (n, READ_WIDTH), mask, windows (n, WINDOW_WIDTH)."""
    cfg = TrainConfig(min_read_length=150, read_length=150, flank=16, windows_per_read=WINDOWS, near_paralog=(0.003, 0.02))
    reads, mask, windows, _ = make_examples(np.random.default_rng(seed), -(-n // WINDOWS), cfg)
    codes = np.full((n, READ_WIDTH), 4, np.uint8)
    codes[:, :150] = np.where(np.repeat(reads, WINDOWS, axis=0) < 0, 4, np.repeat(reads, WINDOWS, axis=0))[:n]
    read_mask = np.zeros((n, READ_WIDTH), np.float32)
    read_mask[:, :150] = np.repeat(mask, WINDOWS, axis=0)[:n]
    window_codes = np.full((n, WINDOW_WIDTH), 4, np.uint8)
    width = windows.shape[2]
    window_codes[:, :width] = windows.reshape(-1, width)[:n]
    return codes, read_mask, window_codes


def padded(codes, mask, windows, size: int):
    """The pairs in a call of `size` pairs, the rest padding (as model._model_call pads)."""
    n = len(codes)
    c = np.full((size, READ_WIDTH), 4, np.uint8)
    m = np.zeros((size, READ_WIDTH), np.float32)
    w = np.full((size, WINDOW_WIDTH), 4, np.uint8)
    c[:n], m[:n], w[:n] = codes, mask, windows
    return c, m, w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bucket", type=int, default=1024, help="pairs per call (1,024 on a GPU, 16 on a CPU)")
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    import jax

    b, half = args.bucket, args.bucket // 2
    codes, mask, windows = pairs(b, 2026)
    other = pairs(b, 7)
    score = scorer(args.dtype)

    def run(c, m, w):
        return np.asarray(score(c, m, w)).copy()

    base = run(codes, mask, windows)
    arrangements = {}
    rev = run(codes[::-1].copy(), mask[::-1].copy(), windows[::-1].copy())[::-1]
    arrangements["in reverse order"] = (rev, base)
    moved = run(np.concatenate([other[0][:half], codes[:half]]), np.concatenate([other[1][:half], mask[:half]]),
                np.concatenate([other[2][:half], windows[:half]]))[half:]
    arrangements["the first half moved behind other pairs"] = (moved, base[:half])
    alone = run(*padded(codes[:half], mask[:half], windows[:half], b))[:half]
    arrangements["the first half alone, the rest padding"] = (alone, base[:half])
    quarter = b // 4
    if quarter >= 1:
        small = run(*padded(codes[:quarter], mask[:quarter], windows[:quarter], quarter))
        arrangements[f"the first quarter in a call of {quarter} pairs"] = (small, base[:quarter])

    print("# Does a pair's score depend on the other pairs in its model call?\n")
    print(f"- device: {jax.default_backend()} ({jax.devices()[0].device_kind}); JAX {jax.__version__}; "
          f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, {platform.platform()}")
    print(f"- calls of {b} pairs ({args.dtype}), read width {READ_WIDTH}, window {WINDOW_WIDTH}; shipped weights\n")
    print("| arrangement | pairs | pairs whose scores differ in any bit | largest difference | starts (argmax) that differ |")
    print("|---|---|---|---|---|")
    for name, (got, want) in arrangements.items():
        differ = (got.view(np.uint32) != want.view(np.uint32)).any(axis=1)
        largest = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max())
        starts = int((got.argmax(axis=1) != want.argmax(axis=1)).sum())
        print(f"| {name} | {len(want)} | {int(differ.sum())} | {largest:.3g} | {starts} |")


if __name__ == "__main__":
    main()
