"""Training examples for the NeuralReadMapper, generated from (seed, step); numpy only.

Kept apart from `train.py` so that worker processes can make batches ahead of the device
without importing JAX (`neuromap train --workers N`). Each example is one read with
`windows_per_read` reference windows:
  0                the window it comes from (SNPs between sample and reference, sequencing
                   errors, 1-bp indels, occasional N calls);
  1 .. K-3         near-identical paralogs of that window (`near_paralog` divergence), the read at
                   the same offset: what the aligner's MAPQ must tell apart;
  K-2              a diverged paralog (4-15 %);
  K-1              a foreign window (unrelated sequence).
With K = 4 that is one near paralog, as the shipped model was trained. Sequences are random with a
random GC content; 30 % carry a low-complexity or tandem stretch. With `genomes` (FASTA files of
real genomes, e.g. the phage and mitochondrial genomes in Debian's packages:
benchmarks/debian_genomes.sh), a `genome_fraction` of the reads come from windows of those
instead (either strand; N bases replaced by random ones), and so do their foreign windows.
Every array is built for the whole batch at once (no per-base Python), so a batch of 128 reads
takes milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 32  # reads per step (each with windows_per_read windows)
    windows_per_read: int = 4
    min_read_length: int = 50
    read_length: int = 150  # longest training read
    flank: int = 24  # window = read_length + 2 * flank
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    validate_every: int = 250
    validation_reads: int = 512
    max_error_rate: float = 0.03
    max_snp_rate: float = 0.01
    near_paralog: tuple[float, float] = (0.01, 0.04)  # divergence of the near paralogs from the true window
    init_from: str | None = None  # a trained model's directory ("shipped": the package's) training starts from
    position_smoothing: float = 0.2  # share of the position target on the starts 1 bp either side
    genomes: tuple[str, ...] = ()  # FASTA files of real genomes to draw windows from
    genome_fraction: float = 0.5  # share of the reads drawn from `genomes` (when there are any)

    @property
    def window_width(self) -> int:
        return self.read_length + 2 * self.flank


def random_sequences(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """(n, width) int8 bases, each row with its own GC content (30-70 %); 30 % of rows carry a
    low-complexity or tandem stretch."""
    gc = rng.uniform(0.3, 0.7, n)[:, None]
    u = rng.random((n, width))
    # A below (1-gc)/2, C below 1/2, G below 1/2 + gc/2, T above.
    seq = (u >= (1 - gc) / 2).astype(np.int8) + (u >= 0.5) + (u >= 0.5 + gc / 2)
    for row in np.flatnonzero(rng.random(n) < 0.3):
        unit = rng.integers(0, 4, int(rng.integers(1, 7))).astype(np.int8)
        length = int(rng.integers(15, max(16, width // 2)))
        at = int(rng.integers(0, width - length))
        seq[row, at : at + length] = np.resize(unit, length)
    return seq


@lru_cache(maxsize=4)
def genome_contigs(paths: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """The sequences of the FASTA files, as codes (0-3; 4 for N and other letters); once per process."""
    from neuromap.io.fastx import encode, read_fastx

    return tuple(encode(rec.seq) for path in paths for rec in read_fastx(path))


def usable_contigs(paths: tuple[str, ...], width: int) -> list[np.ndarray]:
    """The genomes' sequences that hold a window of `width`; ValueError if none does."""
    contigs = [c for c in genome_contigs(paths) if len(c) >= width]
    if not contigs:
        raise ValueError(f"no sequence of {width} bp or more in {', '.join(paths)}")
    return contigs


def genome_windows(rng: np.random.Generator, paths: tuple[str, ...], n: int, width: int) -> np.ndarray:
    """(n, width) int8 windows from the genomes in `paths`: a contig in proportion to its length, a
    start, a strand; N (and other letters) become random bases."""
    contigs = usable_contigs(paths, width)
    sizes = np.array([len(c) - width + 1 for c in contigs], dtype=np.float64)
    which = rng.choice(len(contigs), size=n, p=sizes / sizes.sum())
    starts = (rng.random(n) * sizes[which]).astype(np.int64)
    out = np.stack([contigs[c][s : s + width] for c, s in zip(which, starts)]).astype(np.int8) if n else np.zeros((0, width), np.int8)
    reverse = rng.random(n) < 0.5
    out[reverse] = np.where(out[reverse] < 4, 3 - out[reverse], out[reverse])[:, ::-1]
    unknown = out >= 4
    out[unknown] = rng.integers(0, 4, int(unknown.sum()))
    return out


def make_windows(rng: np.random.Generator, n: int, width: int, cfg: TrainConfig) -> np.ndarray:
    """Source windows: random sequence, or with `cfg.genomes` a `genome_fraction` from those."""
    window = random_sequences(rng, n, width)
    if cfg.genomes:
        real = rng.random(n) < cfg.genome_fraction
        window[real] = genome_windows(rng, tuple(cfg.genomes), int(real.sum()), width)
    return window


def mutate(rng: np.random.Generator, seq: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Substitute each base of row i with probability rate[i] (by another base)."""
    sites = rng.random(seq.shape) < np.asarray(rate)[:, None]
    return np.where(sites, (seq + rng.integers(1, 4, seq.shape)) % 4, seq).astype(np.int8)


def sequence_reads(rng: np.random.Generator, sample: np.ndarray, start: np.ndarray, length: np.ndarray,
                   error_rate: np.ndarray, read_width: int) -> np.ndarray:
    """Reads of `length[i]` bases from sample[i, start[i]:] with substitution and 1-bp indel
    errors (5 % of errors insertions, 5 % deletions) and N calls (0.2 %); -1 = N or padding."""
    n, width = sample.shape
    errors = rng.random((n, read_width)) < error_rate[:, None]
    kinds = rng.random((n, read_width))
    inserted = errors & (kinds < 0.05)
    deleted = errors & (kinds >= 0.05) & (kinds < 0.10)
    substituted = errors & (kinds >= 0.10)
    # An inserted base consumes no template base; a deletion skips one before the next base.
    consumed = np.where(inserted, 0, np.where(deleted, 2, 1))
    position = start[:, None] + np.cumsum(consumed, axis=1) - 1
    inside = position < width
    reads = np.take_along_axis(sample, np.minimum(position, width - 1), axis=1).astype(np.int8)
    reads = np.where(substituted, (reads + rng.integers(1, 4, reads.shape)) % 4, reads)
    reads = np.where(inserted, rng.integers(0, 4, reads.shape), reads)
    reads = np.where(rng.random(reads.shape) < 0.002, -1, reads)
    reads = np.where(inserted | inside, reads, -1)
    return np.where(np.arange(read_width)[None, :] < length[:, None], reads, -1).astype(np.int8)


def make_examples(rng: np.random.Generator, n_reads: int, cfg: TrainConfig):
    """Arrays for n_reads examples: reads (n, R) int8 (-1 = N/pad), mask (n, R) float32,
    windows (n, K, W) int8, start (n,) true start in window 0."""
    R, K = cfg.read_length, cfg.windows_per_read
    W = cfg.window_width
    length = rng.integers(cfg.min_read_length, R + 1, n_reads)
    window = make_windows(rng, n_reads, W, cfg)
    start = rng.integers(0, W - length + 1)
    sample = mutate(rng, window, rng.uniform(0, cfg.max_snp_rate, n_reads))
    reads = sequence_reads(rng, sample, start, length, rng.uniform(0, cfg.max_error_rate, n_reads), R)
    mask = (np.arange(R)[None, :] < length[:, None]).astype(np.float32)
    windows = np.zeros((n_reads, K, W), np.int8)
    windows[:, 0] = window
    n_near = 1 if K <= 3 else K - 3
    for k in range(1, min(K, 1 + n_near)):
        windows[:, k] = mutate(rng, window, rng.uniform(*cfg.near_paralog, n_reads))
    if K >= 3:
        windows[:, 1 + n_near] = mutate(rng, window, rng.uniform(0.04, 0.15, n_reads))
    if K >= 4:
        windows[:, K - 1] = make_windows(rng, n_reads, W, cfg)
    return reads, mask, windows, start.astype(np.int64)


def batch_for_step(cfg: TrainConfig, step: int):
    """The training batch of `step`: a function of (seed, step) alone, so a run resumes exactly and
    batches can be made in any process, in any order."""
    return make_examples(np.random.default_rng([cfg.seed, step]), cfg.batch_size, cfg)


def validation_set(cfg: TrainConfig):
    return make_examples(np.random.default_rng([cfg.seed, 2**31 - 1]), cfg.validation_reads, cfg)
