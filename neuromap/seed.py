"""Seeds: read minimizers looked up in the index, hits voted by diagonal into candidate windows.

A hit says "read position p has the same k-mer as reference position q". Its diagonal is the
reference position where the read (or its reverse complement) would start. Hits of one read on one
strand whose diagonals lie within `max_diag_gap` of each other form a cluster: one candidate
placement, its support the number of distinct read minimizers that agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neuromap.errors import NeuromapError
from neuromap.index import Index
from neuromap.jit import kernel
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


@kernel
def _seed_kernel(row, pos, hashes, read_rev, lengths, k, mm_hash, bucket_offsets, bucket_shift, mm_pos, mm_reverse, max_occ, max_diag_gap, max_span,
                 pos_bits, diag_bits, diag_offset, valid, diagonal, reverse, support, n_clusters):
    n_mm = len(row)
    n_keep = valid.shape[1]
    # Every minimizer looked up once: its first occurrence in the table and how many there are.
    lo = np.empty(n_mm, np.int64)
    cnt = np.zeros(n_mm, np.int64)
    max_hits, a = 0, 0
    while a < n_mm:
        z, total = a, 0
        while z < n_mm and row[z] == row[a]:
            bucket = hashes[z] >> np.uint64(bucket_shift)
            first = bucket_offsets[bucket]
            end = bucket_offsets[bucket + 1]
            while first < end and mm_hash[first] < hashes[z]:
                first += 1
            c = 0
            while first + c < len(mm_hash) and mm_hash[first + c] == hashes[z] and c <= max_occ:
                c += 1
            lo[z] = first
            cnt[z] = c if c <= max_occ else 0  # too frequent: ignored
            total += cnt[z]
            z += 1
        max_hits = max(max_hits, total)
        a = z
    # A hit is one int64 key: strand | diagonal + offset | read position, so one sort orders the
    # hits by strand, then diagonal, then read position.
    pos_mask = (1 << pos_bits) - 1
    diag_mask = (1 << diag_bits) - 1
    keys = np.empty(max_hits, np.int64)
    rank_keys = np.empty(max_hits, np.int64)
    seen = np.zeros(pos_mask + 1, np.int64)  # last cluster (numbered from 1) that counted a position
    stamp = 0
    top_support = pos_mask + 1
    a = 0
    while a < n_mm:
        r = row[a]
        z = a
        while z < n_mm and row[z] == r:
            z += 1
        total = 0
        for m in range(a, z):
            strand = 1 if read_rev[m] != 0 else 0
            for j in range(lo[m], lo[m] + cnt[m]):
                s = strand ^ (1 if mm_reverse[j] != 0 else 0)
                oriented = lengths[r] - k - pos[m] if s else pos[m]
                d = np.int64(mm_pos[j]) - oriented + diag_offset
                keys[total] = (((s << diag_bits) | d) << pos_bits) | pos[m]
                total += 1
        if total == 0:
            a = z
            continue
        hits = keys[:total]
        hits.sort()
        # Clusters: a new one at a strand change or a diagonal gap; a chain wider than max_span
        # (a tandem repeat) is cut into pieces so each shift competes as its own placement.
        n_cl = 0
        t = 0
        chain_start = 0
        while t < total:
            u = t
            strand = hits[t] >> (pos_bits + diag_bits)
            d0 = (hits[t] >> pos_bits) & diag_mask
            if t == 0 or strand != hits[t - 1] >> (pos_bits + diag_bits) or d0 - ((hits[t - 1] >> pos_bits) & diag_mask) > max_diag_gap:
                chain_start = d0
            piece = (d0 - chain_start) // max_span
            stamp += 1
            distinct = 0
            while u < total:
                du = (hits[u] >> pos_bits) & diag_mask
                if u > t:
                    if hits[u] >> (pos_bits + diag_bits) != strand:
                        break
                    if du - ((hits[u - 1] >> pos_bits) & diag_mask) > max_diag_gap:
                        break
                    if (du - chain_start) // max_span != piece:
                        break
                p = hits[u] & pos_mask
                if seen[p] != stamp:  # support counts distinct read positions
                    seen[p] = stamp
                    distinct += 1
                u += 1
            median = (hits[t + (u - t) // 2] >> pos_bits) & diag_mask
            # Rank: more support first, then leftmost, then forward (deterministic).
            rank_keys[n_cl] = ((((top_support - distinct) << diag_bits) | median) << 1) | strand
            n_cl += 1
            t = u
        ranked = rank_keys[:n_cl]
        ranked.sort()
        for j in range(min(n_cl, n_keep)):
            key = ranked[j]
            valid[r, j] = True
            diagonal[r, j] = ((key >> 1) & diag_mask) - diag_offset
            reverse[r, j] = (key & 1) == 1
            support[r, j] = top_support - (key >> (diag_bits + 1))
        n_clusters[r] = n_cl
        a = z


def find_candidates(codes: np.ndarray, lengths: np.ndarray, index: Index, params: SeedParams) -> Candidates:
    """Candidate placements of each read (compiled, one read at a time; tests/reference_seed.py
    keeps the vectorised numpy original it is checked against)."""
    n_reads = codes.shape[0]
    n_keep = params.max_candidates
    out = Candidates(
        valid=np.zeros((n_reads, n_keep), bool),
        diagonal=np.zeros((n_reads, n_keep), np.int64),
        reverse=np.zeros((n_reads, n_keep), bool),
        contig=np.zeros((n_reads, n_keep), np.int32),
        support=np.zeros((n_reads, n_keep), np.int32),
        n_clusters=np.zeros(n_reads, np.int32),
    )
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
    _seed_kernel(
        row.astype(np.int64), pos.astype(np.int64), hashes, read_rev, lengths.astype(np.int64), index.k,
        np.asarray(index.mm_hash), *index.buckets(), np.asarray(index.mm_pos), np.asarray(index.mm_reverse),
        params.max_occ, params.max_diag_gap, params.max_span, pos_bits, diag_bits, longest + 1,
        out.valid, out.diagonal, out.reverse, out.support, out.n_clusters,
    )
    r, c = np.nonzero(out.valid)
    centre = np.clip(out.diagonal[r, c] + lengths[r] // 2, 0, None)
    out.contig[r, c] = index.contig_of(centre).astype(np.int32)
    return out
