"""The original numpy implementation of seeding (vectorised over the batch), kept as the oracle
the compiled kernel in neuromap.seed must match exactly."""

from __future__ import annotations

import numpy as np

from neuromap.index import Index
from neuromap.seed import Candidates, SeedParams
from neuromap.sketch import sketch_rows


def find_candidates_numpy(codes: np.ndarray, lengths: np.ndarray, index: Index, params: SeedParams) -> Candidates:
    n_reads = codes.shape[0]
    n_keep = params.max_candidates
    empty = Candidates(
        valid=np.zeros((n_reads, n_keep), bool),
        diagonal=np.zeros((n_reads, n_keep), np.int64),
        reverse=np.zeros((n_reads, n_keep), bool),
        contig=np.zeros((n_reads, n_keep), np.int32),
        support=np.zeros((n_reads, n_keep), np.int32),
        n_clusters=np.zeros(n_reads, np.int32),
    )
    if n_reads == 0:
        return empty
    k = index.k
    row, pos, hashes, read_rev = sketch_rows(codes, k, index.w)
    if len(row) == 0:
        return empty
    # Looking up sorted needles walks the table in order (cache-friendly); then undo the sort.
    needle_order = np.argsort(hashes, kind="stable")
    lo = np.empty(len(hashes), dtype=np.int64)
    hi = np.empty(len(hashes), dtype=np.int64)
    lo[needle_order] = np.searchsorted(index.mm_hash, hashes[needle_order], side="left")
    hi[needle_order] = np.searchsorted(index.mm_hash, hashes[needle_order], side="right")
    count = hi - lo
    keep = (count > 0) & (count <= params.max_occ)
    row, pos, read_rev, lo, count = row[keep], pos[keep], read_rev[keep], lo[keep], count[keep]
    total = int(count.sum())
    if total == 0:
        return empty
    # Expand each looked-up minimizer into its individual reference hits.
    hit_query = np.repeat(np.arange(len(row)), count)
    hit_ref = np.repeat(lo, count) + (np.arange(total) - np.repeat(np.cumsum(count) - count, count))
    ref_pos = np.asarray(index.mm_pos[hit_ref], dtype=np.int64)
    ref_rev = np.asarray(index.mm_reverse[hit_ref], dtype=bool)
    hit_row = row[hit_query]
    hit_pos = pos[hit_query].astype(np.int64)
    strand = read_rev[hit_query] != ref_rev
    read_len = lengths[hit_row].astype(np.int64)
    oriented_pos = np.where(strand, read_len - k - hit_pos, hit_pos)
    diagonal = ref_pos - oriented_pos

    order = np.lexsort((hit_pos, diagonal, strand, hit_row))
    hit_row, strand, diagonal, hit_pos = hit_row[order], strand[order], diagonal[order], hit_pos[order]
    new_cluster = np.ones(total, bool)
    new_cluster[1:] = (
        (hit_row[1:] != hit_row[:-1])
        | (strand[1:] != strand[:-1])
        | (diagonal[1:] - diagonal[:-1] > params.max_diag_gap)
    )
    cluster = np.cumsum(new_cluster) - 1
    # In a short-period tandem repeat the diagonals of one read chain on for as long as the repeat
    # does; every shift by a period is an equally good placement. Cut such chains into pieces
    # `max_span` wide so each shift competes as its own candidate (and lowers the MAPQ).
    chain_start = diagonal[np.flatnonzero(new_cluster)][cluster]
    piece = (diagonal - chain_start) // params.max_span
    new_cluster[1:] |= piece[1:] != piece[:-1]
    cluster = np.cumsum(new_cluster) - 1
    n_cl = int(cluster[-1]) + 1
    starts = np.flatnonzero(new_cluster)
    sizes = np.diff(np.append(starts, total))
    # Support counts distinct read positions, so a tandem repeat cannot vote twice with one k-mer.
    stride = int(hit_pos.max()) + 1
    distinct = np.unique(cluster.astype(np.int64) * stride + hit_pos)
    support = np.bincount(distinct // stride, minlength=n_cl).astype(np.int32)
    cl_row = hit_row[starts]
    cl_strand = strand[starts]
    cl_diag = diagonal[starts + sizes // 2]  # the median hit's diagonal

    # Rank placements of each read: more support first, then leftmost (deterministic).
    rank_order = np.lexsort((cl_strand, cl_diag, -support, cl_row))
    cl_row_sorted = cl_row[rank_order]
    first_of_row = np.searchsorted(cl_row_sorted, cl_row_sorted, side="left")
    rank = np.arange(n_cl) - first_of_row
    take = rank < n_keep
    sel = rank_order[take]
    r, c = cl_row[sel], rank[take]
    out = empty
    out.valid[r, c] = True
    out.diagonal[r, c] = cl_diag[sel]
    out.reverse[r, c] = cl_strand[sel]
    out.support[r, c] = support[sel]
    centre = np.clip(cl_diag[sel] + lengths[r] // 2, 0, None)
    out.contig[r, c] = index.contig_of(centre).astype(np.int32)
    out.n_clusters[:] = np.bincount(cl_row, minlength=n_reads).astype(np.int32)
    return out
