#!/usr/bin/env python3
"""Round trips of a model call's messages between two processes, on an idle machine and with every
core busy: what a worker of `align --processes` waits beyond the network's own time.

    python benchmarks/pipe_latency.py [--calls 300] [--pairs 150] [--width 192]

A "worker" process computes for 5 ms, then sends a call and waits for the answer, --calls times;
a thread of a "network" process answers at once (no device time). The messages are those of
model.RemoteModel: the call's codes (pairs x 160 bytes), lengths and windows (pairs x width
bytes) pickled through a multiprocessing pipe, and the scores back (pairs x width float32);
beside them the same arrays through shared memory with only a short message through the pipe, and
a message of a few bytes. "Busy": as many processes as cores spin meanwhile, as the 16 workers of
`align --processes -t 16` keep a 16-core machine busy. Prints the median, 90th percentile and mean
round trip in ms. (On the 2-core workstation, a Firecracker VM: a few bytes took 0.4-0.6 ms, the
call's arrays 0.7-1.6 ms on average with a 90th percentile of 2.4-6 ms under load, 0.7 ms through
shared memory: benchmarks/README.md.)
"""

from __future__ import annotations

import argparse
import mmap
import multiprocessing as mp
import os
import platform
import statistics
import sys
import threading
import time
from multiprocessing.connection import Pipe

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_se import machine_lines  # noqa: E402

READ_WIDTH = 160


def spin() -> None:
    while True:
        pass


def answer(conn, mode: str, buf, pairs: int, width: int) -> None:
    scores = np.zeros((pairs, width), np.float32)
    request = pairs * (READ_WIDTH + 8 + width)
    while True:
        try:
            conn.recv()
        except EOFError:
            return
        if mode == "pipe":
            conn.send(scores)
        elif mode == "shared memory":
            np.frombuffer(buf, np.uint8, request).copy()  # the call's arrays, read
            np.frombuffer(buf, np.float32, pairs * width, offset=request)[:] = scores.ravel()
            conn.send(("answered", scores.shape))
        else:
            conn.send(b"ok")


def ask(conn, mode: str, buf, pairs: int, width: int, calls: int, out) -> None:
    codes, lengths, windows = np.zeros((pairs, READ_WIDTH), np.uint8), np.zeros(pairs, np.int64), np.zeros((pairs, width), np.uint8)
    request = pairs * (READ_WIDTH + 8 + width)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        while time.perf_counter() - start < 0.005:  # the worker's own computing
            pass
        start = time.perf_counter()
        if mode == "pipe":
            conn.send(("call", codes, lengths, windows, READ_WIDTH, width))
            conn.recv()
        elif mode == "shared memory":
            view = np.frombuffer(buf, np.uint8, request)
            view[: codes.size] = codes.ravel()
            view[codes.size : codes.size + lengths.nbytes] = lengths.view(np.uint8)
            view[codes.size + lengths.nbytes :] = windows.ravel()
            conn.send(("call", codes.shape, windows.shape))
            conn.recv()
            np.frombuffer(buf, np.float32, pairs * width, offset=request).reshape(pairs, width).copy()
        else:
            conn.send(b"call")
            conn.recv()
        times.append(time.perf_counter() - start)
    out.send(times)


def measure(mode: str, busy: bool, args) -> list[float]:
    spinners = [mp.Process(target=spin, daemon=True) for _ in range(os.cpu_count() if busy else 0)]
    for proc in spinners:
        proc.start()
    time.sleep(0.2)
    buf = mmap.mmap(-1, args.pairs * (READ_WIDTH + 8 + args.width) + 4 * args.pairs * args.width)
    mine, theirs = Pipe()
    threading.Thread(target=answer, args=(mine, mode, buf, args.pairs, args.width), daemon=True).start()
    result, sender = Pipe(duplex=False)
    worker = mp.Process(target=ask, args=(theirs, mode, buf, args.pairs, args.width, args.calls, sender))
    worker.start()
    times = result.recv()
    worker.join()
    for proc in spinners:
        proc.terminate()
    for proc in spinners:
        proc.join()
    return [t * 1000 for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--pairs", type=int, default=150, help="pairs a call (a batch of 4,000 reads brings about 150)")
    ap.add_argument("--width", type=int, default=192, help="window width (150 bp reads: 192)")
    args = ap.parse_args()
    mp.set_start_method("fork")
    print("# Round trips of a model call's messages between two processes\n")
    print(machine_lines())
    print(f"- Python {platform.python_version()}, numpy {np.__version__}; {args.calls} calls of {args.pairs} pairs "
          f"(window {args.width}), 5 ms of computing before each; busy: {os.cpu_count()} processes spinning\n")
    print("| message | machine | median ms | 90th percentile ms | mean ms |")
    print("|---|---|---|---|---|")
    for busy in (False, True):
        for mode in ("a few bytes", "pipe", "shared memory"):
            times = measure(mode, busy, args)
            label = {"pipe": "the call's arrays, pickled through the pipe (as now)",
                     "shared memory": "the call's arrays through shared memory",
                     "a few bytes": "a few bytes"}[mode]
            print(f"| {label} | {'busy' if busy else 'idle'} | {statistics.median(times):.3f} | "
                  f"{np.percentile(times, 90):.3f} | {statistics.fmean(times):.3f} |", flush=True)


if __name__ == "__main__":
    main()
