"""The original numpy code of mate rescue's search (pairing._vote, vectorised over the tasks)
and of its choice of the mates to search for (pairing.add_rescued), kept as the oracles the
compiled kernels nm_rescue_vote and nm_rescue_need must match exactly."""

from __future__ import annotations

import numpy as np


def kmers_numpy(codes: np.ndarray, k: int) -> np.ndarray:
    """(T, W) codes -> (T, W-k+1) integer k-mers; -1 where the k-mer holds N or padding."""
    if codes.shape[1] < k:
        return np.full((codes.shape[0], 0), -1, dtype=np.int64)
    win = np.lib.stride_tricks.sliding_window_view(codes, k, axis=1)
    value = (win.astype(np.int64) * (4 ** np.arange(k - 1, -1, -1, dtype=np.int64))).sum(axis=2)
    return np.where((win < 4).all(axis=2), value, -1)


def vote_numpy(query: np.ndarray, target: np.ndarray, expect: np.ndarray, k: int, n_hits: int, separation: int) -> tuple[np.ndarray, np.ndarray]:
    """Per task, up to n_hits diagonals (target column of query column 0) with the most
    exact k-mer hits, at least separation apart; among equal votes the one nearest to
    `expect` (the mean insert) first. Returns (t, n_hits) diagonals and votes (0: none)."""
    t = query.shape[0]
    qk, rk = kmers_numpy(query, k), kmers_numpy(target, k)
    span = 4**k
    q_task, q_pos = np.nonzero(qk >= 0)
    r_task, r_pos = np.nonzero(rk >= 0)
    q_key = q_task * span + qk[q_task, q_pos]
    r_key = r_task * span + rk[r_task, r_pos]
    order = np.argsort(r_key, kind="stable")
    r_key, r_pos = r_key[order], r_pos[order]
    lo = np.searchsorted(r_key, q_key, side="left")
    count = np.minimum(np.searchsorted(r_key, q_key, side="right") - lo, 64)  # low complexity: cap
    total = int(count.sum())
    diags = np.zeros((t, n_hits), dtype=np.int64)
    votes = np.zeros((t, n_hits), dtype=np.int64)
    if total == 0:
        return diags, votes
    hit_q = np.repeat(np.arange(len(q_key)), count)
    hit_r = np.repeat(lo, count) + (np.arange(total) - np.repeat(np.cumsum(count) - count, count))
    offset = query.shape[1]
    diag = r_pos[hit_r] - q_pos[hit_q] + offset  # >= 0
    n_diag = target.shape[1] + offset
    tally = np.bincount(q_task[hit_q] * n_diag + diag, minlength=t * n_diag).reshape(t, n_diag).astype(np.int64)
    distance = np.minimum(np.abs(np.arange(n_diag)[None, :] - offset - expect[:, None]), n_diag)
    rows = np.arange(t)
    for j in range(n_hits):
        # Votes first, then nearness to the expected insert (distance < n_diag breaks ties only).
        best = (tally * (n_diag + 1) - distance).argmax(axis=1)
        votes[:, j] = tally[rows, best]
        diags[:, j] = best - offset
        near = np.abs(np.arange(n_diag)[None, :] - best[:, None]) < separation
        tally[near] = 0
    return diags, votes


def rescue_need_numpy(valid, diagonal, reverse, contig, lengths, n, low, high, anchors, k):
    """need[r, j]: anchor slot j of read r's partner is a placement, r is at least k long, and
    none of r's valid placements pairs with it as FR on one contig at an insert in [low, high]."""
    partner = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
    length = lengths.astype(np.int64)
    p_diag, p_rev, p_ctg = diagonal[partner, :anchors], reverse[partner, :anchors], contig[partner, :anchors]
    p_len = length[partner][:, None, None]
    diag_a, rev_a = p_diag[:, :, None], p_rev[:, :, None]
    diag_b, len_b = diagonal[:, None, :], length[:, None, None]
    ins = np.where(rev_a, diag_a + p_len, diag_b + len_b) - np.where(rev_a, diag_b, diag_a)
    concordant = (
        valid[:, None, :]
        & (contig[:, None, :] == p_ctg[:, :, None])
        & (reverse[:, None, :] != p_rev[:, :, None])
        & (ins >= low) & (ins <= high)
    ).any(axis=2)
    return valid[partner, :anchors] & ~concordant & (length[:, None] >= k)
