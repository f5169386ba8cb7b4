#!/usr/bin/env python3
"""Where `neuromap align`'s start-up goes: the fixed cost that a small input pays in full.

    python benchmarks/startup.py GENOME.fa READS.fq [--threads 16]

Each measurement is a fresh process (so Python, JAX and the device start from nothing, as in a
real run; the files are in the page cache):
  1. in one process, step by step: import JAX, start the device (jax.devices()), load the model
     (weights, calibration), map a first batch of 4,000 reads with the network (its compilations,
     or their retrieval from the persistent compilation cache), then a second batch (warm), with
     the compilation time JAX reports; with a cold and then a warm compilation cache;
  2. end to end: `neuromap align` on one read and on one batch (4,000 reads), with the network
     and with --no-neural, in threads and in --processes, beside minimap2 on the same reads.
Run after bench_se.py, on its work/genome.fa and work/reads.fq.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from bench_se import compile_package  # noqa: E402

STEPS = r"""
import json, sys, time
t0 = time.perf_counter()
marks = {}
compile_secs = {}
import jax
marks["import jax"] = time.perf_counter()
from jax import monitoring
def listen(event, duration, **_):
    if "compil" in event or "cache" in event:
        compile_secs[event] = compile_secs.get(event, 0.0) + duration
monitoring.register_event_duration_secs_listener(listen)
jax.devices()
marks["start the device (jax.devices())"] = time.perf_counter()
from neuromap.index import open_index
from neuromap.io.fastx import fastq_batches, parse_raw_batch
from neuromap.io.sam import format_sam
from neuromap.model import load_model
from neuromap.pipeline import AlignOptions, map_batch
marks["import neuromap"] = time.perf_counter()
load_model(None)
marks["load the model (weights, calibration)"] = time.perf_counter()
index = open_index(sys.argv[1])
marks["open the index"] = time.perf_counter()
opts = AlignOptions(neural=True)
batches = fastq_batches(sys.argv[2], opts.batch_size)
for label in ("first batch of 4,000 reads (compiles)", "second batch (warm)"):
    raw = next(batches, None)
    if raw is None:  # fewer than 8,000 reads (gpu_lease.sh's SMALL=1 check)
        break
    batch = parse_raw_batch(raw)
    format_sam(batch, map_batch(batch, index, opts), index, None)
    marks[label] = time.perf_counter()
previous, steps = t0, []
for name, t in marks.items():
    steps.append((name, t - previous))
    previous = t
print(json.dumps({"steps": steps, "compile": compile_secs}))
"""


def timed(cmd: list[str], env: dict | None = None, stdout=subprocess.DEVNULL) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=stdout, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start, (done.stdout or "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("genome")
    ap.add_argument("reads")
    ap.add_argument("--threads", type=int, default=16)
    args = ap.parse_args()
    compile_package()
    import jax

    from neuromap import __version__

    subprocess.run([sys.executable, "-m", "neuromap", "index", args.genome], check=True, capture_output=True)
    work = tempfile.mkdtemp(prefix="neuromap-startup-")
    one, batch = os.path.join(work, "one.fq"), os.path.join(work, "batch.fq")
    with open(args.reads) as src, open(one, "w") as a, open(batch, "w") as b:
        for i, line in enumerate(src):
            if i >= 16000:
                break
            b.write(line)
            if i < 4:
                a.write(line)
    print("# Start-up of `neuromap align`\n")
    print(f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores, {platform.platform()}")
    print(f"- neuromap {__version__}, Python {platform.python_version()}, JAX {jax.__version__} on {jax.default_backend()}")
    print(f"- command: python benchmarks/startup.py {' '.join(sys.argv[1:])}\n")

    print("## One process, step by step (seconds)\n")
    cache = os.path.join(work, "jax-cache")
    runs = {}
    for label in ("cold compilation cache", "warm compilation cache"):
        _, out = timed([sys.executable, "-c", STEPS, args.genome, args.reads], env={"NEUROMAP_JAX_CACHE": cache},
                       stdout=subprocess.PIPE)
        runs[label] = json.loads(out.strip().splitlines()[-1])
    names = [name for name, _ in runs["cold compilation cache"]["steps"]]
    print("| step | " + " | ".join(runs) + " |\n|---|" + "---|" * len(runs))
    for k, name in enumerate(names):
        print(f"| {name} | " + " | ".join(f"{r['steps'][k][1]:.2f}" for r in runs.values()) + " |")
    print("| **total** | " + " | ".join(f"**{sum(s for _, s in r['steps']):.2f}**" for r in runs.values()) + " |")
    print("\nJAX's own compilation events (seconds, summed):\n")
    events = sorted({e for r in runs.values() for e in r["compile"]})
    print("| event | " + " | ".join(runs) + " |\n|---|" + "---|" * len(runs))
    for e in events:
        print(f"| {e} | " + " | ".join(f"{r['compile'].get(e, 0.0):.3f}" for r in runs.values()) + " |")

    print(f"\n## End to end, -t {args.threads} (wall seconds; the compilation cache warm)\n")
    t = str(args.threads)
    align = [sys.executable, "-m", "neuromap", "align", "-t", t, "--quiet"]
    tools = {
        "python -c pass": lambda fq: [sys.executable, "-c", "pass"],
        "neuromap (network)": lambda fq: [*align, "--no-processes", args.genome, fq],
        "neuromap (network), --processes": lambda fq: [*align, "--processes", args.genome, fq],
        "neuromap --no-neural": lambda fq: [*align, "--no-neural", "--no-processes", args.genome, fq],
        "neuromap --no-neural, --processes": lambda fq: [*align, "--no-neural", "--processes", args.genome, fq],
        "minimap2 -x sr": lambda fq: ["minimap2", "-ax", "sr", "-t", t, args.genome, fq],
    }
    env = {"NEUROMAP_JAX_CACHE": cache}
    print("| command | 1 read | 4,000 reads |\n|---|---|---|")
    for name, cmd in tools.items():
        cells = []
        for fq in (one, batch):
            timed(cmd(fq), env)  # the files and the cache warm
            cells.append(timed(cmd(fq), env)[0])
        print(f"| {name} | {cells[0]:.2f} | {cells[1]:.2f} |")


if __name__ == "__main__":
    main()
