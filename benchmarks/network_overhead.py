"""What the network costs a worker beyond the model's calls: one process maps the same batches
with `--no-neural` and with the network, the network's calls made once and then replayed (their
recorded answers returned in the same order), so the second run times everything a worker does
around the network (choosing the pairs, the evidence, the choice, P(correct)) without the
network's own arithmetic. On a GPU machine a worker sends those calls to the network's process;
here the answers come from memory. Prints CPU ms of one process per batch, best of --repeats.

    python benchmarks/network_overhead.py benchmarks/work/genome.fa benchmarks/work/reads.fq
    python benchmarks/network_overhead.py benchmarks/work/genome.fa benchmarks/work/r1.fq benchmarks/work/r2.fq

With MATES: pairs, 2,000 a batch (4,000 mates), mapped as a worker of `align` maps them, with the
insert size estimated from the first batch's seeds.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("genome")
    ap.add_argument("reads")
    ap.add_argument("mates", nargs="?", help="mate 2 of each pair in READS: map pairs")
    ap.add_argument("--batches", type=int, default=20, help="batches of 4,000 reads")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()

    import numpy as np

    from neuromap import __version__, model
    from neuromap.index import open_index
    from neuromap.io.fastx import fastq_batches, fastq_pair_batches
    from neuromap.pipeline import AlignOptions, _parse, _work, insert_from_seeds
    from neuromap.seed import SeedParams

    index = open_index(args.genome, None)
    paired = args.mates is not None
    network = AlignOptions(seed=SeedParams(), neural=True, threads=1, paired=paired)
    plain = AlignOptions(seed=SeedParams(), neural=False, threads=1, paired=paired)
    if paired:
        batches = [b for _, b in zip(range(args.batches), fastq_pair_batches(args.reads, args.mates, 2000))]
        insert, _ = insert_from_seeds(_parse(batches[0], True), index, plain, np.zeros(0, np.int64))
        extra: tuple = (insert,)
    else:
        batches = [b for _, b in zip(range(args.batches), fastq_batches(args.reads, 4000))]
        extra = ()
    real_call = model._model_call
    answers: list = []
    spent = [0.0]

    def record(*a, **k):
        t = time.perf_counter()
        answers.append(real_call(*a, **k))
        spent[0] += time.perf_counter() - t
        return answers[-1]

    model._model_call = record
    start = time.perf_counter()
    first = [_work(b, index, network, *extra)[0] for b in batches]
    with_calls = time.perf_counter() - start
    replay = iter(())

    def replayed(*a, **k):
        return next(replay)

    model._model_call = replayed

    def one_pass(opts) -> float:
        nonlocal replay
        replay = iter(answers)
        t = time.process_time()  # CPU time: on a shared machine steadier than the wall clock
        for b in batches:
            _work(b, index, opts, *extra)
        return time.process_time() - t

    replay = iter(answers)
    assert [_work(b, index, network, *extra)[0] for b in batches] == first  # the replay gives the same SAM
    best = {"--no-neural": float("inf"), "network, its calls replayed": float("inf")}
    for _ in range(args.repeats):  # the two in turn, so that a slow spell of the machine hits both
        best["--no-neural"] = min(best["--no-neural"], one_pass(plain))
        best["network, its calls replayed"] = min(best["network, its calls replayed"], one_pass(network))
    # Where a batch's CPU falls around its model calls: before the first (what a worker parks a
    # batch with, pipeline.Parking) and after the last (what is left once the network answers).
    marks: list[float] = []

    def marked(*a, **k):
        marks.append(time.process_time())
        return next(replay)

    model._model_call = marked
    before, after = [], []
    for _ in range(args.repeats):
        replay = iter(answers)
        for b in batches:
            marks.clear()
            t = time.process_time()
            _work(b, index, network, *extra)
            if marks:
                before.append(marks[0] - t)
                after.append(time.process_time() - marks[-1])
    rows = [(name, seconds / len(batches) * 1000) for name, seconds in best.items()]
    n = len(batches)
    print(f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores, {platform.platform()}; "
          f"neuromap {__version__}, Python {platform.python_version()}, numpy {np.__version__}")
    what = f"4,000 mates of {args.reads} and {args.mates}" if paired else f"4,000 reads of {args.reads}"
    print(f"- {n} batches of {what}; {len(answers)} model calls "
          f"({spent[0] / n * 1000:.1f} ms a batch on {model.model_device()} when made, {with_calls / n * 1000:.1f} ms a batch in all)")
    print()
    print("| one process maps | CPU ms per batch (best of %d) |" % args.repeats)
    print("|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} |")
    if before:
        import statistics

        print(f"\nWith the network, a batch's CPU before its first model call: {statistics.median(before) * 1000:.1f} ms, "
              f"after its last: {statistics.median(after) * 1000:.1f} ms (medians over the batches of every repeat)")


if __name__ == "__main__":
    main()
