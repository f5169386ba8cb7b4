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


def _haplotypes(reference: str, rng: np.random.Generator, min_length: int, snp_rate: float, indel_rate: float) -> list[Haplotype]:
    haps = []
    for rec in read_fastx(reference):
        codes = BASE_CODE[np.frombuffer(rec.seq.encode("ascii"), dtype=np.uint8)]
        if len(codes) >= min_length:
            haps.append(make_haplotype(rec.name, codes, rng, snp_rate, indel_rate))
    return haps


def _setup(reference: str, seed: int, read_length: int, error_rate: float, indel_fraction: float, snp_rate: float, indel_rate: float):
    """(rng, template span, haplotypes, haplotype sampling weights) for a simulation."""
    if read_length < 1:
        raise NeuromapError(f"read length must be positive (got {read_length})")
    if not 0 <= error_rate < 0.5:
        raise NeuromapError(f"error rate must be in [0, 0.5) (got {error_rate})")
    rng = np.random.default_rng(seed)
    span = read_length + 8 + int(read_length * error_rate * indel_fraction * 4)  # slack for deletions
    haps = _haplotypes(reference, rng, span, snp_rate, indel_rate)
    if not haps:
        raise NeuromapError(f"{reference}: no contig is long enough for {read_length} bp reads")
    weights = np.array([len(h.codes) - span + 1 for h in haps], dtype=np.float64)
    return rng, span, haps, weights / weights.sum()


def _sequence(template: np.ndarray, read_length: int, rng: np.random.Generator, error_rate: float, indel_fraction: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Sequence a read from `template` (oriented as read): (codes, Phred qualities, template bases used)."""
    shape = 0.4 + 1.8 * (np.arange(read_length) / max(read_length - 1, 1)) ** 2
    span = len(template)
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
    quals = quals[: len(read)]
    quals[read >= 4] = 2
    return read, quals, min(t, span)


def _oriented(codes: np.ndarray, reverse: bool) -> np.ndarray:
    return np.where(codes < 4, 3 - codes, codes)[::-1] if reverse else codes


def _sim_read(name: str, hap: Haplotype, lo: int, hi: int, reverse: bool, read_length: int, rng, error_rate, indel_fraction) -> SimRead:
    """A read from haplotype bases [lo, hi): from lo forward, or from hi backwards when reverse."""
    read, quals, consumed = _sequence(_oriented(hap.codes[lo:hi], reverse), read_length, rng, error_rate, indel_fraction)
    hap_lo, hap_hi = (hi - consumed, hi) if reverse else (lo, lo + consumed)
    return SimRead(
        name=name,
        seq=_LETTERS[read].tobytes().decode(),
        qual=(quals + 33).astype(np.uint8).tobytes().decode(),
        contig=hap.name,
        start=int(hap.to_ref[hap_lo]),
        end=int(hap.to_ref[hap_hi - 1]) + 1,
        strand="-" if reverse else "+",
    )


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
    rng, span, haps, weights = _setup(reference, seed, read_length, error_rate, indel_fraction, snp_rate, indel_rate)
    width = len(str(n_reads))
    made = 0
    while made < n_reads:
        hap = haps[rng.choice(len(haps), p=weights)]
        start = int(rng.integers(0, len(hap.codes) - span + 1))
        if np.count_nonzero(hap.codes[start : start + read_length] >= 4) > 0.05 * read_length:
            continue  # real sequencers give little from assembly gaps
        reverse = bool(rng.random() < 0.5)
        made += 1
        yield _sim_read(f"{name_prefix}{made:0{width}d}", hap, start, start + span, reverse, read_length, rng, error_rate, indel_fraction)


def simulate_pairs(
    reference: str,
    n_pairs: int,
    read_length: int = 150,
    seed: int = 1,
    fragment_mean: float = 400.0,
    fragment_std: float = 50.0,
    error_rate: float = 0.01,
    indel_fraction: float = 0.05,
    snp_rate: float = 0.0,
    indel_rate: float = 0.0,
    name_prefix: str = "sim",
) -> Iterator[tuple[SimRead, SimRead]]:
    """Illumina-like FR pairs: a fragment of normal length (at least one read plus slack) is drawn
    uniformly; mate 1 reads it from one end, mate 2 from the other end on the opposite strand."""
    if fragment_mean <= 0 or fragment_std < 0:
        raise NeuromapError(f"fragment length must be positive with a non-negative spread (got {fragment_mean}, {fragment_std})")
    rng, span, haps, weights = _setup(reference, seed, read_length, error_rate, indel_fraction, snp_rate, indel_rate)
    longest = max(span, int(fragment_mean + 4 * fragment_std))
    width = len(str(n_pairs))
    made = 0
    while made < n_pairs:
        hap = haps[rng.choice(len(haps), p=weights)]
        frag = int(np.clip(np.rint(rng.normal(fragment_mean, fragment_std)), span, min(longest, len(hap.codes))))
        start = int(rng.integers(0, len(hap.codes) - frag + 1))
        end = start + frag
        if max(np.count_nonzero(hap.codes[start : start + read_length] >= 4), np.count_nonzero(hap.codes[end - read_length : end] >= 4)) > 0.05 * read_length:
            continue
        flip = bool(rng.random() < 0.5)  # mate 1 on the reverse strand
        made += 1
        name = f"{name_prefix}{made:0{width}d}"
        fwd = _sim_read("", hap, start, start + span, False, read_length, rng, error_rate, indel_fraction)
        rev = _sim_read("", hap, end - span, end, True, read_length, rng, error_rate, indel_fraction)
        m1, m2 = (rev, fwd) if flip else (fwd, rev)
        m1.name, m2.name = f"{name}/1", f"{name}/2"
        yield m1, m2


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


def write_simulation(reads: Iterator, fastq: str, truth: str, mate2: str | None = None) -> int:
    """Write reads (or pairs of reads, when `mate2` names the second FASTQ) and their truth to
    temporary files, renamed into place only when all are complete. Returns reads (or pairs) written."""
    outputs = [fastq, truth] + ([mate2] if mate2 else [])
    tmps = [f"{p}.tmp-{os.getpid()}" + (".gz" if p.endswith(".gz") else "") for p in outputs]
    n = 0
    try:
        with _open_text(tmps[0]) as fq, open(tmps[1], "w") as tsv, (_open_text(tmps[2]) if mate2 else _open_text(os.devnull)) as fq2:
            tsv.write("#name\tcontig\tstart\tend\tstrand\n")
            for item in reads:
                for rd, out in zip(item, (fq, fq2)) if mate2 else ((item, fq),):
                    out.write(f"@{rd.name}\n{rd.seq}\n+\n{rd.qual}\n")
                    tsv.write(f"{rd.name}\t{rd.contig}\t{rd.start}\t{rd.end}\t{rd.strand}\n")
                n += 1
        for tmp, path in zip(tmps, outputs):
            os.replace(tmp, path)
    finally:
        for tmp in tmps:
            if os.path.exists(tmp):
                os.remove(tmp)
    return n
