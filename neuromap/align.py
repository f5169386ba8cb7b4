"""Banded affine-gap alignment of oriented reads against their candidate windows.

The DP and its traceback are compiled loops (numba), one (read, candidate) pair at a time, that
release the GIL. Row i, band slot b scores read base i against window column i + b, so the diagonal
a candidate predicts is slot `margin`.

Ends are local with a clipping penalty (as bwa-mem's -L): an alignment may start at read base i > 0
or end before the last base for `clip` points, and the clipped bases become soft clips.
Horizontal gaps (deletions) within a row use the running-max identity
    E[b] = max_{b'<b} (H0[b'] + e*b') - o - e*b
so a row is one pass over the band. tests/reference_align.py keeps the original vectorised numpy
implementation, and the tests check that the kernels give the same result bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neuromap.index import PAD_CODE
from neuromap.jit import kernel

NEG = -(1 << 22)  # 'impossible'; small enough that (NEG + x) * 64 fits int32


@dataclass(frozen=True)
class Scoring:
    match: int = 1
    mismatch: int = 4
    gap_open: int = 6
    gap_extend: int = 1  # a gap of length l costs gap_open + l * gap_extend
    clip: int = 5
    ambiguous: int = 1  # an N on either side costs this
    off_contig: int = 1000  # a read base aligned beyond the contig's end

    def table(self) -> np.ndarray:
        """6x6 substitution scores for codes A C G T N PAD."""
        t = np.full((6, 6), -self.mismatch, dtype=np.int32)
        t[np.arange(4), np.arange(4)] = self.match
        t[4, :] = -self.ambiguous
        t[:, 4] = -self.ambiguous
        t[:, PAD_CODE] = -self.off_contig
        return t


@dataclass
class DPResult:
    score: np.ndarray  # (P,) best local-with-clipping score
    end_row: np.ndarray  # (P,) last aligned read base
    end_slot: np.ndarray  # (P,) its band slot
    trace: np.ndarray  # (rows, band, P) uint16: bits 0-1 H0 source, bit 2 H from E, bit 3 F extends,
    #                    bits 8-13 the length of the deletion ending at the cell


_CONT, _START, _FROM_F = 0, 1, 2
_FROM_E_BIT, _F_EXT_BIT = 4, 8


@kernel(error_model="numpy")
def _dp_row(qi, t_t, i, band, hp_all, fp_all, hc_all, fc_all, trg, run_key, row_key, mt, mm, amb, off, rs, oe, e32):
    n = len(qi)
    for p in range(n):
        run_key[p] = NEG * 64
        row_key[p] = NEG * 64
    for b in range(band):
        tb = t_t[i + b]
        hp, hu, fu = hp_all[b], hp_all[b + 1], fp_all[b + 1]
        hc, fc, tg = hc_all[b], fc_all[b], trg[b]
        eb = np.int32(e32 * b)
        bb = np.int32(b)
        for p in range(n):
            x, y = qi[p], tb[p]
            # Scoring.table() as selects (a table lookup here costs the SIMD: 4.1 vs 1.5 ns per
            # cell); test_kernels checks the two agree, with custom scores too.
            s = mt if (x == y) & (x < 4) else mm
            s = amb if (x == 4) | (y == 4) else s
            s = off if y == 5 else s
            cont = hp[p] + s
            start = s - rs
            up_h = hu[p] - oe
            up_f = fu[p] - e32
            f = max(up_h, up_f)
            h0 = max(max(cont, start), f)
            src = np.int32(0) if h0 == cont else (np.int32(1) if h0 == start else np.int32(2))
            rk = run_key[p]
            e_cur = (rk >> 6) - oe + e32 - eb
            from_e = e_cur > h0
            h = max(e_cur, h0)
            # bits 0-1 H0 source, 2 H from E, 3 F extends, 8-13 the deletion's length
            tg[p] = np.uint16(src | (np.int32(4) if from_e else np.int32(0)) | (np.int32(8) if up_f > up_h else np.int32(0)) | ((bb - (rk & 63)) << 8))
            run_key[p] = max(rk, ((h0 + eb) << 6) | bb)
            hc[p] = h
            fc[p] = f
            row_key[p] = max(row_key[p], (h << 6) | (63 - bb))


@kernel
def _dp_kernel(q_t, t_t, qlen, band, match, mismatch, ambiguous, off_contig, o, e, clip, trace, best, best_row, best_slot):
    """All pairs advance one read row at a time; the innermost loop runs over pairs (contiguous
    in q_t, t_t and the (rows, band, pairs) trace), so it compiles to SIMD. Every rule is the one
    of the scalar recurrence in the module docstring, including its tie-breaks (packed keys: the
    running deletion source keeps the later slot on ties, the row's best the earlier)."""
    rows, n = q_t.shape
    h_prev = np.empty((band + 1, n), np.int32)
    f_prev = np.empty((band + 1, n), np.int32)
    h_cur = np.empty((band + 1, n), np.int32)
    f_cur = np.empty((band + 1, n), np.int32)
    h_prev[:band] = NEG
    f_prev[:band] = NEG
    # Sentinels past the last slot: an insertion from there scores exactly NEG.
    h_prev[band] = NEG + o + e
    f_prev[band] = NEG + e
    h_cur[band] = NEG + o + e
    f_cur[band] = NEG + e
    run_key = np.empty(n, np.int32)
    row_key = np.empty(n, np.int32)
    last_row = qlen - 1
    best[:] = NEG
    best_row[:] = 0
    best_slot[:] = 0
    mt, mm, amb, off = np.int32(match), np.int32(-mismatch), np.int32(-ambiguous), np.int32(-off_contig)
    oe, e32 = np.int32(o + e), np.int32(e)
    for i in range(rows):
        rs = np.int32(0 if i == 0 else clip)
        _dp_row(q_t[i], t_t, i, band, h_prev, f_prev, h_cur, f_cur, trace[i], run_key, row_key, mt, mm, amb, off, rs, oe, e32)
        # Ends: at the last read base for free, earlier for the clipping penalty.
        for p in range(n):
            if i <= last_row[p]:
                end_score = (row_key[p] >> 6) - (clip if i < last_row[p] else 0)
                if end_score > best[p]:
                    best[p] = end_score
                    best_row[p] = i
                    best_slot[p] = 63 - (row_key[p] & 63)
        h_prev, h_cur = h_cur, h_prev
        f_prev, f_cur = f_cur, f_prev


def banded_align(query: np.ndarray, qlen: np.ndarray, target: np.ndarray, margin: int, sc: Scoring) -> DPResult:
    """Align every (read, window) pair in its band; compiled, one pair at a time.

    Row i, band slot b scores read base i against window column i + b. Ties are broken as in
    tests/reference_align.py (the vectorised original this kernel is checked against): a cell
    prefers the diagonal, then a fresh start, then an insertion; a deletion must be strictly
    better and, among equal ones, the shortest is taken; the earliest row and slot end wins.
    """
    n_pairs, rows = query.shape
    band = 2 * margin + 1
    if band > 63:
        raise ValueError("band too wide (margin must be <= 31)")
    if target.shape[1] < rows + band - 1:
        raise ValueError("windows must be at least read width + 2 * margin wide")
    trace = np.empty((rows, band, n_pairs), dtype=np.uint16)
    best = np.empty(n_pairs, dtype=np.int32)
    best_row = np.empty(n_pairs, dtype=np.int64)
    best_slot = np.empty(n_pairs, dtype=np.int64)
    _dp_kernel(
        np.ascontiguousarray(query.T, dtype=np.uint8), np.ascontiguousarray(target[:, : rows + band - 1].T, dtype=np.uint8),
        np.asarray(qlen, dtype=np.int64), band, sc.match, sc.mismatch, sc.ambiguous, sc.off_contig,
        sc.gap_open, sc.gap_extend, sc.clip, trace, best, best_row, best_slot,
    )
    return DPResult(best, best_row, best_slot, trace)


def ungapped(query: np.ndarray, qlen: np.ndarray, target: np.ndarray, margin: int, sc: Scoring):
    """Score each pair along its predicted diagonal without gaps.

    Returns (score, exact): `exact` marks pairs whose ungapped alignment has at most one
    mismatch and stays on the contig. No gapped or clipped alignment can beat those (a gap costs
    at least gap_open + gap_extend > mismatch + match... and clipping one mismatch costs more than
    keeping it), so their DP can be skipped. Other shifts in the band could at best tie, which
    happens only inside tandem repeats.
    """
    n = len(qlen)
    score = np.empty(n, dtype=np.int64)
    mism = np.empty(n, dtype=np.int64)
    off = np.empty(n, dtype=np.bool_)
    if n:
        _ungapped_kernel(np.ascontiguousarray(query, dtype=np.uint8), np.asarray(qlen, dtype=np.int64), np.ascontiguousarray(target, dtype=np.uint8),
                         margin, sc.table(), PAD_CODE, score, mism, off)
    exact = (mism <= 1) & ~off & (sc.gap_open + sc.gap_extend > sc.mismatch + sc.match) & (sc.clip >= sc.match)
    return score, exact


@kernel
def _ungapped_kernel(query, qlen, target, margin, table, pad_code, score, mism, off):
    """Per pair, along the diagonal `margin`: the summed substitution scores, the mismatches
    between A/C/G/T bases, and whether any read base lies off the contig."""
    width = min(query.shape[1], target.shape[1] - margin)
    for p in range(query.shape[0]):
        total, mismatches, outside = 0, 0, False
        for j in range(min(qlen[p], width)):
            x, t = query[p, j], target[p, margin + j]
            total += table[x, t]
            mismatches += (x < 4) & (t < 4) & (x != t)
            outside |= t == pad_code
        score[p], mism[p], off[p] = total, mismatches, outside


def ungapped_description(query: np.ndarray, qlen: np.ndarray, target: np.ndarray, margin: int):
    """CIGAR, MD and NM of ungapped alignments on the predicted diagonal."""
    n, width = query.shape
    md = np.empty((n, 4 * width + 8), dtype=np.uint8)
    md_len = np.empty(n, dtype=np.int64)
    nm = np.empty(n, dtype=np.int32)
    _ungapped_md_kernel(np.ascontiguousarray(query, dtype=np.uint8), np.asarray(qlen, dtype=np.int64),
                        np.ascontiguousarray(target, dtype=np.uint8), margin, _LETTERS, md, md_len, nm)
    return [f"{length}M" for length in qlen.tolist()], _strings(md, md_len), nm


@dataclass
class Alignment:
    """Base-level description of one chosen placement per read."""

    ref_start: np.ndarray  # (n,) int64 window column of the first aligned base
    ref_end: np.ndarray  # (n,) int64 one past the last aligned column
    cigar: list[str]
    md: list[str]
    nm: np.ndarray  # (n,) int32


_OP_MATCH, _OP_MISMATCH, _OP_INS, _OP_DEL = ord("="), ord("X"), ord("I"), ord("D")
_LETTERS = np.frombuffer(b"ACGTNN", dtype=np.uint8)


@kernel
def _put_int(buf, at, value):
    """Write `value` >= 0 in decimal at buf[at:]; returns the position after it."""
    digits = 1
    v = value
    while v >= 10:
        v //= 10
        digits += 1
    for j in range(digits - 1, -1, -1):
        buf[at + j] = 48 + value % 10
        value //= 10
    return at + digits


@kernel
def _ungapped_md_kernel(query, qlen, target, margin, letters, md, md_len, nm):
    for p in range(query.shape[0]):
        m, last, edits = 0, 0, 0
        for j in range(qlen[p]):
            t = target[p, margin + j]
            if not (query[p, j] == t and t < 4):
                m = _put_int(md[p], m, j - last)
                md[p, m] = letters[min(t, 5)]
                m += 1
                last = j + 1
                edits += 1
        md_len[p] = _put_int(md[p], m, qlen[p] - last)
        nm[p] = edits


@kernel
def _traceback_kernel(trace, end_row, end_slot, pairs, query, target, qlen, letters,
                      ref_start, ref_end, nm, cigar, cigar_len, md, md_len):
    rows, band = trace.shape[0], trace.shape[1]
    max_steps = rows + band + 2
    ops = np.empty(max_steps, np.uint8)
    cols = np.empty(max_steps, np.int64)
    for n in range(len(pairs)):
        p = pairs[n]
        i, b = end_row[p], end_slot[p]
        state = 0  # 0 at H, 1 at H0, 2 in an insertion, 3 in a deletion
        del_left = 0
        left_clip = 0
        steps = 0
        lo, hi = -1, -1
        for _ in range(max_steps):
            cell = trace[i, b, p]
            if state == 0:
                if cell & _FROM_E_BIT:
                    del_left = cell >> 8
                    state = 3
                else:
                    state = 1
            src = cell & 3
            if state == 1 and src == _FROM_F:
                state = 2
            col = i + b
            if state == 1:  # diagonal: match or mismatch, possibly the alignment's first base
                qb = query[p, i]
                ops[steps] = _OP_MATCH if (qb == target[p, col] and qb < 4) else _OP_MISMATCH
                cols[steps] = col
                steps += 1
                if src == _START or i == 0:
                    left_clip = i
                    break
                i -= 1
                state = 0
            elif state == 2:
                ops[steps] = _OP_INS
                cols[steps] = -1
                steps += 1
                ext = cell & _F_EXT_BIT
                i -= 1
                b += 1
                if not ext:
                    state = 0
            else:
                ops[steps] = _OP_DEL
                cols[steps] = col
                steps += 1
                b -= 1
                del_left -= 1
                if del_left == 0:
                    state = 1
        for j in range(steps):  # the reference span: columns of matches and deletions
            if cols[j] >= 0:
                lo = cols[j] if lo < 0 else min(lo, cols[j])
                hi = max(hi, cols[j] + 1)
        ref_start[n], ref_end[n] = lo, hi
        right_clip = qlen[p] - 1 - end_row[p]
        # CIGAR, forward order: clips, then runs of M (= or X), I, D.
        c = 0
        if left_clip:
            c = _put_int(cigar[n], c, left_clip)
            cigar[n, c] = 83  # S
            c += 1
        edits = 0
        j = steps - 1
        while j >= 0:
            kind = 77 if (ops[j] == _OP_MATCH or ops[j] == _OP_MISMATCH) else ops[j]  # M
            run = 0
            while j >= 0 and (77 if (ops[j] == _OP_MATCH or ops[j] == _OP_MISMATCH) else ops[j]) == kind:
                if ops[j] != _OP_MATCH:
                    edits += 1
                run += 1
                j -= 1
            c = _put_int(cigar[n], c, run)
            cigar[n, c] = kind
            c += 1
        if right_clip:
            c = _put_int(cigar[n], c, right_clip)
            cigar[n, c] = 83
            c += 1
        cigar_len[n] = c
        nm[n] = edits
        # MD: matches counted, a mismatch as its reference letter, a deletion as ^letters.
        m = 0
        pending = 0
        j = steps - 1
        while j >= 0:
            op = ops[j]
            if op == _OP_MATCH:
                pending += 1
                j -= 1
            elif op == _OP_INS:
                j -= 1
            elif op == _OP_MISMATCH:
                m = _put_int(md[n], m, pending)
                pending = 0
                md[n, m] = letters[min(target[p, cols[j]], 5)]
                m += 1
                j -= 1
            else:
                m = _put_int(md[n], m, pending)
                pending = 0
                md[n, m] = 94  # ^
                m += 1
                while j >= 0 and ops[j] == _OP_DEL:
                    md[n, m] = letters[min(target[p, cols[j]], 5)]
                    m += 1
                    j -= 1
        m = _put_int(md[n], m, pending)
        md_len[n] = m


def _strings(buf: np.ndarray, lengths: np.ndarray) -> list[str]:
    """Row r's first lengths[r] bytes (ASCII, no newline) as a str, for every row: the rows are
    cut, joined by newlines and split again in one pass each, not one bytes object per row."""
    n = len(lengths)
    if n == 0:
        return []
    lengths = np.asarray(lengths, dtype=np.int64)
    width = int(lengths.max())
    rows = np.arange(n)
    text = np.empty((n, width + 1), dtype=np.uint8)
    text[:, :width] = buf[:, :width]
    text[rows, lengths] = 10  # a newline after each row's text
    keep = np.arange(width + 1)[None, :] <= lengths[:, None]
    return text[keep].tobytes().decode("ascii").split("\n")[:-1]


def traceback(dp: DPResult, pairs: np.ndarray, query: np.ndarray, target: np.ndarray, qlen: np.ndarray) -> Alignment:
    """Walk back from each selected pair's best cell; returns CIGAR (with soft clips), MD, NM."""
    n = len(pairs)
    rows, band = dp.trace.shape[0], dp.trace.shape[1]
    room = 6 * (rows + band + 8)  # every step a run of one, with its digits
    ref_start = np.empty(n, dtype=np.int64)
    ref_end = np.empty(n, dtype=np.int64)
    nm = np.empty(n, dtype=np.int32)
    cigar = np.empty((n, room), dtype=np.uint8)
    md = np.empty((n, room), dtype=np.uint8)
    cigar_len = np.empty(n, dtype=np.int64)
    md_len = np.empty(n, dtype=np.int64)
    _traceback_kernel(
        dp.trace, dp.end_row, dp.end_slot, np.asarray(pairs, dtype=np.int64),
        np.ascontiguousarray(query, dtype=np.uint8), np.ascontiguousarray(target, dtype=np.uint8), np.asarray(qlen, dtype=np.int64),
        _LETTERS, ref_start, ref_end, nm, cigar, cigar_len, md, md_len,
    )
    return Alignment(ref_start=ref_start, ref_end=ref_end, cigar=_strings(cigar, cigar_len), md=_strings(md, md_len), nm=nm)
