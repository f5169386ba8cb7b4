#!/usr/bin/env python3
"""Would the banded DP gain from the device? The pipeline's own DP pairs, aligned by the C kernel
on one core and by the same recurrence written in JAX (lax.scan over read rows, every pair and
band slot of a row at once) on JAX's default device, checked equal bit for bit (scores, ends and
the whole trace).

    python benchmarks/dp_device.py benchmarks/work/genome.fa benchmarks/work/reads.fq [--reads 20000]

The pairs are those `align --no-neural` sends to the DP (the ungapped screen has settled the
rest), recorded from `pipeline.banded_align`'s calls. Prints pairs/s of the C kernel on one core
and of JAX per call size, with and without bringing the trace back to the host (the traceback
needs it: rows x band x 2 bytes a pair), and the trace's bytes per batch of 4,000 reads. On a GPU
machine `gpu_lease.sh` row `dp` runs it. This measures; `align` keeps the C kernel
(README, "Threads, speed and memory").
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from neuromap import __version__, pipeline  # noqa: E402
from neuromap.align import NEG, Scoring, banded_align  # noqa: E402
from neuromap.index import open_index  # noqa: E402
from neuromap.io.fastx import fastq_batches, parse_raw_batch  # noqa: E402


def record_dp_pairs(genome: str, reads: str, n_reads: int, batch_size: int = 4000) -> list[tuple]:
    """(query, qlen, target) of every DP call `map_batch` makes on the first n_reads reads."""
    calls: list[tuple] = []
    real = pipeline.banded_align

    def recording(query, qlen, target, margin, sc):
        calls.append((query.copy(), qlen.copy(), target.copy()))
        return real(query, qlen, target, margin, sc)

    index = open_index(genome)
    opts = pipeline.AlignOptions(neural=False)
    pipeline.banded_align = recording
    try:
        for raw in itertools.islice(fastq_batches(reads, batch_size), -(-n_reads // batch_size)):
            pipeline.map_batch(parse_raw_batch(raw), index, opts)
    finally:
        pipeline.banded_align = real
    return calls


def jax_dp(margin: int, sc: Scoring):
    """The DP of neuromap/_kernels.c (nm_dp) in JAX: (q_t (rows, n) uint8, t_t (rows + band - 1, n)
    uint8, qlen (n,) int32) -> (best, best_row, best_slot, trace (rows, band, n) uint16)."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    band = 2 * margin + 1
    mt, mm, amb, off = sc.match, -sc.mismatch, -sc.ambiguous, -sc.off_contig
    oe, e, clip = sc.gap_open + sc.gap_extend, sc.gap_extend, sc.clip
    slot = jnp.arange(band, dtype=jnp.int32)[:, None]  # (band, 1)
    eb = e * slot

    @jax.jit
    def run(q_t, t_t, qlen):
        rows, n = q_t.shape
        q_t = q_t.astype(jnp.int32)
        t_t = t_t.astype(jnp.int32)
        last = qlen.astype(jnp.int32) - 1
        sentinel_h = jnp.full((1, n), NEG + oe, jnp.int32)  # an insertion from past the band scores NEG
        sentinel_f = jnp.full((1, n), NEG + e, jnp.int32)
        h_init = jnp.concatenate([jnp.full((band, n), NEG, jnp.int32), sentinel_h])
        f_init = jnp.concatenate([jnp.full((band, n), NEG, jnp.int32), sentinel_f])
        none = jnp.full((1, n), NEG * 64, jnp.int32)

        def row(carry, i):
            h_prev, f_prev, best, best_row, best_slot = carry
            x = lax.dynamic_index_in_dim(q_t, i, keepdims=True)  # (1, n)
            y = lax.dynamic_slice_in_dim(t_t, i, band, axis=0)  # (band, n)
            s = jnp.where((x == y) & (x < 4), mt, mm)
            s = jnp.where((x == 4) | (y == 4), amb, s)
            s = jnp.where(y == 5, off, s)
            cont = h_prev[:band] + s
            start = s - jnp.where(i == 0, 0, clip)
            up_h = h_prev[1:] - oe
            up_f = f_prev[1:] - e
            f = jnp.maximum(up_h, up_f)
            h0 = jnp.maximum(jnp.maximum(cont, start), f)
            src = jnp.where(h0 == cont, 0, jnp.where(h0 == start, 1, 2))
            # The best deletion source among the earlier slots: a running max of keys that carry
            # the slot in their low 6 bits, exclusive of this slot.
            run_key = jnp.concatenate([none, lax.cummax((h0 + eb) * 64 | slot, axis=0)[:-1]])
            e_cur = (run_key >> 6) - oe + e - eb
            from_e = e_cur > h0
            h = jnp.maximum(e_cur, h0)
            trace = (src | jnp.where(from_e, 4, 0) | jnp.where(up_f > up_h, 8, 0) | ((slot - (run_key & 63)) << 8)).astype(jnp.uint16)
            row_key = jnp.max(h * 64 | (63 - slot), axis=0)
            end_score = (row_key >> 6) - jnp.where(i < last, clip, 0)
            better = (i <= last) & (end_score > best)
            best = jnp.where(better, end_score, best)
            best_row = jnp.where(better, i, best_row)
            best_slot = jnp.where(better, 63 - (row_key & 63), best_slot)
            return (jnp.concatenate([h, sentinel_h]), jnp.concatenate([f, sentinel_f]), best, best_row, best_slot), trace

        zeros = jnp.zeros(n, jnp.int32)
        (_, _, best, best_row, best_slot), trace = lax.scan(row, (h_init, f_init, jnp.full(n, NEG, jnp.int32), zeros, zeros),
                                                           jnp.arange(rows, dtype=jnp.int32))
        return best, best_row, best_slot, trace

    return run


def as_inputs(query, qlen, target, margin, n):
    """The first n pairs, padded to n by repeating (a fixed shape per call size), transposed as nm_dp takes them."""
    rows = query.shape[1]
    band = 2 * margin + 1
    take = np.resize(np.arange(len(qlen)), n)
    return (np.ascontiguousarray(query[take].T), np.ascontiguousarray(target[take, : rows + band - 1].T),
            qlen[take].astype(np.int32))


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("genome")
    ap.add_argument("reads")
    ap.add_argument("--reads", dest="n_reads", type=int, default=20000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 2048, 8192], help="pairs per JAX call")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import jax

    opts = pipeline.AlignOptions()
    margin, sc = opts.margin, opts.scoring
    calls = record_dp_pairs(args.genome, args.reads, args.n_reads)
    # One array of every recorded pair, at the widest read of the calls (the DP is exact with
    # padding: a pair's rows past its length do not change its result).
    rows = max(q.shape[1] for q, _, _ in calls)
    band = 2 * margin + 1
    query = np.concatenate([np.pad(q, ((0, 0), (0, rows - q.shape[1])), constant_values=4) for q, _, _ in calls])
    target = np.concatenate([np.pad(t[:, : q.shape[1] + band - 1], ((0, 0), (0, rows - q.shape[1])), constant_values=5)
                             for q, _, t in calls])
    qlen = np.concatenate([ql for _, ql, _ in calls]).astype(np.int64)
    n_total = len(qlen)

    c_seconds = best_of(args.repeats, lambda: [banded_align(q, ql, t, margin, sc) for q, ql, t in calls])
    run = jax_dp(margin, sc)
    device = jax.devices()[0]
    print(f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores, {platform.platform()}; "
          f"neuromap {__version__}, Python {platform.python_version()}, JAX {jax.__version__} on {device.device_kind} ({device.platform})")
    print(f"- {n_total:,} DP pairs from {args.n_reads:,} reads of {args.reads} ({n_total / args.n_reads * 4000:,.0f} per batch of 4,000 reads; "
          f"trace {rows * band * 2:,} bytes a pair, {n_total / args.n_reads * 4000 * rows * band * 2 / 1e6:.1f} MB a batch); "
          f"best of {args.repeats}")
    print()
    print("| DP | pairs per call | pairs/s | same as the C kernel |")
    print("|---|---|---|---|")
    print(f"| C kernel (nm_dp), one core, as `align` calls it | {opts.pair_chunk} | {n_total / c_seconds:,.0f} | |")
    for n in args.sizes:
        q_t, t_t, ql = as_inputs(query, qlen, target, margin, n)
        expect = banded_align(q_t.T, ql.astype(np.int64), t_t.T, margin, sc)
        dq, dt, dl = jax.device_put(q_t), jax.device_put(t_t), jax.device_put(ql)
        got = [np.asarray(a) for a in run(dq, dt, dl)]
        same = (np.array_equal(got[0], expect.score) and np.array_equal(got[1], expect.end_row)
                and np.array_equal(got[2], expect.end_slot) and np.array_equal(got[3], expect.trace))
        on_device = best_of(args.repeats, lambda: jax.block_until_ready(run(dq, dt, dl)))
        with_copies = best_of(args.repeats, lambda: [np.asarray(a) for a in run(jax.device_put(q_t), jax.device_put(t_t), jax.device_put(ql))])
        print(f"| JAX on {device.platform}, inputs and outputs left on the device | {n:,} | {n / on_device:,.0f} | {'yes' if same else 'NO'} |")
        print(f"| JAX on {device.platform}, inputs sent and the trace brought back | {n:,} | {n / with_copies:,.0f} | |")


if __name__ == "__main__":
    main()
