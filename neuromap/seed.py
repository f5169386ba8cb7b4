"""Seeds: read minimizers looked up in the index, hits voted by diagonal into candidate windows.

A hit says "read position p has the same k-mer as reference position q". Its diagonal is the
reference position where the read (or its reverse complement) would start. Hits of one read on one
strand whose diagonals lie within `max_diag_gap` of each other form a cluster: one candidate
placement, its support the number of distinct read minimizers that agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neuromap import kernels
from neuromap.errors import NeuromapError
from neuromap.index import Index
from neuromap.sketch import sketch_rows


@dataclass
class SeedParams:
    max_candidates: int = 8  # candidate windows kept per read (padded to this many)
    max_occ: int = 500  # minimizers more frequent than this in the reference are ignored
    max_diag_gap: int = 12  # hits within this many diagonals are one placement (small indels)
    max_span: int = 16  # a chain of hits wider than this (a tandem repeat) is split into placements


@dataclass
class Candidates:
    """Top candidate placements per read, padded: every array is (n_reads, max_candidates)."""

    valid: np.ndarray  # bool
    diagonal: np.ndarray  # int64 global reference position where the oriented read starts
    reverse: np.ndarray  # bool: the read's reverse complement matches the forward reference
    contig: np.ndarray  # int32 contig index
    support: np.ndarray  # int32 distinct read minimizers supporting the placement
    n_clusters: np.ndarray  # (n_reads,) int32 all placements found, kept or not

    @classmethod
    def empty(cls, n_reads: int, columns: int, n_clusters: np.ndarray | None = None) -> "Candidates":
        """No placement in any of `columns` slots of `n_reads` reads (`n_clusters`: none found
        unless given)."""
        return cls(
            valid=np.zeros((n_reads, columns), bool),
            diagonal=np.zeros((n_reads, columns), np.int64),
            reverse=np.zeros((n_reads, columns), bool),
            contig=np.zeros((n_reads, columns), np.int32),
            support=np.zeros((n_reads, columns), np.int32),
            n_clusters=np.zeros(n_reads, np.int32) if n_clusters is None else n_clusters,
        )


def _is_uint32(table: np.ndarray) -> bool:
    """The index stores positions and bucket offsets as uint32 below 4 Gb, int64 above."""
    if table.dtype not in (np.uint32, np.int64):
        raise TypeError(f"index table of {table.dtype}: expected uint32 or int64")
    return table.dtype == np.uint32


def find_candidates(codes: np.ndarray, lengths: np.ndarray, index: Index, params: SeedParams) -> Candidates:
    """Candidate placements of each read (compiled, one read at a time; tests/reference_seed.py
    keeps the vectorised numpy original it is checked against).

    Each minimizer is looked up once in the index; every hit becomes one int64 key (strand |
    diagonal | read position), so one sort orders a read's hits by strand, diagonal and read
    position. Hits form a cluster while the strand holds and the diagonal moves by at most
    `max_diag_gap`; a chain wider than `max_span` (a tandem repeat) is cut into pieces so each
    shift competes as its own placement. A cluster's support is the number of distinct read
    positions in it; clusters are ranked by support, then leftmost, then forward."""
    n_reads = codes.shape[0]
    n_keep = params.max_candidates
    out = Candidates.empty(n_reads, n_keep)
    if n_reads == 0:
        return out
    row, pos, hashes, read_rev = sketch_rows(codes, index.k, index.w)
    if len(row) == 0:
        return out
    # Bit widths of the packed sort keys: read positions, and diagonals (which run from minus the
    # longest read to the genome's end).
    longest = int(lengths.max())
    pos_bits = max(longest, 1).bit_length()
    diag_bits = (int(index.contig_lengths.sum()) + 2 * longest + 1).bit_length()
    if pos_bits + diag_bits + 2 > 62:
        raise NeuromapError(f"a read of {longest:,} bases is too long to seed against this reference")
    offsets, shift = index.buckets()
    mm_pos = np.asarray(index.mm_pos)
    kernels.call(
        "nm_seed", row.astype(np.int64), pos.astype(np.int64), hashes, read_rev, len(row), lengths.astype(np.int64), index.k,
        np.asarray(index.mm_hash), len(index.mm_hash), offsets, _is_uint32(offsets), shift, mm_pos, _is_uint32(mm_pos),
        np.asarray(index.mm_reverse), params.max_occ, params.max_diag_gap, params.max_span, pos_bits, diag_bits, longest + 1,
        n_keep, out.valid, out.diagonal, out.reverse, out.support, out.n_clusters,
    )
    r, c = np.nonzero(out.valid)
    centre = np.clip(out.diagonal[r, c] + lengths[r] // 2, 0, None)
    out.contig[r, c] = index.contig_of(centre).astype(np.int32)
    return out
