#!/usr/bin/env python3
"""Split the Brier score by whether a read is placeable at all.

    python benchmarks/brier_split.py [--reference GENOME.fa] TRUTH.tsv REFERENCE_PATH.sam OTHER.sam ...

(single-end or paired-end SAM; for pairs, truth_pairs.tsv of bench_pe.py)

A read whose best placement ties with another (AS == XS in REFERENCE_PATH.sam, neuromap's
--no-neural output) sits in an exact repeat: P(correct) = 1/copies is the best any aligner can
claim there, so that part of the Brier score is a floor, not a fault. The rest is where MAPQ can be
sharper or duller. Prints, for each file, the Brier score over all mapped reads, over the tied
reads and over the others.

With --reference, it also prints the floor itself, computed from the genome and the truth alone
(no aligner's output): a read whose origin on the reference (for a mate: both mates' segments, at
their distance apart) is one of k identical copies is equally likely, whatever its sequence, to
come from any of them (the simulator draws origins uniformly), so if c of the k copies lie where
`neuromap evaluate` counts a placement correct (same strand, within 10 bp), no aligner can be
right with probability above c/k, and its expected Brier score on that read is at least
(c/k)(1 - c/k). A mate of a unique pair is held to what it could know if told where its partner
lies: its own copies, weighted by how likely the simulator's fragment lengths make each distance.
Other reads count 0, so the floor is a lower bound on the expected Brier score of any aligner that
maps these reads (up to the negligible weight of placements that are not exact copies),
and is set against the issue's target of 0.8 x the better of --no-neural and minimap2. The Brier
scores here are of the P(wrong) that MAPQ claims, 10^(-MAPQ/10); a whole number of MAPQ cannot
claim every P(wrong) (MAPQ 0 claims 1, MAPQ 1 claims 0.79), so the floor for MAPQ is a little
higher: the next column.
"""

import os
import platform
import sys

import numpy as np
import pysam

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_se import machine_lines  # noqa: E402
from neuromap import __version__  # noqa: E402
from neuromap.evaluate import load_truth  # noqa: E402
from neuromap.io.fastx import read_fastx  # noqa: E402
from neuromap.io.sam import reverse_complement  # noqa: E402


def per_read(path, truth):
    out = {}
    with pysam.AlignmentFile(path, check_sq=False) as fh:
        for r in fh:
            name = r.query_name
            if r.is_paired:  # the truth of pairs names mates NAME/1 and NAME/2
                name += "/1" if r.is_read1 else "/2"
            if r.is_secondary or r.is_supplementary or r.is_unmapped or name not in truth:
                continue
            contig, start, _, strand = truth[name]
            clip = r.cigartuples[0][1] if r.cigartuples and r.cigartuples[0][0] in (4, 5) else 0
            ok = r.reference_name == contig and ("-" if r.is_reverse else "+") == strand and abs(r.reference_start - clip - start) <= 10
            tied = r.has_tag("XS") and r.get_tag("XS") >= r.get_tag("AS")
            out[name] = (10 ** (-r.mapping_quality / 10), not ok, tied)
    return out


_DIGITS = str.maketrans("ACGT", "0123")
_K = 32  # copies of a segment are looked up by its first 32-mer
_TOLERANCE = 10  # as neuromap evaluate
FRAGMENT_MEAN, FRAGMENT_STD = 400.0, 50.0  # bench_pe.py's pairs (neuromap simulate's default)


def _kmer_codes(seq: str) -> tuple[np.ndarray, np.ndarray]:
    """The 2-bit code of every 32-mer of `seq` without an N, and where each starts."""
    codes = np.frombuffer(seq.encode().translate(bytes.maketrans(b"ACGTN", b"\0\1\2\3\4")), dtype=np.uint8)
    n = max(len(codes) - _K + 1, 0)
    h = np.zeros(n, np.uint64)
    bad = np.zeros(n, bool)
    for j in range(_K):
        col = codes[j : j + n]
        h = (h << np.uint64(2)) | (col & 3).astype(np.uint64)
        bad |= col > 3
    return h[~bad], np.flatnonzero(~bad)


def _occurrences(text: str, seg: str) -> list[int]:
    hits, i = [], text.find(seg)
    while i >= 0:
        hits.append(i)
        i = text.find(seg, i + 1)
    return hits


def copy_odds(genome: dict[str, str], truth: dict) -> dict[str, float]:
    """{read: q} for every read that no aligner can place right with a probability above q < 1:
    its origin (for a mate: both mates' segments, at their distance) has k >= 2 identical copies
    on either strand of the genome, c of them where a placement counts as correct (q = c/k), or,
    for a mate of a unique pair, its own copies at distances from its partner that the fragment
    length allows."""
    names = list(genome)
    parts = [_kmer_codes(genome[c]) for c in names]
    codes = np.concatenate([h for h, _ in parts])
    where_contig = np.concatenate([np.full(len(h), i) for i, (h, _) in enumerate(parts)])
    where_pos = np.concatenate([pos for _, pos in parts])
    order = np.argsort(codes, kind="stable")
    codes, where_contig, where_pos = codes[order], where_contig[order], where_pos[order]

    def copies(seg: str) -> list[tuple[str, int]]:
        """Every (contig, position) where `seg` occurs on the forward strand."""
        first = seg[:_K]
        if "N" in first:  # search the genome
            return [(c, p) for c in names for p in _occurrences(genome[c], seg)]
        code = np.uint64(int(first.translate(_DIGITS), 4))  # as _kmer_codes
        lo, hi = np.searchsorted(codes, code, "left"), np.searchsorted(codes, code, "right")
        return [(names[c], int(p)) for c, p in zip(where_contig[lo:hi], where_pos[lo:hi]) if genome[names[c]][p : p + len(seg)] == seg]

    def near(y: int, contig: str, ctg: str, start: int) -> bool:
        return ctg == contig and abs(y - start) <= _TOLERANCE

    def pair_copies(contig: str, reads: list[tuple[int, int]]) -> tuple[int, int]:
        """(c, k): the k placements of the whole read (a pair: both mates' segments, in their
        places relative to each other, the unsequenced middle free), on either strand, c of them
        within the tolerance of the true one."""
        segs = [genome[contig][s:e] for s, e in reads]
        flipped = [reverse_complement(seg) for seg in segs]
        a0, a1 = reads[0]
        k = c = 0
        for ctg, y in copies(segs[0]):  # the same arrangement, moved by y - a0
            d = y - a0
            if all(genome[ctg][s + d : e + d] == seg for (s, e), seg in zip(reads[1:], segs[1:])):
                k += 1
                c += near(y, contig, ctg, a0)
        if flipped[0] != segs[0]:
            for ctg, y in copies(flipped[0]):  # the mirror image: x -> y + a1 - 1 - x
                if all(0 <= y + a1 - e and genome[ctg][y + a1 - e : y + a1 - s] == seg for (s, e), seg in zip(reads[1:], flipped[1:])):
                    k += 1
        return c, k

    odds, done = {}, {}
    for name, (contig, start, end, strand) in truth.items():
        mate = name[:-2] if name[-2:] in ("/1", "/2") else None
        other = truth.get(mate + ("/2" if name.endswith("/1") else "/1")) if mate else None
        together = other is not None and other[0] == contig
        reads = tuple(sorted([(start, end), (other[1], other[2])])) if together else ((start, end),)
        if (contig, reads) not in done:
            c, k = pair_copies(contig, list(reads)) if min(e - s for s, e in reads) >= _K else (1, 1)
            done[contig, reads] = c / k if k >= 2 else 1.0
        q = done[contig, reads]
        if together and q == 1.0 and end - start >= _K:
            # The pair is unique, but this mate alone may not be: even told where its partner
            # lies, it could sit at any copy of its own sequence that makes an FR pair with the
            # partner, each as likely as the simulator's fragment length makes that distance.
            same = copies(genome[contig][start:end])
            if len(same) >= 2:
                length = np.array([0 if c != contig else other[2] - y if strand == "+" else y + (end - start) - other[1] for c, y in same])
                w = np.where(length >= end - start, np.exp(-0.5 * ((length - FRAGMENT_MEAN) / FRAGMENT_STD) ** 2), 0.0)
                right = np.array([near(y, contig, c, start) for c, y in same])
                q = float(w[right].sum() / w.sum()) if w.sum() > 0 else 1.0
        if q < 1.0:
            odds[name] = q
    return odds


def _best_p(reads, odds) -> np.ndarray:
    """The highest P(correct) any aligner can claim for each of `reads` (copy_odds)."""
    return np.array([odds.get(k, 1.0) for k in reads])


def brier_floor(reads, odds) -> tuple[float, float]:
    """The floor over `reads` (those a file maps), and the standard deviation of an aligner's
    Brier score about it from which of the copies the reads happened to come from."""
    q = _best_p(reads, odds)
    floor = float((q * (1 - q)).mean())
    spread = float(np.sqrt((q * (1 - q) ** 4 + (1 - q) * q**4 - (q * (1 - q)) ** 2).sum()) / len(q))
    return floor, spread


def integer_mapq_floor(reads, odds) -> float:
    """The floor where P(wrong) is claimed as an integer MAPQ (as the Brier scores here are): the
    best MAPQ for P(correct) = q claims the 10^(-MAPQ/10) nearest 1 - q."""
    q = _best_p(reads, odds)
    with np.errstate(divide="ignore"):
        ideal = np.minimum(-10 * np.log10(1 - q), 60)
    claims = 10 ** (-np.stack([np.floor(ideal), np.ceil(ideal)]) / 10)
    w = claims[np.abs(claims - (1 - q)).argmin(axis=0), np.arange(len(q))]
    return float((q * w**2 + (1 - q) * (1 - w) ** 2).mean())


def main():
    args = sys.argv[1:]
    genome_path = None
    if args[:1] == ["--reference"]:
        genome_path, args = args[1], args[2:]
    print(f"# Brier score split by ties ({os.path.basename(args[0])})\n")
    print(machine_lines())
    print(f"- versions: neuromap {__version__}, Python {platform.python_version()}")
    print(f"- command: `python benchmarks/brier_split.py {' '.join(sys.argv[1:])}`\n")
    truth = load_truth(args[0])
    ref = per_read(args[1], truth)
    tied = {name for name, (_, _, t) in ref.items() if t}
    odds = None
    if genome_path:
        genome = {rec.name: rec.seq.upper() for rec in read_fastx(genome_path)}
        odds = copy_odds(genome, truth)
    floor_head = " | floor: any aligner, expected ± SD (reads in identical copies) | floor at integer MAPQ | Brier / floor" if odds is not None else ""
    print(f"| file | Brier, all mapped | tied reads (n) | Brier, tied | Brier, not tied{floor_head} |")
    print("|---|---|---|---|---|" + ("---|---|---|" if odds is not None else ""))
    figures = {}  # per file: (Brier, floor)
    for path in args[1:]:
        reads = per_read(path, truth)
        claimed = np.array([v[0] for v in reads.values()])
        wrong = np.array([v[1] for v in reads.values()], dtype=float)
        in_tied = np.array([k in tied for k in reads])
        b = (claimed - wrong) ** 2
        row = f"| {path.rsplit('/', 1)[-1]} | {b.mean():.5f} | {in_tied.sum()} | {b[in_tied].mean():.5f} | {b[~in_tied].mean():.6f}"
        if odds is not None:
            floor, spread = brier_floor(reads, odds)
            row += f" | {floor:.5f} ± {spread:.5f} ({sum(k in odds for k in reads)}) | {integer_mapq_floor(reads, odds):.5f} | {b.mean() / floor:.2f}"
            figures[path] = (b.mean(), floor)
        print(row + " |")
    if odds is not None:
        # the target: the network at most 0.8 x the better of --no-neural (the first file) and minimap2
        baseline = min(v[0] for p, v in figures.items() if "minimap2" in p or p == args[1])
        floor = max(v[1] for v in figures.values())
        print(f"\nTarget (0.8 x the better of `--no-neural` and minimap2): {0.8 * baseline:.6f}; the floor for any aligner: "
              f"{floor:.6f} (a lower bound: reads whose origin is not one of several identical copies count 0). "
              f"The target is {0.8 * baseline / floor:.2f} x the floor.")


if __name__ == "__main__":
    main()
