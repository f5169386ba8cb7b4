"""Simulated Illumina-like reads with known origin (the ground truth for tests, training, benchmarks).

A haplotype is drawn from the reference (optional SNPs and small indels), then reads are sampled
uniformly over its length on both strands. Each base gets an error probability that rises along
the read (as Illumina's does) with per-base jitter; its quality is that probability in Phred, and
errors are drawn from it, so qualities are honest. Errors are mostly substitutions, with a
fraction of 1-bp insertions and deletions. Truth is reported in reference coordinates.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from neuromap.errors import NeuromapError
from neuromap.io.fastx import BASE_CODE, read_fastx

_LETTERS = np.frombuffer(b"ACGTN", dtype=np.uint8)


@dataclass
class SimRead:
    name: str
    seq: str
    qual: str
    contig: str
    start: int  # 0-based, reference coordinates
    end: int  # exclusive
    strand: str  # '+' or '-'


@dataclass
class Haplotype:
    name: str
    codes: np.ndarray  # uint8 codes of the haplotype
    to_ref: np.ndarray  # int64 reference coordinate of each haplotype base


def make_haplotype(name: str, codes: np.ndarray, rng: np.random.Generator, snp_rate: float, indel_rate: float) -> Haplotype:
    n = len(codes)
    hap = codes.copy()
    to_ref = np.arange(n, dtype=np.int64)
    if snp_rate > 0:
        sites = np.flatnonzero((rng.random(n) < snp_rate) & (hap < 4))
        hap[sites] = (hap[sites] + rng.integers(1, 4, len(sites))) % 4
    if indel_rate > 0:
        sites = np.flatnonzero(rng.random(n) < indel_rate)
        lengths = rng.integers(1, 6, len(sites))
        is_ins = rng.random(len(sites)) < 0.5
        pieces, maps, prev = [], [], 0
        for site, length, ins in zip(sites, lengths, is_ins):
            if site < prev:
                continue
            pieces.append(hap[prev:site])
            maps.append(to_ref[prev:site])
            if ins:
                pieces.append(rng.integers(0, 4, length).astype(np.uint8))
                maps.append(np.full(length, site, dtype=np.int64))
                prev = site
            else:
                prev = min(site + length, n)
        pieces.append(hap[prev:])
        maps.append(to_ref[prev:])
        hap, to_ref = np.concatenate(pieces), np.concatenate(maps)
    return Haplotype(name, hap, to_ref)


def simulate_reads(
    reference: str,
    n_reads: int,
    read_length: int = 150,
    seed: int = 1,
    error_rate: float = 0.01,
    indel_fraction: float = 0.05,
    snp_rate: float = 0.0,
    indel_rate: float = 0.0,
    name_prefix: str = "sim",
) -> Iterator[SimRead]:
    if read_length < 1:
        raise NeuromapError(f"read length must be positive (got {read_length})")
    if not 0 <= error_rate < 0.5:
        raise NeuromapError(f"error rate must be in [0, 0.5) (got {error_rate})")
    rng = np.random.default_rng(seed)
    slack = 8 + int(read_length * error_rate * indel_fraction * 4)
    haps = []
    for rec in read_fastx(reference):
        codes = BASE_CODE[np.frombuffer(rec.seq.encode("ascii"), dtype=np.uint8)]
        if len(codes) >= read_length + slack:
            haps.append(make_haplotype(rec.name, codes, rng, snp_rate, indel_rate))
    if not haps:
        raise NeuromapError(f"{reference}: no contig is long enough for {read_length} bp reads")
    weights = np.array([len(h.codes) - read_length - slack + 1 for h in haps], dtype=np.float64)
    weights /= weights.sum()
    width = len(str(n_reads))
    shape = 0.4 + 1.8 * (np.arange(read_length) / max(read_length - 1, 1)) ** 2
    made = 0
    while made < n_reads:
        hap = haps[rng.choice(len(haps), p=weights)]
        span = read_length + slack
        start = int(rng.integers(0, len(hap.codes) - span + 1))
        template = hap.codes[start : start + span]
        if np.count_nonzero(template[:read_length] >= 4) > 0.05 * read_length:
            continue  # real sequencers give little from assembly gaps
        reverse = bool(rng.random() < 0.5)
        if reverse:
            template = np.where(template < 4, 3 - template, template)[::-1]
        p_err = np.clip(error_rate * shape * rng.lognormal(-0.125, 0.5, read_length), 1e-4, 0.6)
        quals = np.clip(np.rint(-10 * np.log10(p_err)), 2, 41).astype(np.int64)
        p_err = 10.0 ** (-quals / 10.0)
        errors = (rng.random(read_length) < p_err) & (error_rate > 0)  # 0 means error-free
        kinds = rng.random(read_length)  # < indel_fraction/2 insertion, < indel_fraction deletion
        ins = errors & (kinds < indel_fraction / 2)
        dele = errors & ~ins & (kinds < indel_fraction)
        subs = errors & ~ins & ~dele
        pieces, t, r = [], 0, 0
        for j in np.flatnonzero(ins | dele):
            pieces.append(template[t : t + (j - r)])
            t += j - r
            r = j
            if ins[j]:
                pieces.append(rng.integers(0, 4, 1).astype(np.uint8))
                r += 1
            else:
                t += 1
        pieces.append(template[t : t + (read_length - r)])
        t += read_length - r
        read = np.concatenate(pieces)[:read_length].copy()
        sub_at = np.flatnonzero(subs[: len(read)] & (read < 4))
        read[sub_at] = (read[sub_at] + rng.integers(1, 4, len(sub_at))) % 4
        quals[read >= 4] = 2
        consumed = min(t, span)
        # Reference interval covered by the template bases this read used.
        if reverse:
            hap_lo, hap_hi = start + span - consumed, start + span
        else:
            hap_lo, hap_hi = start, start + consumed
        ref_lo = int(hap.to_ref[hap_lo])
        ref_hi = int(hap.to_ref[hap_hi - 1]) + 1
        made += 1
        yield SimRead(
            name=f"{name_prefix}{made:0{width}d}",
            seq=_LETTERS[read].tobytes().decode(),
            qual=(quals + 33).astype(np.uint8).tobytes().decode(),
            contig=hap.name,
            start=ref_lo,
            end=ref_hi,
            strand="-" if reverse else "+",
        )


def synthetic_genome(size: int, seed: int) -> dict[str, str]:
    """A bacterial-like genome with the repeats that make mapping hard: a chromosome of `size` bp
    with IS-element-like exact repeats (10 families x 5 copies of 1.3 kb), rRNA-operon-like near
    repeats (7 copies of 5 kb, 0-2 % divergent), tandem repeats, AT-rich low-complexity stretches
    and a 500-bp N gap, plus plasmids of 100 kb and 1 kb. Deterministic per seed."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, size).astype(np.uint8)

    def plant(segment, at):
        codes[at : at + len(segment)] = segment

    def diverge(segment, rate):
        seg = segment.copy()
        sites = np.flatnonzero(rng.random(len(seg)) < rate)
        seg[sites] = (seg[sites] + rng.integers(1, 4, len(sites))) % 4
        return seg

    if size < 100_000:
        raise NeuromapError(f"synthetic genome size must be at least 100000 bp (got {size})")
    spacing = min(6_000, (size - 20_000) // 80)  # repeats overlap (and overwrite) in small genomes
    slots = rng.choice(np.arange(10_000, size - 10_000, spacing), size=10 * 5 + 7 + 20, replace=False)
    s = iter(slots)
    for _ in range(10):  # IS elements: identical copies
        element = rng.integers(0, 4, 1_300).astype(np.uint8)
        for _ in range(5):
            plant(element, next(s))
    operon = rng.integers(0, 4, 5_000).astype(np.uint8)
    for rate in (0.0, 0.005, 0.005, 0.01, 0.01, 0.02, 0.02):  # rRNA-operon-like near repeats
        plant(diverge(operon, rate), next(s))
    for _ in range(10):  # tandem repeats
        unit = rng.integers(0, 4, int(rng.integers(2, 60))).astype(np.uint8)
        plant(np.tile(unit, 1_500 // len(unit)), next(s))
    for _ in range(10):  # low complexity (AT-rich)
        plant(rng.choice(np.array([0, 3], dtype=np.uint8), 1_000), next(s))
    seq = _LETTERS[codes].tobytes().decode()
    gap = size // 3
    seq = seq[:gap] + "N" * 500 + seq[gap + 500 :]
    plasmid1 = _LETTERS[rng.integers(0, 4, 100_000)].tobytes().decode()
    plasmid2 = _LETTERS[rng.integers(0, 4, 1_000)].tobytes().decode()
    return {"chromosome": seq, "plasmid1": plasmid1, "plasmid2": plasmid2}


def write_fasta(path: str, contigs: dict[str, str], width: int = 80) -> None:
    with open(path, "w") as fh:
        for name, seq in contigs.items():
            fh.write(f">{name}\n")
            for i in range(0, len(seq), width):
                fh.write(seq[i : i + width] + "\n")


def _open_text(path: str):
    return gzip.open(path, "wt") if path.endswith(".gz") else open(path, "w")


def write_simulation(reads: Iterator[SimRead], fastq: str, truth: str) -> int:
    """Write reads and truth to temporary files, renamed into place only when both are complete."""
    tmp_fq = f"{fastq}.tmp-{os.getpid()}" + (".gz" if fastq.endswith(".gz") else "")
    tmp_truth = f"{truth}.tmp-{os.getpid()}"
    n = 0
    try:
        with _open_text(tmp_fq) as fq, open(tmp_truth, "w") as tsv:
            tsv.write("#name\tcontig\tstart\tend\tstrand\n")
            for rd in reads:
                fq.write(f"@{rd.name}\n{rd.seq}\n+\n{rd.qual}\n")
                tsv.write(f"{rd.name}\t{rd.contig}\t{rd.start}\t{rd.end}\t{rd.strand}\n")
                n += 1
        os.replace(tmp_fq, fastq)
        os.replace(tmp_truth, truth)
    finally:
        for tmp in (tmp_fq, tmp_truth):
            if os.path.exists(tmp):
                os.remove(tmp)
    return n
