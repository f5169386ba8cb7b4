"""The original numpy implementation of the banded DP and traceback (one numpy operation per
read row over all pairs), kept as the oracle the compiled kernels in neuromap.align must match
bit for bit."""

from __future__ import annotations

import re

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dataclasses import dataclass

from neuromap.align import NEG, Alignment, Scoring
from neuromap.index import PAD_CODE


@dataclass
class DPResult:
    score: np.ndarray
    end_row: np.ndarray
    end_slot: np.ndarray
    trace: np.ndarray  # (rows, P, band) uint8: bits 0-1 H0 source, bit 2 H from E, bit 3 F extends
    gap_len: np.ndarray  # (rows, P, band) uint8 length of the deletion ending at the cell

_CONT, _START, _FROM_F = 0, 1, 2
_FROM_E_BIT, _F_EXT_BIT = 4, 8

def banded_align_numpy(query: np.ndarray, qlen: np.ndarray, target: np.ndarray, margin: int, sc: Scoring) -> DPResult:
    n_pairs, rows = query.shape
    band = 2 * margin + 1
    if band > 63:
        raise ValueError("band too wide (margin must be <= 31)")
    o, e = sc.gap_open, sc.gap_extend
    # All substitution scores at once: (rows, P, band), row i slot b = read i vs column i + b.
    windows = sliding_window_view(target, band, axis=1)[:, :rows].transpose(1, 0, 2)
    scores = sc.table().astype(np.int16)[query.T[:, :, None], windows]
    slots = np.arange(band, dtype=np.int32)
    slot_gain = e * slots
    h_prev = np.full((n_pairs, band), NEG, dtype=np.int32)
    f_prev = np.full((n_pairs, band), NEG, dtype=np.int32)
    up_h = np.full((n_pairs, band), NEG, dtype=np.int32)
    up_f = np.full((n_pairs, band), NEG, dtype=np.int32)
    excl = np.full((n_pairs, band), NEG * 64, dtype=np.int32)
    trace = np.empty((rows, n_pairs, band), dtype=np.uint8)
    gap_len = np.empty((rows, n_pairs, band), dtype=np.uint8)
    best = np.full(n_pairs, NEG, dtype=np.int32)
    best_row = np.zeros(n_pairs, dtype=np.int64)
    best_slot = np.zeros(n_pairs, dtype=np.int64)
    last_row = qlen.astype(np.int64) - 1
    pair_idx = np.arange(n_pairs)
    for i in range(rows):
        s = scores[i]
        cont = h_prev + s
        start = s + (0 if i == 0 else -sc.clip)
        # Insertion (read base without reference): from row i-1, slot b+1.
        up_h[:, :-1] = h_prev[:, 1:]
        up_h[:, :-1] -= o + e
        up_f[:, :-1] = f_prev[:, 1:]
        up_f[:, :-1] -= e
        f_cur = np.maximum(up_h, up_f)
        h0 = np.maximum(cont, start)
        np.maximum(h0, f_cur, out=h0)
        src = (h0 != cont).view(np.uint8) + ((h0 != cont) & (h0 != start)).view(np.uint8)
        # Deletion (reference bases without read): best earlier slot in this row, by prefix max
        # over keys that carry the slot in their low 6 bits.
        key = (h0 + slot_gain) * 64 + slots
        np.maximum.accumulate(key, axis=1, out=key)
        excl[:, 1:] = key[:, :-1]
        e_cur = (excl >> 6) - o - slot_gain
        from_e = e_cur > h0
        h = np.maximum(h0, e_cur)
        trace[i] = src + 4 * from_e.view(np.uint8) + 8 * (up_f > up_h).view(np.uint8)
        gap_len[i] = slots - (excl & 63)
        # Ends: at the last read base for free, earlier for the clipping penalty.
        row_arg = h.argmax(axis=1)
        end_score = h[pair_idx, row_arg] - np.where(i < last_row, sc.clip, 0)
        better = (i <= last_row) & (end_score > best)
        best = np.where(better, end_score, best)
        best_row[better] = i
        best_slot[better] = row_arg[better]
        h_prev, f_prev = h, f_cur
    return DPResult(best, best_row, best_slot, trace, gap_len)


_OP_MATCH, _OP_MISMATCH, _OP_INS, _OP_DEL = ord("="), ord("X"), ord("I"), ord("D")
_BASES = np.frombuffer(b"ACGTNN", dtype=np.uint8)
_CIGAR_RUN = re.compile(r"M+|I+|D+")
_MD_TOKEN = re.compile(r"=+|X|D+")


def traceback_numpy(dp: DPResult, pairs: np.ndarray, query: np.ndarray, target: np.ndarray, qlen: np.ndarray) -> Alignment:
    """Walk back from each selected pair's best cell; returns CIGAR (with soft clips), MD, NM."""
    n = len(pairs)
    rows, _, band = dp.trace.shape
    i = dp.end_row[pairs].astype(np.int64)
    b = dp.end_slot[pairs].astype(np.int64)
    state = np.zeros(n, dtype=np.int8)  # 0 at H, 1 at H0, 2 in insertion, 3 in deletion
    del_left = np.zeros(n, dtype=np.int64)
    active = np.ones(n, dtype=bool)
    left_clip = np.zeros(n, dtype=np.int64)
    max_steps = rows + band + 2
    ops = np.zeros((max_steps, n), dtype=np.uint8)
    cols = np.full((max_steps, n), -1, dtype=np.int64)
    idx = np.arange(n)
    q_pairs = query[pairs]
    t_pairs = target[pairs]
    for step in range(max_steps):
        if not active.any():
            break
        ii = np.clip(i, 0, rows - 1)
        cell = dp.trace[ii, pairs, b]
        # H: switch into deletion if the cell's best came from E.
        go_del = active & (state == 0) & ((cell & _FROM_E_BIT) > 0)
        del_left = np.where(go_del, dp.gap_len[ii, pairs, b].astype(np.int64), del_left)
        state = np.where(go_del, 3, np.where(active & (state == 0), 1, state))
        src = cell & 3
        at_h0 = active & (state == 1)
        go_ins = at_h0 & (src == _FROM_F)
        state = np.where(go_ins, 2, state)
        # Diagonal step (match or mismatch), possibly the alignment's first base.
        diag = at_h0 & (src != _FROM_F)
        col = i + b
        qb = q_pairs[idx, np.clip(i, 0, q_pairs.shape[1] - 1)]
        tb = t_pairs[idx, np.clip(col, 0, t_pairs.shape[1] - 1)]
        is_match = (qb == tb) & (qb < 4)
        ins = active & (state == 2)
        dele = active & (state == 3)
        ops[step] = np.where(diag, np.where(is_match, _OP_MATCH, _OP_MISMATCH), np.where(ins, _OP_INS, np.where(dele, _OP_DEL, 0)))
        cols[step] = np.where(diag | dele, col, -1)
        # Move.
        finished = diag & ((src == _START) | (i == 0))
        left_clip = np.where(finished, i, left_clip)
        ext = (cell & _F_EXT_BIT) > 0
        i = np.where(diag | ins, i - 1, i)
        b = np.where(ins, b + 1, np.where(dele, b - 1, b))
        state = np.where(diag, 0, state)
        state = np.where(ins & ~ext, 0, state)
        del_left = np.where(dele, del_left - 1, del_left)
        state = np.where(dele & (del_left == 0), 1, state)
        active &= ~finished
    right_clip = qlen[pairs].astype(np.int64) - 1 - dp.end_row[pairs]
    ref_start = np.full(n, -1, dtype=np.int64)
    ref_end = np.full(n, -1, dtype=np.int64)
    has_col = cols >= 0
    any_col = has_col.any(axis=0)
    big = np.iinfo(np.int64).max
    ref_start[any_col] = np.where(has_col, cols, big).min(axis=0)[any_col]
    ref_end[any_col] = cols.max(axis=0)[any_col] + 1
    op_strings = ops[::-1].T.copy()  # forward order, one row per pair, zeros where no step
    cigars, mds = [], []
    nm = np.zeros(n, dtype=np.int32)
    for p in range(n):
        row_ops = op_strings[p]
        row_ops = row_ops[row_ops > 0]
        row_cols = cols[::-1, p][ops[::-1, p] > 0]
        text = row_ops.tobytes().decode("ascii")
        cig = []
        if left_clip[p]:
            cig.append(f"{left_clip[p]}S")
        cig.extend(f"{len(m)}{m[0]}" for m in _CIGAR_RUN.findall(text.replace("=", "M").replace("X", "M")))
        if right_clip[p]:
            cig.append(f"{right_clip[p]}S")
        cigars.append("".join(cig))
        keep = row_ops != _OP_INS
        md_ops = row_ops[keep].tobytes().decode("ascii")
        ref_letters = _BASES[np.minimum(t_pairs[p, row_cols[keep]], 5)].tobytes().decode("ascii")
        md, pending = [], 0
        for m in _MD_TOKEN.finditer(md_ops):
            token = m.group()
            if token[0] == "=":
                pending += len(token)
            else:
                md.append(str(pending))
                pending = 0
                if token == "X":
                    md.append(ref_letters[m.start()])
                else:
                    md.append("^" + ref_letters[m.start() : m.end()])
        md.append(str(pending))
        mds.append("".join(md))
        nm[p] = text.count("X") + text.count("I") + text.count("D")
    return Alignment(ref_start=ref_start, ref_end=ref_end, cigar=cigars, md=mds, nm=nm)


def ungapped_description_numpy(query: np.ndarray, qlen: np.ndarray, target: np.ndarray, margin: int):
    """CIGAR, MD and NM of ungapped alignments on the predicted diagonal."""
    n, width = query.shape
    diag = target[:, margin : margin + width]
    inside = np.arange(width)[None, :] < qlen[:, None]
    differ = inside & ~((query == diag) & (query < 4))
    nm = differ.sum(axis=1).astype(np.int32)
    cigars, mds = [], []
    for p in range(n):
        length = int(qlen[p])
        cigars.append(f"{length}M")
        md, last = [], 0
        for j in np.flatnonzero(differ[p]):
            md.append(f"{j - last}{'ACGTNN'[diag[p, j]]}")
            last = j + 1
        md.append(str(length - last))
        mds.append("".join(md))
    return cigars, mds, nm


def ungapped_numpy(query: np.ndarray, qlen: np.ndarray, target: np.ndarray, margin: int, sc: Scoring):
    """Score along the diagonal `margin` without gaps: (score, exact) as neuromap.align.ungapped."""
    width = query.shape[1]
    diag = target[:, margin : margin + width]
    inside = np.arange(width)[None, :] < qlen[:, None]
    s = sc.table()[query, diag]
    score = np.where(inside, s, 0).sum(axis=1)
    mism = (inside & (query < 4) & (diag < 4) & (query != diag)).sum(axis=1)
    off = (inside & (diag == PAD_CODE)).any(axis=1)
    exact = (mism <= 1) & ~off & (sc.gap_open + sc.gap_extend > sc.mismatch + sc.match) & (sc.clip >= sc.match)
    return score, exact


_COMPLEMENT = np.array([3, 2, 1, 0, 4, 5], dtype=np.uint8)


def reverse_complement_codes_numpy(codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Reverse complement each row's first `length` codes; padding stays N (neuromap.windows)."""
    n, width = codes.shape
    src = lengths[:, None].astype(np.int64) - 1 - np.arange(width)[None, :]
    inside = src >= 0
    gathered = np.take_along_axis(codes, np.clip(src, 0, width - 1), axis=1)
    return np.where(inside, _COMPLEMENT[gathered], 4).astype(np.uint8)


def gather_windows_numpy(index, contig: np.ndarray, start: np.ndarray, width: int) -> np.ndarray:
    """(P, width) reference codes from global `start`; positions outside the contig are PAD."""
    cols = start[:, None] + np.arange(width)[None, :]
    lo = index.contig_offsets[contig][:, None]
    hi = lo + index.contig_lengths[contig][:, None]
    inside = (cols >= lo) & (cols < hi)
    safe = np.clip(cols, 0, len(index.seq) - 1)
    return np.where(inside, index.seq[safe], PAD_CODE).astype(np.uint8)
