#!/usr/bin/env python3
"""The Snakemake workflow (workflows/Snakefile) with and without `--server auto`, in turn.

    python benchmarks/bench_workflow.py [--workdir benchmarks/work] [--reads 40000] [--pairs 20000]
                                        [--scatter 4] [--threads 1] [--cores 2] [--repeats 2]

Two samples from bench_se.py's and bench_pe.py's data in --workdir (the first --reads single-end
reads, the first --pairs pairs), each scattered into --scatter chunks, so the workflow runs
2 x scatter alignment jobs of --threads each, --cores at a time. Each job loads the network itself,
or (`extra: --server auto`) the first starts this user's server and the others use it. Prints the
workflow's wall seconds (median of --repeats, the two ways in turn, a fresh output folder each
time, the index built beforehand) beside minimap2 -x sr mapping the same two samples at -t
--cores (each run indexing the FASTA, as minimap2 does when given one), and whether the BAMs hold
the same records both ways.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from bench_se import all_pids, cmdline, compile_package, head_fastq, machine_lines  # noqa: E402

from neuromap import __version__  # noqa: E402


def records(path: str) -> list:
    import pysam

    with pysam.AlignmentFile(path) as bam:
        return sorted((r.query_name, r.flag, r.reference_name, r.reference_start, r.cigarstring, r.mapping_quality) for r in bam)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=os.path.join(HERE, "work"))
    ap.add_argument("--reads", type=int, default=40000)
    ap.add_argument("--pairs", type=int, default=20000)
    ap.add_argument("--scatter", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    import yaml

    compile_package()
    snakemake = shutil.which("snakemake") or os.path.join(os.path.dirname(sys.executable), "snakemake")
    tmp = tempfile.mkdtemp(prefix="nmwf-", dir="/tmp")  # short: the auto server's socket lives under it
    runtime = os.path.join(tmp, "rt")
    os.mkdir(runtime, 0o700)
    w = lambda name: os.path.join(args.workdir, name)  # noqa: E731
    samples = {"se": [head_fastq(w("reads.fq"), args.reads, os.path.join(tmp, "se.fq"))],
               "pe": [head_fastq(w("r1.fq"), args.pairs, os.path.join(tmp, "r1.fq")),
                      head_fastq(w("r2.fq"), args.pairs, os.path.join(tmp, "r2.fq"))]}
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"], XDG_RUNTIME_DIR=runtime,
               NEUROMAP_SERVER_IDLE_EXIT="600")
    env.pop("NEUROMAP_SERVER", None)
    ways = {"each job loads the network": "", "--server auto": "--server auto"}
    walls: dict = {name: [] for name in ways}

    def run(name: str, extra: str, round_: int) -> str:
        out = os.path.join(tmp, f"out-{round_}-{'server' if extra else 'alone'}")
        config = {"reference": w("genome.fa"), "samples": samples, "outdir": out, "scatter": args.scatter, "threads": args.threads,
                  "extra": extra}
        cfg = os.path.join(tmp, "cfg.yaml")
        with open(cfg, "w") as fh:
            yaml.safe_dump(config, fh)
        # The index first, outside the timing (both ways share it: copied into each output folder).
        index = os.path.join(tmp, "index", "reference.nmi")
        if not os.path.exists(index):
            os.makedirs(os.path.dirname(index), exist_ok=True)
            subprocess.run([sys.executable, "-m", "neuromap", "index", w("genome.fa"), "-o", index[: -len(".nmi")]], check=True,
                           stderr=subprocess.DEVNULL)
        os.makedirs(os.path.join(out, "index"))
        shutil.copytree(index, os.path.join(out, "index", "reference.nmi"))
        cmd = [snakemake, "-s", os.path.join(ROOT, "workflows", "Snakefile"), "--configfile", cfg, "--cores", str(args.cores), "-q",
               "--directory", tmp]
        started = time.perf_counter()
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        walls[name].append(time.perf_counter() - started)
        if res.returncode != 0:
            sys.exit(f"snakemake failed ({name}):\n{res.stdout}{res.stderr}")
        return out

    minimap2 = f"minimap2 -a -x sr -t {args.cores}, each sample"
    walls[minimap2] = []

    def run_minimap2() -> None:
        started = time.perf_counter()
        for files in samples.values():
            subprocess.run(["minimap2", "-a", "-x", "sr", "-t", str(args.cores), w("genome.fa"), *files], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls[minimap2].append(time.perf_counter() - started)

    try:
        outs: dict = {}
        for round_ in range(args.repeats):
            run_minimap2()
            for name, extra in ways.items():
                outs[name] = run(name, extra, round_)
        alone, served = (outs[name] for name in ways)
        same = all(records(os.path.join(alone, f"{s}.bam")) == records(os.path.join(served, f"{s}.bam")) for s in samples)
    finally:
        for pid in all_pids():  # the auto server, ended (it would end by itself after 600 s idle)
            text = cmdline(pid)
            if "serve" in text and runtime in text:
                os.kill(pid, signal.SIGTERM)
    print("# The Snakemake workflow with and without `--server auto`\n")
    print(machine_lines())
    print(f"- neuromap {__version__}, Python {platform.python_version()}, "
          f"{subprocess.run([snakemake, '--version'], capture_output=True, text=True).stdout.strip()} (Snakemake), "
          f"{subprocess.run(['minimap2', '--version'], capture_output=True, text=True).stdout.strip()} (minimap2)")
    print(f"- samples: {args.reads:,} single-end reads and {args.pairs:,} pairs of {args.workdir}, each scattered into {args.scatter} "
          f"chunks: {2 * args.scatter} alignment jobs of -t {args.threads}, --cores {args.cores}; median of {args.repeats} rounds, minimap2 and "
          "the two ways in turn; neuromap's index built beforehand\n")
    print("| run | wall s | reads/s as a ratio to minimap2's |")
    print("|---|---|---|")
    base = statistics.median(walls[minimap2])
    for name in walls:
        wall = statistics.median(walls[name])
        print(f"| {name if name == minimap2 else 'workflow, ' + name} | {wall:.2f} | {base / wall:.2f} |")
    alone, served = (statistics.median(walls[name]) for name in ways)
    print(f"\nThe workflow with `--server auto` against each job loading the network: {alone / served:.2f} x faster.")
    print(f"\nThe BAMs of the two ways hold the same records: {'yes' if same else 'NO'}.")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
