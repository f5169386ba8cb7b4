"""Reference windows around candidate placements, and reads oriented to the forward strand."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neuromap import kernels
from neuromap.index import PAD_CODE, Index
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
        kernels.call("nm_orient", np.ascontiguousarray(codes, dtype=np.uint8), codes.shape[1], np.ascontiguousarray(lengths, dtype=np.int64),
                     np.ascontiguousarray(read, dtype=np.int64), np.ascontiguousarray(reverse, dtype=np.bool_), len(read), _COMPLEMENT, out)
    return out


def gather_windows(index: Index, contig: np.ndarray, start: np.ndarray, width: int) -> np.ndarray:
    """(P, width) reference codes from global `start`; positions outside the contig are PAD."""
    out = np.empty((len(start), width), dtype=np.uint8)
    if len(start):
        lo = index.contig_offsets[contig].astype(np.int64)
        hi = lo + index.contig_lengths[contig].astype(np.int64)
        kernels.call("nm_gather", np.asarray(index.seq), np.ascontiguousarray(start, dtype=np.int64), lo, hi, len(start), width, PAD_CODE, out)
    return out


def make_pairs(codes: np.ndarray, lengths: np.ndarray, candidates: Candidates, index: Index, margin: int) -> Pairs:
    read, slot = np.nonzero(candidates.valid)
    reverse = candidates.reverse[read, slot]
    query = oriented_reads(codes, lengths, read, reverse)
    window_start = candidates.diagonal[read, slot] - margin
    width = codes.shape[1] + 2 * margin
    target = gather_windows(index, candidates.contig[read, slot], window_start, width)
    return Pairs(read=read, slot=slot, window_start=window_start, query=query, target=target)
