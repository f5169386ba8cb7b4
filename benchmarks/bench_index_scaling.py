#!/usr/bin/env python3
"""Index growth with reference size, beside minimap2, and the extrapolation to a human genome.

    python benchmarks/bench_index_scaling.py [--sizes 5 50 500] [--workdir DIR]

For each size (Mb) a random reference (contigs of at most 50 Mb) is written, then indexed by
`neuromap index` and `minimap2 -x sr -d` (one thread each: neuromap's index build is single
threaded), and 2,000 simulated 150-bp reads are aligned with `neuromap align --no-neural -t 1` to
show what a memory-mapped index costs a mapping run. Prints a Markdown table (build seconds and
ratio to minimap2, peak RSS while building, index size on disk, peak RSS while mapping) and a
least-squares line through the measured points evaluated at 3,100 Mb.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from bench_se import machine_lines, run_measured, version_of  # noqa: E402
from neuromap import __version__  # noqa: E402

LETTERS = np.frombuffer(b"ACGT", dtype=np.uint8)


def write_random_reference(path: str, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    contig = 50_000_000
    with open(path, "wb") as fh:
        for i, lo in enumerate(range(0, size, contig)):
            n = min(contig, size - lo)
            fh.write(f">ctg{i + 1}\n".encode())
            seq = LETTERS[rng.integers(0, 4, n)]
            full = n // 80
            lines = np.hstack([seq[: full * 80].reshape(full, 80), np.full((full, 1), ord("\n"), dtype=np.uint8)])
            fh.write(lines.tobytes())
            if n % 80:
                fh.write(seq[full * 80 :].tobytes() + b"\n")


def du(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
    return os.path.getsize(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5, 50, 500], help="reference sizes in Mb")
    ap.add_argument("--workdir", default=os.path.join(HERE, "work", "scaling"))
    args = ap.parse_args()
    if not shutil.which("minimap2"):
        sys.exit("minimap2 not found on PATH (Debian: apt-get install minimap2)")
    os.makedirs(args.workdir, exist_ok=True)
    neuromap = [sys.executable, "-m", "neuromap"]
    rows = []
    for mb in args.sizes:
        ref = os.path.join(args.workdir, f"ref{mb}.fa")
        write_random_reference(ref, mb * 1_000_000, seed=mb)
        shutil.rmtree(ref + ".nmi", ignore_errors=True)
        t_nm, rss_nm = run_measured([*neuromap, "index", "--quiet", ref])
        t_mm, rss_mm = run_measured(["minimap2", "-t", "1", "-x", "sr", "-d", ref + ".mmi", ref])
        reads = os.path.join(args.workdir, f"reads{mb}.fq")
        subprocess.run([*neuromap, "simulate", ref, "-n", "2000", "--seed", "1", "-o", reads, "--truth", reads + ".tsv"], check=True, capture_output=True)
        t_map, rss_map = run_measured([*neuromap, "align", "--no-neural", "-t", "1", "--quiet", ref, reads])
        rows.append((mb, t_nm, t_mm, rss_nm, rss_mm, du(ref + ".nmi") / 2**20, du(ref + ".mmi") / 2**20, t_map, rss_map))
        for f in (ref, reads, reads + ".tsv", ref + ".mmi"):
            os.remove(f)
        shutil.rmtree(ref + ".nmi")

    print("# Index scaling\n")
    print(machine_lines())
    print(f"- versions: neuromap {__version__}, Python {platform.python_version()}, minimap2 {version_of(['minimap2', '--version'])}")
    print("- references: uniform random sequence in contigs of at most 50 Mb; one thread for both indexers; "
          "mapping: 2,000 x 150 bp simulated reads, `--no-neural -t 1`\n")
    print("| size (Mb) | neuromap index (s) | minimap2 -d (s) | ratio | neuromap build RSS (MB) | minimap2 build RSS (MB) | .nmi on disk (MB) | .mmi on disk (MB) | map 2k reads (s) | map RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mb, t_nm, t_mm, rss_nm, rss_mm, d_nm, d_mm, t_map, rss_map in rows:
        print(f"| {mb} | {t_nm:.1f} | {t_mm:.1f} | {t_nm / t_mm:.1f} | {rss_nm} | {rss_mm} | {d_nm:.0f} | {d_mm:.0f} | {t_map:.1f} | {rss_map} |")
    if len(rows) >= 2:
        sizes = np.array([r[0] for r in rows], dtype=float)
        print("\nLinear fits (least squares over the sizes above) at 3,100 Mb (a human genome):\n")
        for label, col in (("neuromap index build (s)", 1), ("minimap2 -d (s)", 2), ("neuromap build peak RSS (MB)", 3),
                           ("index on disk (MB)", 5), ("mapping peak RSS (MB)", 8)):
            slope, icpt = np.polyfit(sizes, np.array([r[col] for r in rows], dtype=float), 1)
            print(f"- {label}: {slope * 3100 + icpt:,.0f} ({slope:.3g} per Mb + {icpt:.3g})")


if __name__ == "__main__":
    main()
