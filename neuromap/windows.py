"""Reference windows around candidate placements, and reads oriented to the forward strand."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neuromap.index import PAD_CODE, Index
from neuromap.jit import kernel
from neuromap.seed import Candidates

_COMPLEMENT = np.array([3, 2, 1, 0, 4, 5], dtype=np.uint8)


@dataclass
class Pairs:
    """Flattened (read, candidate) pairs that have a real candidate."""

    read: np.ndarray  # (P,) read index in the batch
    slot: np.ndarray  # (P,) candidate slot
    window_start: np.ndarray  # (P,) int64 global reference position of window column 0
    query: np.ndarray  # (P, max_len) uint8 read codes, reverse-complemented for reverse pairs
    target: np.ndarray  # (P, max_len + 2 * margin) uint8 reference codes, PAD outside the contig


def oriented_reads(codes: np.ndarray, lengths: np.ndarray, read: np.ndarray, reverse: np.ndarray) -> np.ndarray:
    """(P, width) codes of read `read[i]`, reverse-complemented where `reverse[i]` (its first
    `length` codes; the padding stays N)."""
    out = np.empty((len(read), codes.shape[1]), dtype=np.uint8)
    if len(read):
        _orient_kernel(np.ascontiguousarray(codes, dtype=np.uint8), np.asarray(lengths, dtype=np.int64), np.asarray(read, dtype=np.int64),
                       np.asarray(reverse, dtype=np.bool_), _COMPLEMENT, out)
    return out


@kernel
def _orient_kernel(codes, lengths, read, reverse, complement, out):
    width = codes.shape[1]
    for i in range(len(read)):
        row = codes[read[i]]
        if reverse[i]:
            n = min(lengths[read[i]], width)
            for j in range(n):
                out[i, j] = complement[row[n - 1 - j]]
            for j in range(n, width):
                out[i, j] = 4
        else:
            out[i, :] = row


def gather_windows(index: Index, contig: np.ndarray, start: np.ndarray, width: int) -> np.ndarray:
    """(P, width) reference codes from global `start`; positions outside the contig are PAD."""
    out = np.empty((len(start), width), dtype=np.uint8)
    if len(start):
        lo = index.contig_offsets[contig].astype(np.int64)
        _gather_kernel(np.asarray(index.seq), np.asarray(start, dtype=np.int64), lo, lo + index.contig_lengths[contig], PAD_CODE, out)
    return out


@kernel
def _gather_kernel(seq, start, lo, hi, pad, out):
    width = out.shape[1]
    for i in range(len(start)):
        for j in range(width):
            pos = start[i] + j
            out[i, j] = seq[pos] if lo[i] <= pos < hi[i] else pad


def make_pairs(codes: np.ndarray, lengths: np.ndarray, candidates: Candidates, index: Index, margin: int) -> Pairs:
    read, slot = np.nonzero(candidates.valid)
    reverse = candidates.reverse[read, slot]
    query = oriented_reads(codes, lengths, read, reverse)
    window_start = candidates.diagonal[read, slot] - margin
    width = codes.shape[1] + 2 * margin
    target = gather_windows(index, candidates.contig[read, slot], window_start, width)
    return Pairs(read=read, slot=slot, window_start=window_start, query=query, target=target)
