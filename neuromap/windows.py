"""Reference windows around candidate placements, and reads oriented to the forward strand."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def reverse_complement_codes(codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Reverse complement each row's first `length` codes; padding stays N."""
    n, width = codes.shape
    src = lengths[:, None].astype(np.int64) - 1 - np.arange(width)[None, :]
    inside = src >= 0
    gathered = np.take_along_axis(codes, np.clip(src, 0, width - 1), axis=1)
    return np.where(inside, _COMPLEMENT[gathered], 4).astype(np.uint8)


def gather_windows(index: Index, contig: np.ndarray, start: np.ndarray, width: int) -> np.ndarray:
    """(P, width) reference codes from global `start`; positions outside the contig are PAD."""
    cols = start[:, None] + np.arange(width)[None, :]
    lo = index.contig_offsets[contig][:, None]
    hi = lo + index.contig_lengths[contig][:, None]
    inside = (cols >= lo) & (cols < hi)
    safe = np.clip(cols, 0, len(index.seq) - 1)
    return np.where(inside, index.seq[safe], PAD_CODE).astype(np.uint8)


def make_pairs(codes: np.ndarray, lengths: np.ndarray, candidates: Candidates, index: Index, margin: int) -> Pairs:
    read, slot = np.nonzero(candidates.valid)
    reverse = candidates.reverse[read, slot]
    rc = reverse_complement_codes(codes, lengths)
    query = np.where(reverse[:, None], rc[read], codes[read])
    window_start = candidates.diagonal[read, slot] - margin
    width = codes.shape[1] + 2 * margin
    target = gather_windows(index, candidates.contig[read, slot], window_start, width)
    return Pairs(read=read, slot=slot, window_start=window_start, query=query, target=target)
