"""Minimizer sketches of 2-bit coded sequences, over rows (reads) or chunks (reference); compiled
loops (numba) checked against the numpy original in tests/reference_sketch.py.

A k-mer's hash is minimap2's invertible hash64 of its canonical 2-bit code; a position is a
(w, k)-minimizer when its hash is the smallest of some window of w consecutive k-mers. K-mers that
contain a base other than A/C/G/T are never minimizers.
"""

from __future__ import annotations

import numpy as np

from neuromap.jit import kernel

INVALID_HASH = np.uint64(0xFFFFFFFFFFFFFFFF)


_U0, _U2, _U3 = np.uint64(0), np.uint64(2), np.uint64(3)
_S21, _S24, _S3, _S8, _S14, _S4, _S28, _S31 = (np.uint64(v) for v in (21, 24, 3, 8, 14, 4, 28, 31))


@kernel
def _hash64(key, mask):
    """minimap2's invertible integer hash on 2k bits (uint64 arithmetic wraps, as in C)."""
    key = (~key + (key << _S21)) & mask
    key = key ^ (key >> _S24)
    key = ((key + (key << _S3)) + (key << _S8)) & mask
    key = key ^ (key >> _S14)
    key = ((key + (key << _U2)) + (key << _S4)) & mask
    key = key ^ (key >> _S28)
    key = (key + (key << _S31)) & mask
    return key


@kernel
def _hash_rows(codes, k, hashes, is_reverse):
    """Rolling 2-bit codes of each row's k-mers, forward and reverse complement, hashed."""
    rows, length = codes.shape
    mask = (np.uint64(1) << np.uint64(2 * k)) - np.uint64(1)
    top = np.uint64(2 * (k - 1))
    for r in range(rows):
        fwd = _U0
        rev = _U0
        last_bad = -1
        for j in range(length):
            c = codes[r, j]
            if c >= 4:
                last_bad = j
            base = np.uint64(min(c, 3))
            fwd = ((fwd << _U2) | base) & mask
            rev = (rev >> _U2) | ((_U3 - base) << top)
            m = j - k + 1
            if m >= 0:
                is_reverse[r, m] = rev < fwd
                if last_bad >= m:
                    hashes[r, m] = INVALID_HASH
                else:
                    hashes[r, m] = _hash64(rev if rev < fwd else fwd, mask)


@kernel
def _running_extremes(values, n, width, take_max, forward, backward):
    """Within each block of `width` values: forward[j] the extreme of the block's values up to j,
    backward[j] from j to the block's end. The extreme of values[t .. t + width - 1] is then
    that of backward[t] and forward[t + width - 1] (van Herk / Gil-Werman)."""
    for start in range(0, n, width):
        stop = min(start + width, n)
        forward[start] = values[start]
        for j in range(start + 1, stop):
            forward[j] = max(forward[j - 1], values[j]) if take_max else min(forward[j - 1], values[j])
        backward[stop - 1] = values[stop - 1]
        for j in range(stop - 2, start - 1, -1):
            backward[j] = max(backward[j + 1], values[j]) if take_max else min(backward[j + 1], values[j])


@kernel
def _select(hashes, w, selected):
    """selected[r, m]: k-mer m is the smallest of some window of `width` consecutive k-mers.

    Every window containing m has a minimum <= m's hash; m is selected when the largest of those
    minima is its hash. Both sliding extremes (the windows' minima, then the largest minimum over
    the windows that contain each k-mer) cost O(1) per k-mer (`_running_extremes`)."""
    rows, n_kmers = hashes.shape
    width = min(w, n_kmers)
    n_windows = n_kmers - width + 1
    forward = np.empty(n_kmers + 2 * width, np.uint64)
    backward = np.empty(n_kmers + 2 * width, np.uint64)
    # The windows' minima, with (width - 1) zeros each side: zeros never win a maximum.
    padded = np.zeros(n_windows + 2 * (width - 1), np.uint64)
    for r in range(rows):
        h = hashes[r]
        _running_extremes(h, n_kmers, width, False, forward, backward)
        for t in range(n_windows):  # the window of k-mers t .. t + width - 1
            padded[width - 1 + t] = min(backward[t], forward[t + width - 1])
        _running_extremes(padded, len(padded), width, True, forward, backward)
        for m in range(n_kmers):  # the windows containing k-mer m: padded[m .. m + width - 1]
            selected[r, m] = (max(backward[m], forward[m + width - 1]) == h[m]) & (h[m] != INVALID_HASH)


def kmer_hashes(codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every k-mer of each row, and whether the canonical k-mer is the reverse strand.

    codes: (rows, length) uint8 with A0 C1 G2 T3 and >= 4 for anything else.
    Returns (hashes, reverse) each (rows, length - k + 1); invalid k-mers hash to INVALID_HASH.
    """
    rows, length = codes.shape
    n_kmers = max(length - k + 1, 0)
    hashes = np.empty((rows, n_kmers), dtype=np.uint64)
    is_reverse = np.empty((rows, n_kmers), dtype=bool)
    if n_kmers:
        _hash_rows(np.ascontiguousarray(codes, dtype=np.uint8), k, hashes, is_reverse)
    return hashes, is_reverse


def minimizer_mask(hashes: np.ndarray, w: int) -> np.ndarray:
    """Boolean (rows, n_kmers): True where the k-mer is the minimum of some window of w k-mers.

    Rows shorter than w k-mers are treated as one window. Ties select every tied position.
    """
    selected = np.zeros(hashes.shape, dtype=bool)
    if hashes.shape[1]:
        _select(np.ascontiguousarray(hashes), w, selected)
    return selected


def sketch_rows(codes: np.ndarray, k: int, w: int):
    """Minimizers of each row: (row, position, hash, is_reverse) flat arrays, row-major order."""
    hashes, is_reverse = kmer_hashes(codes, k)
    selected = minimizer_mask(hashes, w)
    row, pos = np.nonzero(selected)
    return row, pos, hashes[row, pos], is_reverse[row, pos]


def sketch_sequence(codes: np.ndarray, k: int, w: int, chunk: int = 1 << 22, progress=None):
    """Minimizers of one long sequence, in chunks of bounded memory; `progress(n)` (optional) is
    told how many more bases are done after each chunk.

    Returns (positions int64, hashes uint64, is_reverse bool), sorted by position.
    """
    n_kmers = len(codes) - k + 1
    if n_kmers <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0, bool)
    positions, hashes, strands = [], [], []
    for start in range(0, max(n_kmers - w + 1, 1), chunk):
        # Windows starting at k-mers [start, start + chunk) are wholly inside this slice.
        stop = min(start + chunk + w - 1 + k - 1, len(codes))
        _, pos, h, rev = sketch_rows(codes[None, start:stop], k, w)
        positions.append(pos.astype(np.int64) + start)
        hashes.append(h)
        strands.append(rev)
        if progress is not None:
            progress(min(chunk, len(codes) - start))
    pos = np.concatenate(positions)
    pos, first = np.unique(pos, return_index=True)
    return pos, np.concatenate(hashes)[first], np.concatenate(strands)[first]
