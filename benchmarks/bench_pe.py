#!/usr/bin/env python3
"""Paired-end benchmark: neuromap beside minimap2 -x sr (and bwa mem when installed) on the same
simulated pairs, in one run.

    python benchmarks/bench_pe.py [--size 5000000] [--pairs 50000] [--threads 2] [--workdir DIR]

Simulates a bacterial-size genome with repeats (the same generator as bench_se.py), 2 x 150 bp FR
pairs from ~400 bp fragments (sd 50) with `neuromap simulate --mate2`, aligns them with neuromap
(network on, and --no-neural), minimap2 -x sr and bwa mem at the same thread count, scores every
mate with `neuromap evaluate`, and prints a Markdown report: machine and versions, then reads/s
(and the ratio to minimap2), peak RSS, correct % of all mates, wrong mates at MAPQ >= 60/30/10,
Brier score and proper-pair %, then each tool's mapeval and calibration tables.
Needs `minimap2` on PATH (Debian: apt-get install minimap2); bwa is optional.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from bench_se import (BF16, compile_package, WARM_NOTE, common_args, gzipped, machine_lines, network_options, print_reports, run_measured, version_of,  # noqa: E402
                      warm_up, with_process_rows)
from neuromap import __version__  # noqa: E402
from neuromap.evaluate import evaluate  # noqa: E402
from neuromap.simulate import synthetic_genome, write_fasta  # noqa: E402


def main() -> None:
    ap = common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    ap.add_argument("--pairs", type=int, default=50_000)
    ap.add_argument("--fragment", type=float, nargs=2, default=(400.0, 50.0), metavar=("MEAN", "SD"))
    args = ap.parse_args()
    compile_package()
    if not shutil.which("minimap2"):
        sys.exit("minimap2 not found on PATH (Debian: apt-get install minimap2)")
    os.makedirs(args.workdir, exist_ok=True)
    w = lambda name: os.path.join(args.workdir, name)  # noqa: E731
    neuromap = [sys.executable, "-m", "neuromap"]
    t = str(args.threads)

    if not args.reuse_data:
        write_fasta(w("genome.fa"), synthetic_genome(args.size, args.seed))
        subprocess.run([*neuromap, "simulate", w("genome.fa"), "-n", str(args.pairs), "-l", str(args.length),
                        "--seed", str(args.seed + 2), "--snp-rate", "0.001", "--indel-rate", "0.0001",
                        "--fragment-mean", str(args.fragment[0]), "--fragment-std", str(args.fragment[1]),
                        "-o", w("r1.fq"), "--mate2", w("r2.fq"), "--truth", w("truth_pairs.tsv")], check=True, capture_output=True)
    if args.prepare_only:
        return
    subprocess.run([*neuromap, "index", w("genome.fa")], check=True, capture_output=True)
    subprocess.run(["minimap2", "-x", "sr", "-d", w("genome.mmi"), w("genome.fa")], check=True, capture_output=True)
    r1, r2 = gzipped(w("r1.fq"), args.gzip), gzipped(w("r2.fq"), args.gzip)
    runs = [
        ("neuromap (network)", [*neuromap, "align", "-t", t, *network_options(args), w("genome.fa"), r1, r2], "pe-neuromap.sam"),
        ("neuromap --no-neural", [*neuromap, "align", "--no-neural", "-t", t, w("genome.fa"), r1, r2], "pe-neuromap-no-neural.sam"),
    ]
    if args.bf16:
        runs.insert(1, ("neuromap (network, bf16)", runs[0][1], "pe-neuromap-bf16.sam"))
    if args.no_network:
        runs = [run for run in runs if "network" not in run[0]]
    runs = with_process_rows(runs, args)
    if shutil.which("bwa"):
        subprocess.run(["bwa", "index", w("genome.fa")], check=True, capture_output=True)
        runs.append(("bwa mem", ["bwa", "mem", "-t", t, w("genome.fa"), r1, r2], "pe-bwa.sam"))
    runs.append(("minimap2 -x sr", ["minimap2", "-t", t, "-ax", "sr", w("genome.mmi"), r1, r2], "pe-minimap2.sam"))
    if not args.no_network:
        warm_up(w("genome.fa"), w("r1.fq"), w("r2.fq"))
        if args.bf16:
            warm_up(w("genome.fa"), w("r1.fq"), w("r2.fq"), env=BF16)
    measured = []
    for name, cmd, out in runs:
        sec, rss = run_measured(cmd, w(out), env=BF16 if "bf16" in name else None)
        measured.append((name, sec, rss, evaluate(w("truth_pairs.tsv"), w(out))))
    t_mm = measured[-1][1]
    n_reads = 2 * args.pairs

    import jax

    print("# Paired-end benchmark\n")
    print(machine_lines())
    versions = f"neuromap {__version__}, Python {platform.python_version()}, minimap2 {version_of(['minimap2', '--version'])}"
    if shutil.which("bwa"):
        bwa_version = next((l.split(":", 1)[1].strip() for l in subprocess.run(["bwa"], capture_output=True, text=True).stderr.splitlines() if l.startswith("Version")), "?")
        versions += f", bwa {bwa_version}"
    print(f"- versions: {versions}, JAX {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind})")
    print(f"- data: {args.size:,} bp synthetic genome with repeats (seed {args.seed}), {args.pairs:,} pairs of 2 x {args.length} bp{' (gzip -6)' if args.gzip else ''}, "
          f"fragments {args.fragment[0]:.0f} +- {args.fragment[1]:.0f} bp, 1 % sequencing error, SNP rate 0.001, indel rate 0.0001")
    print(f"- threads: {args.threads} for every tool; wall-clock times include start-up and index loading; "
          f"correct % and wrong counts are over all mates (reads); {WARM_NOTE}\n")
    print("| tool | reads/s | ratio to minimap2 | peak RSS (MB) | correct % | wrong at MAPQ>=60 | >=30 | >=10 | Brier | proper pairs % |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, sec, rss, ev in measured:
        wrong = {r["mapq"]: r["wrong"] for r in ev["thresholds"]}
        print(f"| {name} | {n_reads / sec:,.0f} | {t_mm / sec:.2f} | {rss} | {ev['correct_pct']:.3f} | {wrong[60]} | {wrong[30]} | {wrong[10]} "
              f"| {ev['brier']:.5f} | {ev['proper_pair_pct']:.3f} |")
    print()
    print_reports([(m[0], m[3]) for m in measured], args.plot)


if __name__ == "__main__":
    main()
