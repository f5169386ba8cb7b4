"""Banded affine-gap alignment of oriented reads against their candidate windows.

The DP and its traceback are compiled loops (neuromap/_kernels.c) that release the GIL; the DP
advances all pairs one read row at a time, with the pairs innermost (SIMD). Row i, band slot b scores read base i against window column i + b, so the diagonal
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

from neuromap import kernels
from neuromap.index import PAD_CODE
from neuromap.texts import Texts

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


def banded_align(query: np.ndarray, qlen: np.ndarray, target: np.ndarray, margin: int, sc: Scoring) -> DPResult:
    """Align every (read, window) pair in its band (compiled; all pairs advance one read row at a
    time, the pairs innermost and contiguous in the transposed inputs and the trace, so the row
    compiles to SIMD).

    Row i, band slot b scores read base i against window column i + b. Ties are broken as in
    tests/reference_align.py (the vectorised original this kernel is checked against): a cell
    prefers the diagonal, then a fresh start, then an insertion; a deletion must be strictly
    better and, among equal ones, the shortest is taken; the earliest row and slot end wins (the
    C code packs score and slot into one key for these: the running deletion source keeps the
    later slot on ties, the row's best the earlier).
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
    kernels.call(
        "nm_dp", np.ascontiguousarray(query.T, dtype=np.uint8), np.ascontiguousarray(target[:, : rows + band - 1].T, dtype=np.uint8),
        rows, n_pairs, np.ascontiguousarray(qlen, dtype=np.int64), band, sc.match, sc.mismatch, sc.ambiguous, sc.off_contig,
        sc.gap_open, sc.gap_extend, sc.clip, trace, best, best_row, best_slot,
    )
    return DPResult(best, best_row, best_slot, trace)


def ungapped(query: np.ndarray, qlen: np.ndarray, target: np.ndarray, margin: int, sc: Scoring):
    """Score each pair along its predicted diagonal without gaps.

    Returns (score, exact): `exact` marks pairs whose ungapped alignment the DP would return
    (`banded_align`'s best path, and the only one), so their DP can be skipped:
    - at most one mismatch, on the contig, no N. No gapped or clipped alignment can beat those (a
      gap costs at least gap_open + gap_extend > mismatch + match... and clipping one mismatch
      costs more than keeping it). Other shifts in the band could at best tie, which happens only
      inside tandem repeats. (An N costs `ambiguous` wherever it is aligned, so a read ending in
      six or more is clipped by the DP: pairs with an N go to it.)
    - exactly two mismatches (and no N), where `_two_settled` finds no other path as good.
    """
    n = len(qlen)
    score = np.empty(n, dtype=np.int64)
    mism = np.empty(n, dtype=np.int64)
    off = np.empty(n, dtype=np.bool_)
    if n:
        kernels.call("nm_ungapped", np.ascontiguousarray(query, dtype=np.uint8), n, query.shape[1], np.ascontiguousarray(qlen, dtype=np.int64),
                     np.ascontiguousarray(target, dtype=np.uint8), target.shape[1], margin, sc.table(), PAD_CODE, score, mism, off)
    # Without N on the diagonal (the score then counts only matches and mismatches): a run of Ns
    # at an end costs 1 a base, and the DP clips six or more of them (clip 5).
    plain = ~off & (score == sc.match * np.asarray(qlen, dtype=np.int64) - (sc.match + sc.mismatch) * mism)
    exact = (mism <= 1) & plain & (sc.gap_open + sc.gap_extend > sc.mismatch + sc.match) & (sc.clip >= sc.match)
    two = (mism == 2) & plain
    if two.any():
        exact |= _two_settled(query, qlen, target, margin, sc, two)
    return score, exact


def _two_settled(query: np.ndarray, qlen: np.ndarray, target: np.ndarray, margin: int, sc: Scoring, two: np.ndarray) -> np.ndarray:
    """Of the pairs `two` (two mismatches on the diagonal, no N: score S = aL - 2d, with a the
    match score, d = match + mismatch and L the read length), those no other path in the band
    scores S or more on. With o, e the gap open and extend costs and c the clip cost, any path
    scores at most aL - d*mm - a*(ins + clipped) - gaps - c*clipped_ends, so a path of S or more
    spends at most B = 2d on those terms. Where B < 2(o + e), B < d + o + e, B < c + a + o + e,
    B < d + c + a and B < 2(c + a) (the default scoring: 10 against 14, 12, 13, 11 and 12), that
    leaves only:
    - another diagonal with at most 2 mismatches, or none outside c_max = (B - c) / a bases
      clipped at one end;
    - this diagonal with both mismatches within c_max bases of one end (clipped);
    - two diagonals joined by one deletion of up to (B - o) / e bases or one insertion of up to
      (B - o) / (a + e), without a mismatch.
    The kernel (nm_settled) rules those out, counting N and padding in the other paths as matches.
    Other scorings: no pair is settled here (the DP decides)."""
    a, d, o, e, c = sc.match, sc.match + sc.mismatch, sc.gap_open, sc.gap_extend, sc.clip
    budget = 2 * d
    settled = np.zeros(len(qlen), dtype=np.bool_)
    if not (a > 0 and e > 0 and budget < min(2 * (o + e), d + o + e, c + a + o + e, d + c + a, 2 * (c + a)) and sc.ambiguous + a > 0):
        return settled
    clip_cut = max((budget - c) // a, 0)
    kernels.call("nm_settled", np.ascontiguousarray(query, dtype=np.uint8), len(qlen), query.shape[1], np.ascontiguousarray(qlen, dtype=np.int64),
                 np.ascontiguousarray(target, dtype=np.uint8), target.shape[1], margin, budget // d, clip_cut, clip_cut,
                 max((budget - o) // e, 0), max((budget - o) // (a + e), 0), np.ascontiguousarray(two, dtype=np.bool_), settled)
    return settled


def ungapped_description(query: np.ndarray, qlen: np.ndarray, target: np.ndarray, margin: int):
    """CIGAR, MD and NM of ungapped alignments on the predicted diagonal."""
    n, width = query.shape
    md = np.empty((n, 4 * width + 8), dtype=np.uint8)
    md_len = np.empty(n, dtype=np.int64)
    nm = np.empty(n, dtype=np.int32)
    if n:
        kernels.call("nm_ungapped_md", np.ascontiguousarray(query, dtype=np.uint8), n, width, np.ascontiguousarray(qlen, dtype=np.int64),
                     np.ascontiguousarray(target, dtype=np.uint8), target.shape[1], margin, _LETTERS, md, md.shape[1], md_len, nm)
    lengths, which = np.unique(np.asarray(qlen, dtype=np.int64), return_inverse=True)
    return Texts.of([f"{length}M" for length in lengths.tolist()]).take(which.ravel()), Texts.rows(md, md_len), nm


@dataclass
class Alignment:
    """Base-level description of one chosen placement per read."""

    ref_start: np.ndarray  # (n,) int64 window column of the first aligned base
    ref_end: np.ndarray  # (n,) int64 one past the last aligned column
    cigar: Texts
    md: Texts
    nm: np.ndarray  # (n,) int32


_LETTERS = np.frombuffer(b"ACGTNN", dtype=np.uint8)


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
    if n:
        query = np.ascontiguousarray(query, dtype=np.uint8)
        target = np.ascontiguousarray(target, dtype=np.uint8)
        kernels.call(
            "nm_traceback", dp.trace, rows, band, dp.trace.shape[2], dp.end_row, dp.end_slot, np.ascontiguousarray(pairs, dtype=np.int64), n,
            query, query.shape[1], target, target.shape[1], np.ascontiguousarray(qlen, dtype=np.int64), _LETTERS,
            ref_start, ref_end, nm, cigar, cigar_len, md, md_len, room,
        )
    return Alignment(ref_start=ref_start, ref_end=ref_end, cigar=Texts.rows(cigar, cigar_len), md=Texts.rows(md, md_len), nm=nm)
