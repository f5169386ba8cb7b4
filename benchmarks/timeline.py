"""Where a run of `neuromap align --processes` waits: reads the timeline that NEUROMAP_TRACE=PREFIX
makes the run write (neuromap/trace.py: one file per process, PREFIX.PID) and prints, in seconds
from the start of `align`,
- when each milestone first happened (the network's process started, JAX imported, the weights on
  the device, the model loaded, the first call answered; the first worker started, its first
  batch begun and ended; the first SAM written; the output committed);
- per worker process: batches, and its time computing, waiting for the network's process, and idle
  (between batches, waiting for the next);
- the network's process: calls answered, the time they took (first and the rest), and how many
  were in flight at once;
- a strip chart, per slice of the run: how many workers were computing (C), waiting for the
  network (W), or idle (.).

    NEUROMAP_TRACE=/tmp/tl neuromap align --processes -t 16 ref.fa reads.fq > out.sam
    python benchmarks/timeline.py /tmp/tl
"""

from __future__ import annotations

import argparse
import glob
from collections import defaultdict


def load(prefix: str):
    events = []
    for path in glob.glob(prefix + ".*"):
        with open(path) as fh:
            for line in fh:
                parts = line.rstrip("\n").split("\t")
                if len(parts) == 5:
                    t, pid, tid, name, detail = parts
                    events.append((float(t), int(pid), int(tid), name, detail))
    events.sort()
    return events


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prefix")
    ap.add_argument("--slices", type=int, default=40, help="columns of the strip chart")
    args = ap.parse_args()
    events = load(args.prefix)
    if not events:
        raise SystemExit(f"no trace files {args.prefix}.*")
    start = min(t for t, _, _, name, _ in events if name == "align") if any(e[3] == "align" for e in events) else events[0][0]
    end = max(t for t, *_ in events)
    first: dict[str, float] = {}
    for t, _, _, name, detail in events:
        key = name if name not in ("ask", "answered", "serve") else f"{name} {'info' if detail == 'info' else 'call'}"
        first.setdefault(key, t - start)
    print(f"# Timeline of {args.prefix}.* ({len(glob.glob(args.prefix + '.*'))} processes, {end - start:.2f} s)\n")
    print("| milestone (first time) | s |\n|---|---|")
    for key in ("align", "start-model-process", "model-process", "load-model", "jax-imported", "device-started-early", "params-on-device", "executable-loaded", "executable-kept",
                "executable-unusable", "model-loaded", "worker",
                "batch", "ask info", "answered info", "ask call", "serve call", "answered call", "batch-done", "submit",
                "written", "all-written", "workers-ended", "model-process-ended", "committed", "exit"):
        if key in first:
            print(f"| {key} | {first[key]:.3f} |")
    # Workers: intervals computing (batch .. batch-done, less model waits) and waiting on the model.
    by_pid = defaultdict(list)
    for e in events:
        by_pid[e[1]].append(e)
    workers = {pid: evs for pid, evs in by_pid.items() if any(e[3] == "worker" for e in evs)}
    states = []  # (t0, t1, pid, state)
    print("\n| worker | batches | computing s | waiting for the network s | idle s (from its start) |\n|---|---|---|---|---|")
    totals = [0, 0.0, 0.0, 0.0]
    for pid, evs in sorted(workers.items()):
        t_start = evs[0][0]
        last = t_start
        state = "idle"
        acc = defaultdict(float)
        batches = 0
        for t, _, _, name, _ in evs:
            new = {"batch": "compute", "ask": "wait", "answered": "compute", "batch-done": "idle"}.get(name)
            if new is None:
                continue
            acc[state] += t - last
            states.append((last, t, pid, state))
            last, state = t, new
            batches += name == "batch"
        acc[state] += end - last
        states.append((last, end, pid, state))
        print(f"| {pid} | {batches} | {acc['compute']:.2f} | {acc['wait']:.2f} | {acc['idle']:.2f} |")
        totals[0] += batches
        for i, k in enumerate(("compute", "wait", "idle")):
            totals[i + 1] += acc[k]
    print(f"| all | {totals[0]} | {totals[1]:.2f} | {totals[2]:.2f} | {totals[3]:.2f} |")
    # The network's process.
    serve = [(t, tid, name, d) for t, pid, tid, name, d in events if name in ("serve", "served")]
    if serve:
        open_at: dict[int, float] = {}
        durations = []
        kinds = {}
        for t, tid, name, d in serve:
            if name == "serve":
                open_at[tid] = t
                kinds[tid] = d
            elif tid in open_at:
                if kinds[tid] != "info":
                    durations.append((open_at[tid] - start, t - open_at.pop(tid)))
                else:
                    open_at.pop(tid)
        durations.sort()
        if durations:
            rest = [d for _, d in durations[1:]]
            print(f"\nnetwork's process: {len(durations)} calls; the first asked at {durations[0][0]:.3f} s took {durations[0][1]:.3f} s; "
                  f"the rest {sum(rest):.2f} s in all, mean {sum(rest) / max(1, len(rest)) * 1000:.1f} ms, "
                  f"longest {max(rest, default=0) * 1000:.1f} ms")
            for label, lo, hi in (("first 10", 0, 10), ("next 40", 10, 50), ("after", 50, None)):
                part = durations[lo:hi]
                if part:
                    print(f"  calls {label}: from {part[0][0]:.2f} s, mean {sum(d for _, d in part) / len(part) * 1000:.1f} ms")
    # The end: from the last batch done to the command's exit (what benchmarks/end_phase.py times).
    last: dict[str, float] = {}
    for t, _, _, name, _ in events:
        last[name] = max(last.get(name, t), t)
    if "batch-done" in last:
        done = last["batch-done"]
        steps = [f"{name} +{(last[name] - done) * 1000:.0f} ms" for name in
                 ("all-written", "workers-ended", "model-process-ended", "committed", "exit") if name in last]
        print(f"\nend: the last batch done at {done - start:.3f} s; then " + ", ".join(steps))
    # Strip chart.
    n = args.slices
    width = (end - start) / n
    print(f"\nworkers per slice of {width:.3f} s: C computing, W waiting for the network, . idle (a column per slice, rows = workers)\n")
    print("```")
    for pid in sorted(workers):
        row = []
        for i in range(n):
            a, b = start + i * width, start + (i + 1) * width
            share = defaultdict(float)
            for t0, t1, p, st in states:
                if p == pid and t1 > a and t0 < b:
                    share[st] += min(t1, b) - max(t0, a)
            if not share:
                row.append(" ")
            else:
                st = max(share, key=share.get)
                row.append({"compute": "C", "wait": "W", "idle": "."}[st])
        print("".join(row))
    print("```")


if __name__ == "__main__":
    main()
